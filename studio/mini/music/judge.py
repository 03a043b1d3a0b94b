"""Analytic judge for the mini music world: signal analysis only (numpy), no learned model.

``judge(samples, rate)`` returns a ``Verdict``: instrument, tempo class (and BPM), register, contour and
mode, with the measurements behind them.  ``score(expected, verdict)`` compares it with a melody's (or an
attribute dict's) ground truth.

- pitch: YIN (cumulative mean normalised difference) per 32 ms frame, 10 ms hop, 60-1500 Hz;
- onsets: rises of the frame log-energy; tempo: autocorrelation of that onset envelope, the shortest
  strong lag being the beat (the world plays one note per beat, so a two-beat lag is never preferred);
- register: median voiced pitch against the middle of the world's register gap (311 Hz);
- contour: sign of the least-squares slope of the note pitches over time;
- mode: pitch-class histogram of the notes against major / natural-minor templates; the tonic is the
  first and last note's pitch class when they agree (the world's rule; relative keys share their pitch
  set), else all 12 are tried with those two notes voting;
- timbre: decay within a note (a pluck loses >= 9 dB over half a beat, the others hold), then the
  2nd and 3rd harmonic amplitudes against the fundamental: sawtooth has both (1/2, 1/3), square only
  odd ones, sine neither.

The thresholds sit in the middle of the gaps the world leaves between classes (``world.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import world as W

HOP_S = 0.01
YIN_W = 512  # samples at 16 kHz: the frame is 2W = 64 ms, long enough for two periods of 60 Hz
FMIN, FMAX = 60.0, 1500.0
YIN_THRESHOLD = 0.15
SLOW_MAX_BPM, FAST_MIN_BPM = 90.0, 130.0
REGISTER_SPLIT_HZ = 311.0  # geometric middle of the 220-440 Hz gap
PLUCK_DECAY_DB = 4.0
SAW_R2 = 0.25
SQUARE_R3 = 0.15
ONSET_RISE_DB = 6.0
MIN_IOI_S = 0.2


@dataclass
class Verdict:
    instrument: str | None
    tempo: str | None
    bpm: float
    register: str | None
    median_hz: float
    contour: str | None
    slope: float  # semitones per second
    mode: str | None
    tonic_pc: int | None
    notes: list[float] = field(default_factory=list)  # MIDI pitch per detected note
    onsets: list[float] = field(default_factory=list)  # seconds
    features: dict[str, float] = field(default_factory=dict)

    def attrs(self) -> dict[str, str | None]:
        return {a: getattr(self, a) for a in W.ATTRS}


# ------------------------------------------------------------------------------------------- helpers
def _resample(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == W.SR:
        return x
    from scipy.signal import resample_poly

    g = np.gcd(int(rate), W.SR)
    return resample_poly(x, W.SR // g, int(rate) // g)


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    n = 1 + max(0, (len(x) - length) // hop)
    pad = np.pad(x, (0, max(0, length + (n - 1) * hop - len(x))))
    idx = np.arange(length)[None, :] + hop * np.arange(n)[:, None]
    return pad[idx]


def pitch_track(x: np.ndarray, sr: int = W.SR) -> tuple[np.ndarray, np.ndarray]:
    """(f0 per frame in Hz, nan where unvoiced; frame RMS) at HOP_S; frame t is centred at t*HOP_S + W/sr."""
    hop = int(round(HOP_S * sr))
    w = YIN_W
    fr = _frames(x.astype(np.float64), 2 * w, hop)
    # r[t, tau] = sum_{j<W} x_j x_{j+tau}: j + tau < 2W, so a 2W-point circular correlation never wraps
    a = np.fft.rfft(fr, 2 * w)
    b = np.fft.rfft(fr[:, :w], 2 * w)
    r = np.fft.irfft(a * np.conj(b), 2 * w)[:, :w]
    cs = np.concatenate([np.zeros((len(fr), 1)), np.cumsum(fr**2, 1)], 1)
    e_tau = cs[:, w:2 * w] - cs[:, :w]
    d = np.maximum(cs[:, w:w + 1] + e_tau - 2 * r, 0.0)
    cum = np.cumsum(d[:, 1:], 1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * np.arange(1, w) / np.maximum(cum, 1e-12)
    tmin, tmax = int(sr / FMAX), min(w - 2, int(sr / FMIN))
    rms = np.sqrt(cs[:, 2 * w] / (2 * w))
    f0 = np.full(len(fr), np.nan)
    floor = max(rms.max() * 10 ** (-40 / 20), 1e-6)
    for t in np.flatnonzero(rms > floor):
        c = cmnd[t]
        below = np.flatnonzero(c[tmin:tmax] < YIN_THRESHOLD)
        if len(below):
            tau = tmin + below[0]
            while tau + 1 < tmax and c[tau + 1] < c[tau]:
                tau += 1
        else:
            tau = tmin + int(np.argmin(c[tmin:tmax]))
            if c[tau] > 0.35:
                continue
        if 1 <= tau < w - 1:  # parabolic refinement of the dip
            y0, y1, y2 = c[tau - 1], c[tau], c[tau + 1]
            den = y0 - 2 * y1 + y2
            off = 0.5 * (y0 - y2) / den if abs(den) > 1e-12 else 0.0
            tau = tau + float(np.clip(off, -1, 1))
        f0[t] = sr / tau
    return f0, rms


def _midi(f: np.ndarray | float) -> np.ndarray | float:
    return 69 + 12 * np.log2(np.asarray(f) / 440.0)


def onset_envelope(x: np.ndarray, sr: int = W.SR) -> np.ndarray:
    """Positive rise of the 20 ms log-energy over 20 ms, per 10 ms hop (dB)."""
    hop = int(round(HOP_S * sr))
    fr = _frames(x.astype(np.float64), 2 * hop, hop)
    e = (fr**2).mean(1)
    db = 10 * np.log10(np.maximum(e, e.max() * 1e-6 + 1e-12))
    # silence before the clip: a note that starts at sample 0 is an onset too
    db = np.concatenate([np.full(2, db.min()), db])
    return np.maximum(db[2:] - db[:-2], 0.0)


def _onsets(env: np.ndarray) -> np.ndarray:
    """Frame indices of the envelope's peaks above ONSET_RISE_DB, at least MIN_IOI_S apart."""
    gap = int(MIN_IOI_S / HOP_S)
    e = np.concatenate([[0.0], env, [0.0]])  # a peak in the very first frame counts
    cand = [t - 1 for t in range(1, len(e) - 1) if e[t] >= ONSET_RISE_DB and e[t] >= e[t - 1] and e[t] > e[t + 1]]
    picked: list[int] = []
    for t in sorted(cand, key=lambda t: -env[t]):
        if all(abs(t - p) >= gap for p in picked):
            picked.append(t)
    return np.array(sorted(picked), dtype=int)


