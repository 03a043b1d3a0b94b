"""Rewards computed from the pixels or samples alone: no weights, differentiable. Brightness is the
deliberately bad reward of issue 18 (an eval gate must reject a LoRA tuned on it); saturation is the
simple "taste" the offline measurement simulates. No studio imports."""
from __future__ import annotations

import torch

from .base import Prompts, Reward, audio_mono, image_batch, prompt_list


class Brightness(Reward):
    name = "brightness"
    differentiable = True

    def score(self, media, prompts: Prompts) -> torch.Tensor:
        x = image_batch(media)
        prompt_list(prompts, x.shape[0])  # ignored, but a wrong count is still the caller's error
        return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean((1, 2))


class Saturation(Reward):
    name = "saturation"
    differentiable = True

    def score(self, media, prompts: Prompts) -> torch.Tensor:
        x = image_batch(media)
        prompt_list(prompts, x.shape[0])
        mx, mn = x.max(1).values, x.min(1).values
        return ((mx - mn) / (mx + 1e-3)).mean((1, 2))


class Loudness(Reward):
    """RMS level in dB full scale (a clip that is silent scores -100)."""

    name = "loudness"
    modality = "audio"

    def score(self, media, prompts: Prompts) -> torch.Tensor:
        prompt_list(prompts, len(media))
        return torch.stack([10 * torch.log10(audio_mono(m)[0].pow(2).mean() + 1e-10) for m in media])
