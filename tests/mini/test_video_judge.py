"""The analytic video judge: right on rendered ground truth, and it catches wrong direction, identity
change and background flicker."""

import os

import numpy as np
import pytest

from studio.mini import world as W
from studio.mini.video import judge as VJ
from studio.mini.video import world as V


def _clips(n, split="any", offset=0):
    return [V.sample_clip(offset + i, split, motion=V.MOTIONS[i % len(V.MOTIONS)]) for i in range(n)]


def test_ground_truth_small():
    for c in _clips(2) + _clips(1, "holdout", offset=7):
        s = VJ.judge_and_score(c, V.render_frames(c))
        assert s["all"], (c, s)
        assert s["identity_frames"] == 1.0 and s["flicker"] == 0.0


def _stratified(split: str, offset: int) -> list:
    """The first clip of `split` (from seed `offset` on) for each shape x motion: 25 clips, colours, sizes,
    backgrounds and positions as the sampler draws them."""
    clips, seed = [], offset
    for shape in W.SHAPES:
        for motion in V.MOTIONS:
            while (c := V.sample_clip(seed, split, motion=motion)).shape != shape:
                seed += 1
            clips.append(c)
            seed += 1
    return clips


def test_ground_truth_every_shape_and_motion():
    # 25 trained-split and 25 held-out clips, one per shape x motion each; at n=50 ">= 99%" admits no miss
    clips = _stratified("any", 3000) + _stratified("holdout", 4000)
    ok = [VJ.judge_and_score(c, V.render_frames(c))["all"] for c in clips]
    assert np.mean(ok) >= 0.99, [c for c, k in zip(clips, ok) if not k]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("STUDIO_FULL_GROUND_TRUTH"),
                    reason="the 100-clip set (~37 s): STUDIO_FULL_GROUND_TRUTH=1; CI runs the stratified 50 above")
def test_ground_truth_at_least_99_percent():
    clips = _clips(60, "any", offset=1000) + _clips(40, "holdout", offset=2000)
    ok = [VJ.judge_and_score(c, V.render_frames(c))["all"] for c in clips]
    assert np.mean(ok) >= 0.99


def test_detects_wrong_direction():
    for m, rev in (("right", "left"), ("up", "down")):  # 2 clips: the judge costs ~1 s per clip
        c = V.sample_clip(3, "any", motion=m)
        frames = V.render_frames(c)[::-1]  # played backwards
        v = VJ.judge_clip(frames)
        assert v.direction == rev
        assert not VJ.score_clip(c, v)["direction"]
    # a moving caption against a still clip
    c = V.sample_clip(4, "any", motion="left")
    still = np.repeat(V.render_frames(c)[:1], V.FRAMES, 0)
    assert VJ.judge_clip(still).direction == "still"
    assert not VJ.score_clip(c, VJ.judge_clip(still))["moved_as_captioned"]


def test_detects_identity_change():
    c = V.sample_clip(7, "any", motion="down")
    other_colour = next(k for k in W.COLORS if k not in (c.color, c.background))
    other_shape = next(s for s in W.SHAPES if s != c.shape)
    for change in ({"color": other_colour}, {"shape": other_shape}):  # half the clip changes
        d = V.Clip(**{**c.__dict__, **change})
        frames = np.concatenate([V.render_frames(c)[:8], V.render_frames(d)[8:]])
        s = VJ.judge_and_score(c, frames)
        assert s["identity_frames"] == pytest.approx(0.5)
        assert not s["all"]


def test_detects_flicker():
    c = V.sample_clip(9, "any", motion="still")
    frames = V.render_frames(c).astype(np.int16)
    bg = np.array(W.BACKGROUNDS[c.background])
    mask = (frames == bg).all(-1)
    delta = np.where(np.arange(V.FRAMES) % 2 == 0, 12, -12)[:, None, None, None]
    flick = np.clip(np.where(mask[..., None], frames + delta, frames), 0, 255).astype(np.uint8)
    s = VJ.judge_and_score(c, flick)
    assert s["flicker"] > VJ.FLICKER_MAX and not s["no_flicker"] and not s["all"]
    assert VJ.judge_and_score(c, V.render_frames(c))["no_flicker"]
