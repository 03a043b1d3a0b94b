"""Frozen, weight-free features for the learned reward (see docs/rewards.md for why these and not a VAE
latent): what a taste is usually about -- colour, saturation, brightness, the object's size, place and
spread, edges -- measured on a 32x32 thumbnail, differentiable in the pixels; audio: band energies and
their dynamics; prompts: hashed bag of words. Hand-written because no library computes this small set
cheaply and differentiably. No studio imports."""
from __future__ import annotations

import hashlib
import re
from typing import Sequence

import torch
import torch.nn.functional as F

from .base import audio_mono, resize

IMAGE_FEATURES_VERSION = "img-stats-1"
AUDIO_FEATURES_VERSION = "aud-bands-1"
PROMPT_FEATURES_VERSION = "bow-hash-1"
THUMB = 32
GRID = 4
PROMPT_BUCKETS = 256
AUDIO_RATE = 16000
AUDIO_BANDS = 24
MAX_AUDIO_S = 30.0


def _saturation(x: torch.Tensor) -> torch.Tensor:
    mx, mn = x.max(1).values, x.min(1).values
    return (mx - mn) / (mx + 1e-3)


def image_features(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 72) features."""
    x = resize(x.float().clamp(0, 1), THUMB)
    b = x.shape[0]
    grid = F.adaptive_avg_pool2d(x, GRID).reshape(b, -1)  # 48: coarse layout of colour
    mean, std = x.mean((2, 3)), x.std((2, 3))  # 6
    sat = _saturation(x)  # (B, H, W)
    lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    # Background = the border's mean colour; "object" = pixels far from it (a soft mask keeps gradients).
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2).mean(2)  # (B, 3)
    dist = (x - border[:, :, None, None]).abs().mean(1)  # (B, H, W)
    mask = torch.sigmoid((dist - 0.12) * 25.0)
    area = mask.mean((1, 2))
    ys = torch.linspace(0, 1, THUMB, device=x.device)
    wsum = mask.sum((1, 2)) + 1e-3
    cx = (mask * ys[None, None, :]).sum((1, 2)) / wsum
    cy = (mask * ys[None, :, None]).sum((1, 2)) / wsum
    spread = ((mask * ((ys[None, None, :] - cx[:, None, None]) ** 2 + (ys[None, :, None] - cy[:, None, None]) ** 2))
              .sum((1, 2)) / wsum).sqrt()
    centred = ((cx - 0.5) ** 2 + (cy - 0.5) ** 2).sqrt()
    obj_rgb = (x * mask[:, None]).sum((2, 3)) / wsum[:, None]  # 3
    obj_sat = (sat * mask).sum((1, 2)) / wsum
    edges = (x[:, :, 1:] - x[:, :, :-1]).abs().mean((1, 2, 3)) + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean((1, 2, 3))
    scalars = torch.stack([sat.mean((1, 2)), sat.std((1, 2)), lum.mean((1, 2)), lum.std((1, 2)), area, cx, cy,
                           spread, centred, obj_sat, edges, area.sqrt() * obj_sat, (1 - centred) * area.sqrt(),
                           dist.mean((1, 2)), mask.std((1, 2))], dim=1)  # 15
    return torch.cat([grid, mean, std, scalars, obj_rgb], dim=1)


IMAGE_FEATURE_DIM = GRID * GRID * 3 + 6 + 15 + 3


def _resample(x: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    if rate == target:
        return x
    n = max(1, int(round(x.numel() * target / rate)))
    return F.interpolate(x[None, None], size=n, mode="linear", align_corners=False)[0, 0]


def _band_matrix(n_fft: int, rate: int) -> torch.Tensor:
    freqs = torch.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = torch.logspace(torch.log10(torch.tensor(50.0)), torch.log10(torch.tensor(rate / 2 * 0.98)), AUDIO_BANDS + 1)
    m = torch.zeros(AUDIO_BANDS, freqs.numel())
    for i in range(AUDIO_BANDS):
        sel = (freqs >= edges[i]) & (freqs < edges[i + 1])
        if not sel.any():
            sel[(freqs - (edges[i] + edges[i + 1]) / 2).abs().argmin()] = True
        m[i, sel] = 1.0 / sel.sum()
    return m


_BANDS = _band_matrix(1024, AUDIO_RATE)


def audio_features(media: Sequence) -> torch.Tensor:
    """A list of (samples, rate) -> (B, 55): log band energies (mean, std over time), loudness, spectral
    centroid and flatness, zero crossings, onset strength; the first 30 s at 16 kHz mono."""
    rows = []
    for item in media:
        x, rate = audio_mono(item)
        x = _resample(x[: int(MAX_AUDIO_S * rate)], rate, AUDIO_RATE)
        if x.numel() < 1024:
            x = F.pad(x, (0, 1024 - x.numel()))
        spec = torch.stft(x, 1024, hop_length=256, window=torch.hann_window(1024), return_complex=True).abs() ** 2
        bands = torch.log10(_BANDS @ spec + 1e-8)  # (bands, T)
        freqs = torch.linspace(0, 1, spec.shape[0])[:, None]
        total = spec.sum(0) + 1e-8
        centroid = (freqs * spec).sum(0) / total
        flatness = torch.exp(torch.log(spec + 1e-10).mean(0)) / (spec.mean(0) + 1e-10)
        rms_db = 10 * torch.log10(spec.mean(0) + 1e-10) / 10
        zcr = ((x[1:] * x[:-1]) < 0).float().mean()
        onset = (bands[:, 1:] - bands[:, :-1]).clamp(min=0).mean()
        rows.append(torch.cat([bands.mean(1), bands.std(1) if bands.shape[1] > 1 else torch.zeros(AUDIO_BANDS),
                               torch.stack([rms_db.mean(), rms_db.std() if rms_db.numel() > 1 else rms_db.new_zeros(()),
                                            centroid.mean(), centroid.std() if centroid.numel() > 1 else centroid.new_zeros(()),
                                            flatness.mean(), zcr, onset])]))
    return torch.stack(rows)


AUDIO_FEATURE_DIM = 2 * AUDIO_BANDS + 7


def prompt_features(prompts: Sequence[str]) -> torch.Tensor:
    """Signed hashed bag of words (B, 256), L2-normalised: stable across runs and machines (sha1, not hash())."""
    out = torch.zeros(len(prompts), PROMPT_BUCKETS)
    for i, prompt in enumerate(prompts):
        for word in re.findall(r"[a-z0-9]+", prompt.lower()):
            d = hashlib.sha1(word.encode()).digest()
            out[i, int.from_bytes(d[:4], "little") % PROMPT_BUCKETS] += 1.0 if d[4] & 1 else -1.0
    return out / out.norm(dim=1, keepdim=True).clamp(min=1.0)
