"""The mini music model's latent, defined in closed form inside a stock ``AutoencoderOobleck``.

The latent is the low half of a modified discrete cosine transform (MDCT, sine window, the lapped
transform of MP3 and AAC): every ``HOP`` = 128 samples (8 ms at 16 kHz) the 2*HOP-sample window
around them becomes HOP cosine coefficients, of which the lowest ``LATENT`` = 64 (0-4 kHz, the world's
``BANDWIDTH``) are kept, times a constant ``GAIN`` that brings the latent to unit variance.  An 8 s clip
is a (64, 1000) latent.  The full MDCT is orthogonal and its overlapping windows cancel each other's
time aliasing, so on band-limited audio encode -> decode is exact up to float rounding and the
first and last half-window (4 ms), which only one window covers.

Why this shape fits Oobleck exactly: its strided convolution has kernel 2*stride and padding
stride/2, which is the MDCT's window length and hop, and its transposed convolution is the inverse
transform's overlap-add.  ``init_oobleck_closed_form`` writes a polyphase reshape into the first
stage and the MDCT basis into the second (``downsampling_ratios=[16, 8]``), zeroes every residual unit,
makes every Snake an identity (beta = e^20 scales its sin^2 term to < 3e-9; in half precision e^20
overflows to inf and the term is exactly 0), and passes the rest through single taps.  The posterior
std is ~1e-4 (scale bias -10), so ``latent_dist.sample()`` is the mean up to -70 dB.

A linear code has phase: a steady tone's coefficients turn from frame to frame at a rate set by its
pitch, so the transformer must learn that rotation (``measure_codec`` probes how much of it matters).
"""

from __future__ import annotations

import math

import numpy as np

from . import world as W

HOP = 128
LATENT = 64  # coefficients kept: bins of SR / (2 HOP) = 62.5 Hz, 0-4 kHz
GAIN = 2.65  # latent = GAIN * MDCT: unit std over world clips (2.2 measured 0.83 on 48 clips of all 96 combinations)
SNAKE_OFF = 20.0  # log beta: Snake(x) = x + e^-20 sin^2(x)
LOGSCALE_OFF = -10.0  # posterior scale bias: softplus(-10) + 1e-4 ~ 1.5e-4


POLY = 16  # first stage: 16-sample blocks (a polyphase reshape); second stage: 8 blocks = one hop
DEC_CHANNELS = 16  # the decoder's width at the block rate and at audio rate: POLY channels suffice


