"""The procedural music world: deterministic, band-limited, ground truth as captioned, holdout respected."""

import itertools

import numpy as np
import pytest

from studio.mini.music import world as W


def test_deterministic_and_shaped():
    a, b = W.sample_melody(5, "train"), W.sample_melody(5, "train")
    assert a == b and a.caption == b.caption
    xa, xb = W.render(a), W.render(b)
    assert xa.dtype == np.float32 and xa.ndim == 1 and len(xa) == int(W.DURATION * W.SR)
    assert np.array_equal(xa, xb)
    assert 0.3 < np.abs(xa).max() <= 0.6
    assert not np.array_equal(xa, W.render(W.sample_melody(6, "train")))


def test_any_length():
    m = W.sample_melody(3, "any", duration=3.3, tempo="fast")
    assert len(W.render(m)) == int(round(3.3 * W.SR))
    assert len(W.render(m, duration=5.0)) == 5 * W.SR  # padded with silence after the last note
    long = W.sample_melody(3, "any", duration=16.0, tempo="slow")
    assert len(long.notes) >= 16 and long.notes[-1].start < 16.0


def test_holdout_split():
    train = [W.sample_melody(i, "train") for i in range(600)]
    held = [W.sample_melody(i, "holdout") for i in range(200)]
    key = lambda m: (m.instrument, m.tempo, m.register, m.contour)  # noqa: E731
    assert not any(key(m) in W.HOLDOUT for m in train)
    assert all(key(m) in W.HOLDOUT for m in held)
    assert {key(m) for m in held} == set(W.HOLDOUT)
    # every attribute value is still trained, and every held-out pair of values too
    for a, values in (("instrument", W.INSTRUMENTS), ("tempo", W.TEMPI), ("register", W.REGISTERS),
                      ("contour", W.CONTOURS), ("mode", W.MODES)):
        assert {getattr(m, a) for m in train} == set(values)
    seen = {(m.instrument, m.tempo, m.register, m.contour) for m in train}
    for h in W.HOLDOUT:
        for i, j in itertools.combinations(range(4), 2):
            assert any(s[i] == h[i] and s[j] == h[j] for s in seen), (h, i, j)
    with pytest.raises(ValueError):
        W.sample_melody(0, "holdout", instrument="sine", tempo="medium", register="low", contour="rising")


ALL = list(itertools.product(W.INSTRUMENTS, W.TEMPI, W.REGISTERS, W.CONTOURS, W.MODES))


@pytest.mark.parametrize("combo", ALL[::7])
def test_ground_truth(combo):
    inst, tempo, reg, contour, mode = combo
    m = W.make_melody(inst, tempo, reg, contour, mode, seed=1)
    lo, hi = W.TEMPI[tempo]
    assert lo <= m.bpm <= hi
    assert len(m.notes) == int(W.DURATION * m.bpm / 60)
    midis = [n.midi for n in m.notes]
    freqs = [W.hz(p, m.detune_cents) for p in midis]
    if reg == "low":
        assert max(freqs) < 222  # "mostly below 220 Hz": all of them, up to the 10-cent detune
    else:
        assert min(freqs) > 437
    assert (midis[0] - m.tonic) % 12 == 0 and (midis[-1] - m.tonic) % 12 == 0
    assert midis[-1] - midis[0] == (12 if contour == "rising" else -12)
    steps = {(p - m.tonic) % 12 for p in midis}
    assert steps == {s % 12 for s in W.MODES[mode]}  # 8+ notes: every degree, third and sixth included
    words = m.caption if m.caption else W.caption(m)
    assert W.caption(m) == f"a {tempo} {inst} melody {contour} in a {reg} register, {mode}"
    for w in (inst, contour, reg, mode):
        assert w in words


def test_captions_name_every_attribute():
    for i in range(200):
        m = W.sample_melody(i, "any")
        c = m.caption
        assert m.instrument in c and m.contour in c and m.register in c and m.mode in c
        assert any(w in c for w in W.TEMPO_WORDS[m.tempo])


@pytest.mark.parametrize("inst", W.INSTRUMENTS)
def test_band_limited_and_in_tune(inst):
    m = W.make_melody(inst, "slow", "high", "rising", "major", seed=2)
    x = W.render(m).astype(np.float64)
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / W.SR)
    assert spec[f > W.BANDWIDTH + 100].sum() < 1e-5 * spec.sum()
    # the first note's fundamental, from a long zero-padded FFT, within 5 cents of the score
    n0 = m.notes[0]
    seg = x[int(0.05 * W.SR):int(n0.duration * 0.8 * W.SR)]
    sp = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 1 << 18))
    ff = np.fft.rfftfreq(1 << 18, 1 / W.SR)
    want = W.hz(n0.midi, m.detune_cents)
    band = (ff > want * 0.9) & (ff < want * 1.1)
    got = ff[band][np.argmax(sp[band])]
    assert abs(1200 * np.log2(got / want)) < 5, (got, want)