def tempo_bpm(env: np.ndarray) -> float:
    """Beat from the onset envelope's autocorrelation: lags 0.3-1.25 s (48-200 BPM); the shortest lag
    whose peak reaches 60% of the strongest wins, so a multiple of the beat is never chosen over it."""
    e = env - env.mean()
    n = len(e)
    if n < 4 or not np.any(e):
        return float("nan")
    ac = np.fft.irfft(np.abs(np.fft.rfft(e, 2 * n)) ** 2)[:n]
    lo, hi = int(0.3 / HOP_S), min(n - 2, int(1.25 / HOP_S))
    if hi <= lo:
        return float("nan")
    peaks = [k for k in range(lo, hi + 1) if ac[k] >= ac[k - 1] and ac[k] >= ac[k + 1] and ac[k] > 0]
    if not peaks:
        return float("nan")
    best = max(ac[k] for k in peaks)
    k = next(k for k in peaks if ac[k] >= 0.6 * best)
    den = ac[k - 1] - 2 * ac[k] + ac[k + 1]
    off = 0.5 * (ac[k - 1] - ac[k + 1]) / den if abs(den) > 1e-12 else 0.0
    return 60.0 / ((k + float(np.clip(off, -1, 1))) * HOP_S)


def tempo_class(bpm: float) -> str | None:
    if not np.isfinite(bpm):
        return None
    return "slow" if bpm < SLOW_MAX_BPM else "fast" if bpm > FAST_MIN_BPM else "medium"


def _harmonics(seg: np.ndarray, f0: float, sr: int) -> tuple[float, float]:
    """(A2/A1, A3/A1) from a Hann-windowed, 4x zero-padded spectrum, each the peak within +-4% of k*f0."""
    n = len(seg)
    nfft = 1 << int(np.ceil(np.log2(4 * n)))
    spec = np.abs(np.fft.rfft(seg * np.hanning(n), nfft))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sr)

    def amp(k: int) -> float:
        band = (freqs > k * f0 * 0.96) & (freqs < k * f0 * 1.04)
        return float(spec[band].max()) if band.any() else 0.0

    a1 = max(amp(1), 1e-12)
    return amp(2) / a1, amp(3) / a1


_TEMPLATES = {}
for _mode, _scale in W.MODES.items():
    t = np.full(12, -1.5)
    t[[s % 12 for s in _scale]] = 1.0
    t[0] = 2.0
    t[_scale[2] % 12] = 1.5  # the third, which is what tells the modes apart
    t[7] = 1.5
    _TEMPLATES[_mode] = t
ENDPOINT_VOTE = 2.0


