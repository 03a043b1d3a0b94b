"""The analytic music judge: >= 99% on rendered ground truth, robust to MP3, and it notices wrong
attributes (each attribute changed alone must change its verdict and only its verdict)."""

import itertools
import os

import numpy as np
import pytest

from studio.mini.music import judge as J
from studio.mini.music import world as W

COMBOS = list(itertools.product(W.INSTRUMENTS, W.TEMPI, W.REGISTERS, W.CONTOURS, W.MODES))


def _accuracy(melodies):
    scores = [J.score(m, J.judge(W.render(m), W.SR)) for m in melodies]
    return {a: float(np.mean([s[a] for s in scores])) for a in W.ATTRS + ("all",)}


def test_every_combination_4s():
    # all 96 combinations (the held-out ones included), 4 s clips: 4-10 notes each
    ms = [W.make_melody(*c, seed=i, duration=4.0) for i, c in enumerate(COMBOS)]
    acc = _accuracy(ms)
    assert all(acc[a] >= 0.99 for a in W.ATTRS), acc


def test_ground_truth_8s_every_combination():
    # stratified: one 8 s sampler melody (seed, notes, tuning jitter, caption drawn as in training) for each of
    # the 96 combinations, the 8 held-out ones included, so each value of each attribute is judged 24+ times.
    # At n=96 the ">= 99%" bar admits no wrong verdict (95/96 = 98.96%).
    ms = [W.sample_melody(i, "any", **dict(zip(W.ATTRS, c))) for i, c in enumerate(COMBOS)]
    acc = _accuracy(ms)
    assert all(acc[a] >= 0.99 for a in W.ATTRS), acc


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("STUDIO_FULL_GROUND_TRUTH"),
                    reason="the 400-melody set (~32 s): STUDIO_FULL_GROUND_TRUTH=1; CI runs the stratified 96 above")
def test_ground_truth_8s_at_least_99_percent():
    ms = [W.sample_melody(i, "any") for i in range(300)] + [W.sample_melody(i, "holdout") for i in range(100)]
    acc = _accuracy(ms)
    assert all(acc[a] >= 0.99 for a in W.ATTRS), acc


BASE = ("square", "medium", "low", "rising", "minor")
CHANGES = {"instrument": ("sine", "sawtooth", "plucked"), "tempo": ("slow", "fast"), "register": ("high",),
           "contour": ("falling",), "mode": ("major",)}


@pytest.mark.parametrize("attr,value", [(a, v) for a, vs in CHANGES.items() for v in vs])
def test_one_attribute_changed_is_noticed(attr, value):
    base = W.make_melody(*BASE, seed=4, duration=6.0)
    attrs = dict(zip(W.ATTRS, BASE), **{attr: value})
    other = W.make_melody(**attrs, seed=4, duration=6.0)
    v = J.judge(W.render(other))
    s = J.score(base, v)  # judged against the base caption: exactly the changed attribute is wrong
    assert not s[attr] and not s["all"], (attr, value, v.attrs())
    assert all(s[a] for a in W.ATTRS if a != attr), (attr, value, v.attrs())
    assert J.score(other, v)["all"]


def test_reversed_clip_flips_contour_and_silence_or_noise_are_not_music():
    m = W.make_melody("sine", "medium", "high", "rising", "major", seed=3, duration=6.0)
    v = J.judge(W.render(m)[::-1].copy())
    assert v.contour == "falling" and not J.score(m, v)["contour"]
    assert not J.score(m, J.judge(np.zeros(4 * W.SR, np.float32)))["all"]
    noise = np.random.default_rng(0).normal(0, 0.2, 4 * W.SR).astype(np.float32)
    assert not J.score(m, J.judge(noise))["all"]


def test_other_sample_rates():
    from scipy.signal import resample_poly

    m = W.make_melody("sawtooth", "fast", "high", "falling", "major", seed=5, duration=4.0)
    x = resample_poly(W.render(m), 2, 1).astype(np.float32)
    assert J.score(m, J.judge(x, 32000))["all"]
    stereo = np.stack([W.render(m), W.render(m)], 1)  # (n, 2), as decode_audio returns
    assert J.score(m, J.judge(stereo, W.SR))["all"]


def test_mp3_128k_round_trip():
    from safety.media import decode_audio, encode_audio

    for i, inst in enumerate(W.INSTRUMENTS):
        m = W.sample_melody(i, "any", duration=4.0, instrument=inst)
        y, sr = decode_audio(encode_audio(W.render(m), W.SR, "mp3", "128k"), "mp3")
        s = J.score(m, J.judge(y, sr))
        assert s["all"], (m.attrs(), s)
