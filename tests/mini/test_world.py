"""Procedural world: determinism, captions, holdout split."""

import numpy as np
import pytest

from studio.mini import world as W


def test_deterministic():
    for seed in (0, 1, 17, 12345):
        a, b = W.sample_scene(seed), W.sample_scene(seed)
        assert a == b and a.caption == b.caption
        assert np.array_equal(W.scene_array(a), W.scene_array(b))
    assert W.sample_scene(1) != W.sample_scene(2) or W.sample_scene(2) != W.sample_scene(3)


def test_image_format():
    im = W.render(W.sample_scene(3))
    assert im.size == (256, 256) and im.mode == "RGB"


@pytest.mark.parametrize("split", ["train", "holdout", "any"])
def test_scene_invariants_and_caption(split):
    for seed in range(300):
        s = W.sample_scene(seed, split)
        assert s.background in W.BACKGROUNDS
        assert 1 <= len(s.objects) <= 2
        cap = s.caption
        assert s.background in cap or len(cap.split(" and ")) >= 1
        for o in s.objects:
            assert o.color != s.background
            assert o.color in W.COLORS and o.shape in W.SHAPES and o.size in W.SIZES and o.position in W.POSITIONS
            assert f"{o.color} {o.shape}" in cap
            assert any(p in cap for p in W.POSITION_PHRASES[o.position])
            assert f"{o.size} {o.color}" in cap or f"a {o.color} {o.shape}" in cap
        if len(s.objects) == 2:
            a, b = s.objects
            assert a.color != b.color and a.position != b.position
            assert W._separated(a, b)
        full = W.caption(s, full=True)
        for o in s.objects:
            assert f"a {o.size} {o.color} {o.shape} {W.POSITION_PHRASES[o.position][0]}" in full
        assert full.endswith(f"on a {s.background} background")


def test_pixels_match_scene():
    # every pixel is the background or one of the objects' colours; each object is visible at its centre
    for seed in range(50):
        s = W.sample_scene(seed)
        arr = W.scene_array(s)
        allowed = {W.BACKGROUNDS[s.background]} | {W.COLORS[o.color] for o in s.objects}
        assert {tuple(p) for p in np.unique(arr.reshape(-1, 3), axis=0)} <= allowed
        for o in s.objects:
            if o.shape != "ring":
                cx, cy = o.center
                assert tuple(arr[int(cy), int(cx)]) == W.COLORS[o.color]


def test_holdout_never_in_training_sampler():
    seen = set()
    for seed in range(3000):
        for o in W.sample_scene(seed, "train").objects:
            assert (o.color, o.shape) not in W.HOLDOUT
            seen.add((o.color, o.shape))
    # everything else is reachable
    all_pairs = {(c, s) for c in W.COLORS for s in W.SHAPES}
    assert seen == all_pairs - W.HOLDOUT


def test_holdout_split_contains_heldout_pair():
    for seed in range(300):
        s = W.sample_scene(seed, "holdout")
        assert W.is_holdout(s.objects[0])