def _key(notes: np.ndarray) -> tuple[str | None, int | None]:
    if len(notes) < 3:
        return None, None
    frac = notes - np.round(notes)
    tuning = np.angle(np.exp(2j * np.pi * frac).mean()) / (2 * np.pi)  # circular mean: the global detune
    pcs = np.round(notes - tuning).astype(int) % 12
    hist = np.bincount(pcs, minlength=12).astype(float)
    # The world starts and ends every melody on its tonic: when the two agree they name it, and the mode
    # is then read from the degrees that differ (3rd, 6th, 7th).  Otherwise every tonic is tried, the
    # end notes voting, since relative keys share one pitch set.
    tonics = [int(pcs[0])] if pcs[0] == pcs[-1] else range(12)
    best = (-np.inf, None, None)
    for tonic in tonics:
        rot = np.roll(hist, -tonic)
        ends = ENDPOINT_VOTE * ((pcs[0] == tonic) + (pcs[-1] == tonic))
        for mode, tmpl in _TEMPLATES.items():
            s = float(rot @ tmpl) + ends
            if s > best[0]:
                best = (s, mode, tonic)
    return best[1], best[2]


# ------------------------------------------------------------------------------------------- the judge
def judge(samples: np.ndarray, rate: int = W.SR) -> Verdict:
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 2:  # (n, ch) from decode_audio, or (ch, n)
        x = x.mean(1) if x.shape[1] <= 2 else x.mean(0)
    x = _resample(x, rate)
    sr = W.SR
    f0, rms = pitch_track(x, sr)
    centre = YIN_W / sr  # the pitch frame's centre lies half a window after its hop time
    env = onset_envelope(x, sr)
    bpm = tempo_bpm(env)
    on = _onsets(env) * HOP_S
    voiced = np.isfinite(f0)
    times = np.arange(len(f0)) * HOP_S + centre
    median_hz = float(np.median(f0[voiced])) if voiced.any() else float("nan")
    register = None if not np.isfinite(median_hz) else ("low" if median_hz < REGISTER_SPLIT_HZ else "high")

    # note segments between onsets; the last one ends where the sound does
    last = times[voiced][-1] if voiced.any() else 0.0
    bounds = list(on) + [max(last, on[-1] + MIN_IOI_S) if len(on) else last]
    notes, decays, r2s, r3s = [], [], [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        ioi = b - a
        sel = voiced & (times >= a + 0.1 * ioi) & (times <= a + 0.75 * ioi)
        if sel.sum() < 2:
            continue
        fn = float(np.median(f0[sel]))
        notes.append(float(_midi(fn)))
        s0, s1 = int((a + 0.05 * ioi) * sr), int((a + 0.25 * ioi) * sr)
        s2, s3 = int((a + 0.55 * ioi) * sr), int((a + 0.75 * ioi) * sr)
        e0 = np.mean(x[s0:s1] ** 2) + 1e-12
        e1 = np.mean(x[s2:s3] ** 2) + 1e-12
        decays.append(10 * np.log10(e0 / e1))
        seg = x[int((a + 0.1 * ioi) * sr):int((a + 0.8 * ioi) * sr)]
        if len(seg) > 64:
            r2, r3 = _harmonics(seg, fn, sr)
            r2s.append(r2)
            r3s.append(r3)
    notes_a = np.array(notes)

    if len(notes_a) >= 2:
        tn = np.array([a for a, b in zip(bounds[:-1], bounds[1:])][: len(notes_a)])
        tn = tn[: len(notes_a)] if len(tn) >= len(notes_a) else np.arange(len(notes_a), dtype=float)
        slope = float(np.polyfit(tn, notes_a, 1)[0])
    elif voiced.sum() >= 2:
        slope = float(np.polyfit(times[voiced], _midi(f0[voiced]), 1)[0])
    else:
        slope = 0.0
    contour = None if slope == 0.0 else ("rising" if slope > 0 else "falling")
    mode, tonic = _key(notes_a)

    feats = {
        "decay_db": float(np.median(decays)) if decays else float("nan"),
        "r2": float(np.median(r2s)) if r2s else float("nan"),
        "r3": float(np.median(r3s)) if r3s else float("nan"),
    }
    if not decays:
        instrument = None
    elif feats["decay_db"] > PLUCK_DECAY_DB:
        instrument = "plucked"
    elif feats["r2"] > SAW_R2:
        instrument = "sawtooth"
    elif feats["r3"] > SQUARE_R3:
        instrument = "square"
    else:
        instrument = "sine"
    return Verdict(instrument, tempo_class(bpm), float(bpm), register, median_hz, contour, slope, mode, tonic,
                   notes=notes, onsets=[float(t) for t in on], features=feats)


def score(expected, verdict: Verdict) -> dict[str, bool]:
    """Per-attribute agreement with ``expected`` (a ``world.Melody`` or an attribute dict) and "all"."""
    exp = expected.attrs() if hasattr(expected, "attrs") else dict(expected)
    out = {a: verdict.attrs()[a] == exp[a] for a in W.ATTRS if a in exp}
    out["all"] = all(out.values())
    return out
