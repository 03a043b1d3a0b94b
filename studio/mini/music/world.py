"""Procedural music world for the mini music model: seeded one-line melodies with captions.

A melody has five attributes, each with a computable ground truth:

- instrument: sine, square, sawtooth (band-limited additive synthesis) or plucked (Karplus-Strong);
- tempo: slow (60-80 BPM), medium (100-120) or fast (140-160); one note per beat;
- register: low (every note between E2 and A3, 82-220 Hz) or high (A4-D6, 440-1175 Hz);
- contour: rising (tonic up to its octave) or falling (octave down to the tonic);
- mode: major or natural minor.

The bands leave gaps (80-100 and 120-140 BPM, 220-440 Hz) so that a class is never a matter of a few
BPM or cents: the judge's thresholds sit in the middle of the gaps.

Every melody starts and ends on the tonic and visits every scale degree once it has 8 notes or more,
so the third and the sixth (which tell major from minor) always sound.  Audio is mono float32 at
``SR`` = 16 kHz: the highest fundamental (1175 Hz) still has three harmonics under ``BANDWIDTH``,
16 kHz is the rate of AudioLDM and of speech models, and MP3 (MPEG-2 layer III) carries it at 128 kbit/s,
which 8 kHz (MPEG-2.5, 64 kbit/s at most) cannot.  All synthesis is band-limited to ``BANDWIDTH`` =
4 kHz: four harmonics of the highest note suffice to tell the timbres apart, and the codec then needs
to carry only the lower half of the spectrum (see ``codec.py``).

Held-out (instrument, tempo, register, contour) combinations (``HOLDOUT``) never appear with
``split="train"``; ``split="holdout"`` draws only them.  Only numpy and scipy are used.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field

import numpy as np

SR = 16000
DURATION = 8.0
BANDWIDTH = 4000.0
# Highest partial rendered: the codec's 4 kHz edge is a lapped transform's, whose window leaks a
# partial within ~300 Hz of it partly into the dropped bins (sawtooth round trips measured 29 dB at a
# 4 kHz cut); 3.6 kHz still passes the third harmonic of the highest note (3 x 1175 Hz).
HARMONIC_CUT = 3600.0

INSTRUMENTS = ("sine", "square", "sawtooth", "plucked")
TEMPI: dict[str, tuple[float, float]] = {"slow": (60.0, 80.0), "medium": (100.0, 120.0), "fast": (140.0, 160.0)}
REGISTERS: dict[str, tuple[int, int]] = {"low": (40, 45), "high": (69, 74)}  # tonic MIDI range
CONTOURS = ("rising", "falling")
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11, 12),
    "minor": (0, 2, 3, 5, 7, 8, 10, 12),
}
ATTRS = ("instrument", "tempo", "register", "contour", "mode")

# Balanced: each instrument twice, each register and contour four times, each tempo two or three times;
# mode is free, so 16 of the 96 full combinations are never trained.
HOLDOUT: frozenset[tuple[str, str, str, str]] = frozenset({
    ("sine", "fast", "high", "rising"), ("sine", "slow", "low", "falling"),
    ("square", "medium", "high", "falling"), ("square", "fast", "low", "rising"),
    ("sawtooth", "slow", "high", "rising"), ("sawtooth", "medium", "low", "falling"),
    ("plucked", "fast", "high", "falling"), ("plucked", "slow", "low", "rising"),
})

GATE = 0.86  # sounding fraction of each beat: the silence after it is what makes repeated notes audible
ATTACK_S = 0.008
RELEASE_S = 0.03
PLUCK_T60 = 1.2  # seconds: every pluck decays 60 dB in this time whatever its pitch
DETUNE_CENTS = 10.0  # global tuning jitter, so nothing relies on exact equal temperament

# degrees placed first when a melody has fewer than 8 notes: tonic, octave, third, sixth, fifth, ...
_DEGREE_PRIORITY = (0, 7, 2, 5, 4, 1, 3, 6)


@dataclass(frozen=True)
class Note:
    midi: int
    start: float  # seconds
    duration: float  # sounding time (seconds), GATE of the beat


@dataclass(frozen=True)
class Melody:
    instrument: str
    tempo: str
    bpm: float
    register: str
    contour: str
    mode: str
    tonic: int  # MIDI note of the tonic (the lower one)
    notes: tuple[Note, ...]
    duration: float
    detune_cents: float = 0.0
    gain: float = 0.5
    seed: int = 0
    caption: str = field(default="", compare=False)

    def attrs(self) -> dict[str, str]:
        return {a: getattr(self, a) for a in ATTRS}


def is_holdout(instrument: str, tempo: str, register: str, contour: str) -> bool:
    return (instrument, tempo, register, contour) in HOLDOUT


def hz(midi: float, detune_cents: float = 0.0) -> float:
    return 440.0 * 2.0 ** ((midi - 69 + detune_cents / 100.0) / 12.0)


# ------------------------------------------------------------------------------------------- captions
TEMPO_WORDS = {"slow": ("slow",), "medium": ("medium", "moderate"), "fast": ("fast",)}
INSTRUMENT_WORDS = {"sine": ("sine",), "square": ("square",), "sawtooth": ("sawtooth",), "plucked": ("plucked",)}


def caption(m: Melody, rng: random.Random | None = None, full: bool = False) -> str:
    """Caption in the world's small language; ``full=True`` (or no rng) gives the canonical form,
    "a fast plucked melody rising in a high register, minor"."""
    if rng is None or full:
        return f"a {m.tempo} {m.instrument} melody {m.contour} in a {m.register} register, {m.mode}"
    tempo = rng.choice(TEMPO_WORDS[m.tempo])
    inst = rng.choice(INSTRUMENT_WORDS[m.instrument])
    reg = rng.choice((f"in a {m.register} register", f"in the {m.register} register"))
    mode = rng.choice((m.mode, f"in a {m.mode} key"))
    t = rng.random()
    if t < 0.5:
        return f"a {tempo} {inst} melody {m.contour} {reg}, {mode}"
    if t < 0.75:
        return f"a {m.mode} {tempo} {inst} melody, {m.contour}, {m.register} register"
    return f"a {inst} melody {reg}, {tempo} and {m.contour}, {mode}"


# ------------------------------------------------------------------------------------------- sampling
def _degrees(n: int, rng: random.Random) -> list[int]:
    """Rising scale-degree path from 0 to 7 with n notes: every degree once (the most telling first
    when n < 8), extra notes as repeats, and for long paths a few adjacent swaps (local one-step dips)
    that never touch the first or last note, so the walk still rises overall."""
    if n < 2:
        return [0][:n]
    if n <= 8:
        return sorted(_DEGREE_PRIORITY[:n])
    path = sorted(list(range(8)) + [rng.randrange(1, 7) for _ in range(n - 8)])
    spots = [i for i in range(1, n - 2) if path[i] < path[i + 1]]
    rng.shuffle(spots)
    used: set[int] = set()
    for i in spots[: n // 6]:
        if used.isdisjoint({i - 1, i, i + 1}):
            path[i], path[i + 1] = path[i + 1], path[i]
            used.add(i)
    return path


def make_melody(instrument: str, tempo: str, register: str, contour: str, mode: str, seed: int = 0,
                duration: float = DURATION, rng: random.Random | None = None) -> Melody:
    """The melody for these attributes and seed (any duration: the octave spans the whole clip)."""
    rng = rng or random.Random(f"mini-music-{instrument}-{tempo}-{register}-{contour}-{mode}-{seed}")
    bpm = rng.uniform(*TEMPI[tempo])
    beat = 60.0 / bpm
    n = max(1, int(math.floor(duration / beat + 1e-6)))
    lo, hi = REGISTERS[register]
    tonic = rng.randint(lo, hi)
    scale = MODES[mode]
    path = _degrees(n, rng)
    if contour == "falling":
        path = path[::-1]
    notes = tuple(Note(tonic + scale[d], i * beat, GATE * beat) for i, d in enumerate(path))
    return Melody(instrument, tempo, bpm, register, contour, mode, tonic, notes, duration,
                  detune_cents=rng.uniform(-DETUNE_CENTS, DETUNE_CENTS), gain=rng.uniform(0.35, 0.6), seed=seed)


def sample_melody(seed: int, split: str = "train", duration: float = DURATION, **fixed: str) -> Melody:
    """Deterministic melody for ``seed``.  split "train" never draws a HOLDOUT combination, "holdout"
    draws only them, "any" draws freely.  Keyword arguments fix attributes (e.g. ``instrument="sine"``)."""
    if split not in ("train", "holdout", "any"):
        raise ValueError(split)
    unknown = set(fixed) - set(ATTRS)
    if unknown:
        raise ValueError(f"unknown attributes {sorted(unknown)}")
    rng = random.Random(f"mini-music-{split}-{seed}")
    choices = {"instrument": INSTRUMENTS, "tempo": tuple(TEMPI), "register": tuple(REGISTERS),
               "contour": CONTOURS, "mode": tuple(MODES)}
    for _ in range(10000):
        a = {k: fixed.get(k) or rng.choice(v) for k, v in choices.items()}
        held = is_holdout(a["instrument"], a["tempo"], a["register"], a["contour"])
        if (split == "train" and held) or (split == "holdout" and not held):
            continue
        m = make_melody(**a, seed=seed, duration=duration, rng=rng)
        return _with_caption(m, rng)
    raise ValueError(f"no {split} melody has {fixed}")


def _with_caption(m: Melody, rng: random.Random) -> Melody:
    from dataclasses import replace

    return replace(m, caption=caption(m, rng))


# ------------------------------------------------------------------------------------------- synthesis
def _envelope(n: int) -> np.ndarray:
    env = np.ones(n, np.float64)
    a = min(n, int(ATTACK_S * SR))
    r = min(n - a, int(RELEASE_S * SR))
    env[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    if r > 0:
        env[n - r:] = np.linspace(1.0, 0.0, r)
    return env


def _additive(f0: float, n: int, kind: str, phase0: float) -> np.ndarray:
    """Band-limited waveform: harmonics k*f0 < HARMONIC_CUT only (no aliasing to fool a pitch tracker)."""
    t = np.arange(n) / SR
    kmax = max(1, int(HARMONIC_CUT // f0))
    if kind == "sine":
        ks = np.array([1])
        amps = np.array([1.0])
    elif kind == "square":
        ks = np.arange(1, kmax + 1, 2)
        amps = 1.0 / ks
    elif kind == "sawtooth":
        ks = np.arange(1, kmax + 1)
        amps = 1.0 / ks
    else:  # pragma: no cover
        raise ValueError(kind)
    # one period as a table, read at the note's phase: as exact as summing sines per sample, 10x cheaper
    grid = np.arange(_TABLE) * (2 * np.pi / _TABLE)
    table = (amps[:, None] * np.sin(ks[:, None] * grid[None, :])).sum(0)
    phase = ((f0 * t + phase0 / (2 * np.pi)) % 1.0) * _TABLE
    return np.interp(phase, np.arange(_TABLE + 1), np.append(table, table[0]))


_TABLE = 4096


def _lowpass_kernel() -> np.ndarray:
    taps = 127
    x = np.arange(taps) - taps // 2
    fc = (HARMONIC_CUT - 100.0) / SR  # -6 dB at 3.5 kHz; the stop band is reached below BANDWIDTH
    return (2 * fc * np.sinc(2 * fc * x) * np.blackman(taps)).astype(np.float64)


_LP = _lowpass_kernel()


def _pluck(f0: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Karplus-Strong string: a noise burst in a delay loop with a two-point average, so higher
    harmonics die faster as on a string.  The loop runs period by period in numpy (each period depends
    only on the previous one); the integer delay's pitch error (up to 3% at 1 kHz) is then removed by
    reading the string at the exact period, and the result is low-passed to BANDWIDTH."""
    period = SR / f0
    delay = max(2, int(round(period - 0.5)))  # the average adds half a sample of loop delay
    ratio = (delay + 0.5) / period  # the integer string sounds 1/ratio too low: play it ratio faster
    need = int(math.ceil(n * ratio)) + 2
    rho = 10.0 ** (-3.0 / (PLUCK_T60 * f0))  # per-period loss for a pitch-independent decay time
    blocks = -(-need // delay) + 1
    y = np.zeros(blocks * delay + 1)
    y[:delay] = rng.uniform(-1.0, 1.0, delay)
    y[:delay] -= y[:delay].mean()
    for b in range(1, blocks):
        s = b * delay
        # y[i] = rho/2 (y[i-delay] + y[i-delay-1]); y[-1] is the silent sample before the burst
        prev = y[s - delay - 1:s - 1] if s - delay - 1 >= 0 else np.concatenate([[0.0], y[:delay - 1]])
        y[s:s + delay] = 0.5 * rho * (y[s - delay:s] + prev)
    src = np.arange(n) * ratio
    out = np.interp(src, np.arange(len(y)), y)
    return np.convolve(out, _LP, mode="same")


def render(m: Melody, duration: float | None = None) -> np.ndarray:
    """Mono float32 samples at SR; ``duration`` (seconds) crops or pads with silence."""
    total = int(round((m.duration if duration is None else duration) * SR))
    out = np.zeros(total, np.float64)
    # str hashes change per process: a crc of the melody's identity keeps the noise bursts reproducible
    nrng = np.random.default_rng(zlib.crc32(repr((m.seed, m.instrument, m.tonic, round(m.bpm, 6))).encode()))
    for note in m.notes:
        s = int(round(note.start * SR))
        if s >= total:
            break
        n = min(int(round(note.duration * SR)), total - s)
        f0 = hz(note.midi, m.detune_cents)
        if m.instrument == "plucked":
            wave = _pluck(f0, n, nrng) * 2.5  # the pluck's loop gain leaves it quieter than the others
            wave *= _envelope(n) if n > 0 else 1.0
        else:
            wave = _additive(f0, n, m.instrument, nrng.uniform(0, 2 * np.pi)) * _envelope(n)
        out[s:s + n] += wave
    peak = np.abs(out).max()
    if peak > 0:
        out *= m.gain / peak
    return out.astype(np.float32)