def oobleck_config() -> dict:
    # Two stages rather than one stride-128 stage: Oobleck's residual units run at the rate of their
    # stage, and the decoder's last stage at audio rate is then 16 channels wide instead of 64
    # (decoding 8 s drops from ~12.6 to ~0.8 GMAC).  channel_multiples [1, 4]: the encoder carries
    # the 16 blocks in 128 channels and the 64 coefficients in 512; the decoder the coefficients in
    # 16 * 4 = 64 and the blocks in 16.
    return dict(encoder_hidden_size=2 * LATENT, downsampling_ratios=[POLY, HOP // POLY], channel_multiples=[1, 4],
                decoder_channels=DEC_CHANNELS, decoder_input_channels=LATENT, audio_channels=1, sampling_rate=W.SR)


def mdct_basis(hop: int = HOP, keep: int = LATENT) -> np.ndarray:
    """(keep, 2*hop) orthonormal MDCT analysis = synthesis rows (Princen-Bradley sine window)."""
    n = np.arange(2 * hop)
    k = np.arange(keep)[:, None]
    win = np.sin(np.pi * (n + 0.5) / (2 * hop))
    return math.sqrt(2.0 / hop) * win * np.cos(np.pi / hop * (n + 0.5 + hop / 2) * (k + 0.5))


def mdct(x: np.ndarray, hop: int = HOP, keep: int = LATENT) -> np.ndarray:
    """Numpy reference of the encoder (without GAIN): (keep, len/hop), frame t centred on [t*hop, (t+1)*hop)."""
    pad = np.pad(np.asarray(x, np.float64), (hop // 2, hop + hop // 2))
    n = len(x) // hop
    idx = np.arange(2 * hop)[None, :] + hop * np.arange(n)[:, None]
    return mdct_basis(hop, keep) @ pad[idx].T


def patchify(z, patch: int):
    """(..., LATENT, T) -> (..., patch * LATENT, T / patch): ``patch`` consecutive frames side by side in one token,
    frame-major (channel p * LATENT + k is coefficient k of frame patch * u + p).  Works on numpy and torch."""
    if patch == 1:
        return z
    *lead, c, t = z.shape
    if t % patch:
        raise ValueError(f"{t} frames do not split into patches of {patch}")
    z = z.reshape(*lead, c, t // patch, patch)
    z = z.swapaxes(-1, -3).swapaxes(-1, -2)  # (..., patch, c, T/patch)
    return z.reshape(*lead, patch * c, t // patch)


ENV_BINS = 32  # 0-2 kHz: every fundamental (82-1175 Hz) and the low notes' first harmonics
ENV_FRAMES = 5  # 40 ms: shorter than the shortest gap between notes (56 ms at 160 BPM)
ENV_MEAN, ENV_STD = 0.40, 1.26  # measured on 48 train clips of 4 s: unit std, zero mean


def envelope(z: np.ndarray) -> np.ndarray:
    """(..., LATENT, T) latent -> (..., ENV_BINS, T): each low bin's RMS over ``ENV_FRAMES`` frames, normalised.
    A probe channel set (isolate.py): unlike the signed coefficients, whose mean over melodies of one caption
    is zero (random phase), it has a first moment, so a denoiser can place it at high noise."""
    from scipy.ndimage import uniform_filter1d

    e = uniform_filter1d(np.asarray(z, np.float64)[..., :ENV_BINS, :] ** 2, ENV_FRAMES, axis=-1, mode="constant")
    return ((np.sqrt(np.maximum(e, 0.0)) - ENV_MEAN) / ENV_STD).astype(np.float32)


def sounding(z: np.ndarray, floor_db: float = -20.0) -> np.ndarray:
    """(..., LATENT, T) -> (..., 1, T): +1 where a frame's energy (over 3 frames) is within ``floor_db`` of the
    clip's mean frame energy, -1 in the gaps.  The oracle probe's clean input (isolate.py): where the notes sound."""
    e = _sum3((np.asarray(z, np.float64)[..., :GATE_FIRST, :] ** 2).sum(axis=-2)) / 3
    ref = e.mean(axis=-1, keepdims=True) * 10 ** (floor_db / 10)
    return np.where(e > ref, 1.0, -1.0).astype(np.float32)[..., None, :]


def unpatchify(z, patch: int):
    """Inverse of ``patchify``."""
    if patch == 1:
        return z
    *lead, pc, u = z.shape
    c = pc // patch
    z = z.reshape(*lead, patch, c, u)
    z = z.swapaxes(-2, -1).swapaxes(-3, -1)  # (..., c, u, patch)
    return z.reshape(*lead, c, u * patch)


# ---- the gate channels: a loudness envelope in the latent (docs/mini-music-plan.md, 2026-12-06)
# The signed MDCT coefficients have no first moment over the melodies of a caption (random phase), so at high
# noise a denoiser's best guess is zero everywhere and where notes start and stop is decided late, from second
# moments; the probes found rhythm to be the defect.  Gate channels carry each band's energy, which has a mean
# to move towards.  They take the place of MDCT bins 58-63 (3.6-4 kHz: above every partial the world renders;
# dropping those bins costs 40-52 dB SNR on world clips), the decoder gives them zero weight, and the encoder
# computes them in closed form, so a stock AutoencoderOobleck still encodes and decodes the model's latent.
GATE_FIRST = 58
GATE_BANDS = ((0, 2), (2, 4), (4, 7), (7, 12), (12, 20), (20, 58))  # MDCT bins: 0-125 Hz ... 1.25-3.6 kHz
GATE_A = 0.1  # sin^2(0.1 z): about (0.1 z)^2 and monotone up to |z| = 15.7 (99.9% of unit-rms latents are < 10)
# per-band mean and std of the raw band energy on unit-rms train clips (measure_gate), to give unit-scale channels
GATE_MEAN = (0.2223, 0.3784, 0.0991, 0.4291, 0.3187, 0.1752)
GATE_STD = (0.4457, 0.569, 0.1777, 0.6741, 0.6079, 0.3334)


def _band_energy(z: np.ndarray) -> np.ndarray:
    """(..., LATENT, T) latent -> (..., len(GATE_BANDS), T): sum of sin^2(GATE_A z) over each band and 3 frames
    (zero beyond the clip), the encoder's Snake and last convolution (kernel 3: 24 ms, shorter than the world's
    shortest gap between notes) in numpy."""
    s = np.sin(GATE_A * np.asarray(z, np.float64)) ** 2
    return _sum3(np.stack([s[..., lo:hi, :].sum(axis=-2) for lo, hi in GATE_BANDS], axis=-2))


def _sum3(x: np.ndarray) -> np.ndarray:
    """Sum over each frame and its two neighbours along the last axis, zero beyond the ends (a kernel-3 conv)."""
    pad = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(1, 1)])
    return pad[..., :-2] + pad[..., 1:-1] + pad[..., 2:]


def with_gate(z: np.ndarray) -> np.ndarray:
    """A latent (the coefficients, at the level the model sees them) with bins GATE_FIRST.. replaced by the gate
    channels, exactly as ``build_vae(gate=True)`` encodes the same audio (up to float rounding)."""
    z = np.array(z, np.float32, copy=True)
    z[..., GATE_FIRST:, :] = 0.0
    e = _band_energy(z)
    mean = np.asarray(GATE_MEAN)[:, None]
    std = np.asarray(GATE_STD)[:, None]
    z[..., GATE_FIRST:, :] = ((e - mean) / std).astype(np.float32)
    return z


def measure_gate(n: int = 48, duration: float = 4.0) -> tuple[tuple, tuple]:
    """GATE_MEAN and GATE_STD from ``n`` unit-rms train clips (how the constants above were set)."""
    from .train import level_normalise, melody_latent

    zs = []
    for i in range(n):
        z = melody_latent(W.sample_melody(9_000 + i, "train", duration=duration))
        z[GATE_FIRST:] = 0.0
        zs.append(level_normalise(z))
    e = _band_energy(np.stack(zs))
    return (tuple(round(float(v), 4) for v in e.mean(axis=(0, 2))),
            tuple(round(float(v), 4) for v in e.std(axis=(0, 2))))


def _set_wn(conv, weight) -> None:
    """Set a weight-normalised conv's effective weight: g = |w| per slice along dim 0, v = w
    (v = 1 where w is 0, so that v / |v| stays finite and g = 0 zeroes the slice)."""
    import torch

    w = torch.as_tensor(weight, dtype=conv.weight_v.dtype)
    norms = w.flatten(1).norm(dim=1)
    v = w.clone()
    v[norms == 0] = 1.0
    conv.weight_v.copy_(v)
    conv.weight_g.copy_(norms.view(-1, *([1] * (w.dim() - 1))))
    if getattr(conv, "bias", None) is not None:
        conv.bias.zero_()
    # weight_norm recomputes .weight in a forward pre-hook; refresh it now for direct reads
    conv.weight = conv.weight_g * conv.weight_v / conv.weight_v.flatten(1).norm(dim=1).view_as(conv.weight_g)


def _tap(shape, pairs, tap: int, value: float):
    import torch

    w = torch.zeros(shape)
    for o, i in pairs:
        w[o, i, tap] = value
    return w


def init_oobleck_closed_form(vae, gate: bool = False) -> None:
    """Write the closed-form MDCT latent into an ``AutoencoderOobleck`` built from ``oobleck_config()``.

    Stage 1 (stride 16, kernel 32, padding 8) copies sample 16u + c into channel c of block u; stage 2
    (stride 8, kernel 16, padding 4) reads blocks 8t - 4 .. 8t + 11, i.e. samples 128t - 64 .. 128t + 191,
    which is MDCT frame t, so its weight is the basis rearranged: w[k, c, j] = basis[k, 16 j + c].  The
    decoder's two transposed convolutions are the same maps read backwards (overlap-add included).

    ``gate``: stage 2 also writes a copy of coefficients 0..GATE_FIRST-1 into channels LATENT.., the encoder's
    last Snake on those copies is c + sin^2(GATE_A GAIN c) (alpha = GATE_A GAIN, beta = 1), and its last
    convolution subtracts the identity-Snake original from each copy, sums the bands over its 3 taps and
    normalises: latent channels GATE_FIRST.. are ``with_gate``'s; the decoder reads only channels < GATE_FIRST."""
    import torch

    cfg = vae.config
    if dict(cfg).get("downsampling_ratios") != [POLY, HOP // POLY] or cfg.decoder_input_channels != LATENT \
            or cfg.audio_channels != 1 or cfg.decoder_channels < POLY:
        raise ValueError(f"init_oobleck_closed_form expects AutoencoderOobleck(**oobleck_config()), got {dict(cfg)}")
    enc, dec = vae.encoder, vae.decoder
    nb = HOP // POLY
    basis = torch.tensor(mdct_basis(), dtype=torch.float32)  # (LATENT, 2 HOP)
    # (LATENT, POLY, 2 nb): coefficient k, block channel c, block tap j  <-  basis[k, POLY j + c]
    lapped = basis.view(LATENT, 2 * nb, POLY).permute(0, 2, 1).contiguous()
    with torch.no_grad():
        for mod in vae.modules():
            name = type(mod).__name__
            if name == "Snake1d":
                mod.alpha.zero_()
                mod.beta.fill_(SNAKE_OFF)
            elif name == "OobleckResidualUnit":
                _set_wn(mod.conv1, torch.zeros_like(mod.conv1.weight_v))
                _set_wn(mod.conv2, torch.zeros_like(mod.conv2.weight_v))
        e = enc.conv1.weight_v.shape[0]
        _set_wn(enc.conv1, _tap((e, 1, 7), [(0, 0)], 3, 1.0))
        w = torch.zeros_like(enc.block[0].conv1.weight_v)
        for c in range(POLY):
            w[c, 0, POLY // 2 + c] = 1.0
        _set_wn(enc.block[0].conv1, w)
        w = torch.zeros_like(enc.block[1].conv1.weight_v)
        w[:LATENT, :POLY, :] = lapped
        _set_wn(enc.block[1].conv1, w)
        kept = GATE_FIRST if gate else LATENT
        w2 = _tap(enc.conv2.weight_v.shape, [(k, k) for k in range(kept)], 1, GAIN)
        if gate:
            w[LATENT:LATENT + GATE_FIRST, :POLY, :] = lapped[:GATE_FIRST]
            _set_wn(enc.block[1].conv1, w)
            copies = slice(LATENT, LATENT + GATE_FIRST)
            enc.snake1.alpha[0, copies, 0] = math.log(GATE_A * GAIN)
            enc.snake1.beta[0, copies, 0] = 0.0
            for j, (lo, hi) in enumerate(GATE_BANDS):
                for k in range(lo, hi):
                    w2[GATE_FIRST + j, LATENT + k, :] = 1.0 / GATE_STD[j]
                    w2[GATE_FIRST + j, k, :] = -1.0 / GATE_STD[j]
        _set_wn(enc.conv2, w2)
        enc.conv2.bias[LATENT:] = LOGSCALE_OFF
        if gate:
            enc.conv2.bias[GATE_FIRST:LATENT] = torch.tensor([-m / s for m, s in zip(GATE_MEAN, GATE_STD)])
        _set_wn(dec.conv1, _tap(dec.conv1.weight_v.shape, [(k, k) for k in range(kept)], 3, 1.0 / GAIN))
        w = torch.zeros_like(dec.block[0].conv_t1.weight_v)  # ConvTranspose1d: (in, out, kernel)
        w[:LATENT, :POLY, :] = lapped
        _set_wn(dec.block[0].conv_t1, w)
        w = torch.zeros_like(dec.block[1].conv_t1.weight_v)
        for c in range(POLY):
            w[c, 0, POLY // 2 + c] = 1.0
        _set_wn(dec.block[1].conv_t1, w)
        _set_wn(dec.conv2, _tap(dec.conv2.weight_v.shape, [(0, 0)], 3, 1.0))


def build_vae(gate: bool = False):
    from diffusers import AutoencoderOobleck

    vae = AutoencoderOobleck(**oobleck_config())
    init_oobleck_closed_form(vae, gate)
    return vae.eval()


def encode(vae, audio: np.ndarray) -> np.ndarray:
    """(n,) or (B, n) float samples at SR -> (B, LATENT, n / HOP) latent means."""
    import torch

    x = torch.as_tensor(np.atleast_2d(audio), dtype=vae.dtype)[:, None, :]
    with torch.no_grad():
        return vae.encode(x).latent_dist.mean.float().numpy()


def decode(vae, latents: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return vae.decode(torch.as_tensor(latents, dtype=vae.dtype)).sample[:, 0].float().numpy()


def snr_db(ref: np.ndarray, out: np.ndarray, edge: int = 0) -> float:
    ref = np.asarray(ref, np.float64)
    out = np.asarray(out, np.float64)[..., : ref.shape[-1]]
    if edge:
        ref, out = ref[..., edge:-edge], out[..., edge:-edge]
    err = np.sum((ref - out) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(np.sum(ref**2) / err))
