"""A video reward from an image reward: the mean of the per-frame scores minus a temporal-consistency
penalty (the mean absolute frame-to-frame change, pixels in [0, 1], on 64 px thumbnails), so a clip that
flickers to please the frame reward does not win. No studio imports."""
from __future__ import annotations

import hashlib

import torch

from .base import Prompts, Reward, RewardError, image_batch, prompt_list
from .modalities import REWARD_MODALITIES

MAX_FRAMES = 16  # frames scored per clip (evenly spaced): scoring costs like N images, not N x frames


class VideoReward(Reward):
    modality = "video"

    def __init__(self, frame_reward: Reward, temporal_weight: float = 1.0):
        frames = REWARD_MODALITIES[self.modality].frames_of
        if frame_reward.modality != frames:
            raise RewardError(f"a video reward is built from an {frames} reward; {frame_reward.name} scores "
                              f"{frame_reward.modality}")
        self.frame_reward, self.temporal_weight = frame_reward, float(temporal_weight)
        self.name = frame_reward.name
        self.differentiable = frame_reward.differentiable

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"video:{self.frame_reward.hash}:{self.temporal_weight:g}".encode()).hexdigest()

    @property
    def source(self) -> str:
        return self.frame_reward.source

    def _frames(self, clip) -> torch.Tensor:
        x = image_batch(clip, size=None if isinstance(clip, torch.Tensor) else 256)
        if x.shape[0] > MAX_FRAMES:
            x = x[torch.linspace(0, x.shape[0] - 1, MAX_FRAMES).round().long()]
        return x

    def parts(self, media, prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean frame score, temporal penalty) per clip."""
        prompts = prompt_list(prompts, len(media))
        frame, flicker = [], []
        for clip, prompt in zip(media, prompts):
            x = self._frames(clip)
            frame.append(self.frame_reward.score(x, [prompt] * x.shape[0]).mean())
            small = image_batch(x, size=64)
            flicker.append((small[1:] - small[:-1]).abs().mean() if small.shape[0] > 1 else small.new_zeros(()))
        return torch.stack(frame), torch.stack(flicker)

    def score(self, media, prompts: Prompts) -> torch.Tensor:
        frame, flicker = self.parts(media, prompts)
        return frame - self.temporal_weight * flicker
