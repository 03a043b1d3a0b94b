"""mini-video world: determinism, motion geometry, captions, held-out combinations."""

import numpy as np
import pytest

from studio.mini import world as W
from studio.mini.video import world as V


def test_deterministic_and_format():
    a, b = V.sample_clip(5), V.sample_clip(5)
    assert a == b
    fa = V.render_frames(a)
    assert fa.shape == (V.FRAMES, 256, 256, 3) and fa.dtype == np.uint8
    assert np.array_equal(fa, V.render_frames(b))
    assert V.sample_clip(5) != V.sample_clip(6)


@pytest.mark.parametrize("split", ["train", "holdout", "any"])
def test_motion_geometry(split):
    seen = set()
    for seed in range(300):
        c = V.sample_clip(seed, split)
        seen.add(c.motion)
        assert c.color != c.background
        (x0, y0), (x1, y1) = c.center(0), c.center(V.FRAMES - 1)
        dx, dy = x1 - x0, y1 - y0
        if c.motion == "still":
            assert dx == dy == 0
        else:
            vx, vy = V.VEC[c.motion]
            assert abs(dx * vx + dy * vy) >= 0.25 * 256  # at least a quarter of the frame
            assert dx * vy == 0 and dy * vx == 0  # straight along the axis
        for i in (0, V.FRAMES - 1):  # wholly inside the frame
            cx, cy = c.center(i)
            assert c.radius <= cx <= 256 - c.radius and c.radius <= cy <= 256 - c.radius
    assert seen == set(V.MOTIONS)


def test_captions_name_colour_shape_motion():
    for seed in range(200):
        c = V.sample_clip(seed)
        assert c.color in c.caption and c.shape in c.caption
        assert any(p in c.caption for p in V.MOTION_PHRASES[c.motion])
    c = V.sample_clip(0)
    assert V.caption(c) == f"a {c.color} {c.shape} {V.MOTION_PHRASES[c.motion][0]} on a {c.background} background"


def test_holdout_never_in_train_and_always_in_holdout():
    for seed in range(2000):
        c = V.sample_clip(seed, "train")
        assert not V.is_holdout(c.color, c.shape, c.motion)
        assert (c.color, c.shape) not in W.HOLDOUT
    for seed in range(300):
        c = V.sample_clip(seed, "holdout")
        assert V.is_holdout(c.color, c.shape, c.motion)
    # every held-out triple's colour-shape pair is trained with other motions
    train_pairs = {(c.color, c.shape) for c in (V.sample_clip(s, "train") for s in range(2000))}
    assert {(c, s) for c, s, _ in V.HOLDOUT_MOTION} <= train_pairs


def test_latents_follow_the_object():
    c = V.sample_clip(0, "any", motion="right")
    z = V.clip_latents([c])
    assert z.shape == (1, 4, V.FRAMES, 32, 32)
    cov = (z[0, 3] + 1) / 2  # coverage channel
    xs = np.arange(32) + 0.5
    cx = [(cov[f].sum(0) * xs).sum() / cov[f].sum() * 8 for f in (0, V.FRAMES - 1)]
    assert cx[1] - cx[0] == pytest.approx(c.travel, abs=4)
