"""The reward interface. Nothing here imports the studio: a pipeline that steers sampling with a reward
(gradient guidance, later) receives one of these as a plain callable, and the layering rule holds.

Media conventions (`score(media, prompts)`):
* image: a list of PIL images / HxWx3 uint8 arrays, or a float tensor (B, 3, H, W) in [0, 1] (the
  differentiable path: gradients flow from the score back to those pixels);
* video: a list of clips, each a list of frames (as above) or a (T, 3, H, W) tensor in [0, 1];
* audio: a list of (samples, sample_rate), samples float in [-1, 1] shaped (n,) or (n, channels).
`prompts` is one string (shared) or one per item. The result is a float tensor of shape (B,).
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any, Sequence, Union

import numpy as np
import torch

Prompts = Union[str, Sequence[str]]


class RewardError(ValueError):
    """A reward cannot be built or cannot score this input; the message is one line naming the problem."""


class Reward(ABC):
    name: str = "reward"
    modality: str = "image"  # what it scores: "image", "video" or "audio"
    differentiable: bool = False  # score() keeps the autograd graph from the media tensor to the scores

    @property
    def hash(self) -> str:
        """sha256 of what determines the scores (the weights; for analytic rewards their definition)."""
        return hashlib.sha256(f"{type(self).__module__}.{type(self).__qualname__}:{self.name}".encode()).hexdigest()

    @property
    def source(self) -> str:
        """Where the weights come from, for `studio rewards` and records."""
        return "built in (no weights)"

    @abstractmethod
    def score(self, media: Any, prompts: Prompts) -> torch.Tensor:
        """One float per item, higher is better."""

    def __call__(self, media: Any, prompts: Prompts) -> torch.Tensor:
        return self.score(media, prompts)

    def describe(self) -> dict:
        return {"name": self.name, "hash": self.hash, "modality": self.modality,
                "differentiable": self.differentiable, "source": self.source}


def prompt_list(prompts: Prompts, n: int) -> list[str]:
    if isinstance(prompts, str):
        return [prompts] * n
    prompts = list(prompts)
    if len(prompts) == 1:
        return prompts * n
    if len(prompts) != n:
        raise RewardError(f"got {len(prompts)} prompts for {n} items: give one prompt or one per item")
    return prompts


def image_tensor(item: Any) -> torch.Tensor:
    """One image as a float (3, H, W) tensor in [0, 1]; a tensor is passed through (its graph kept)."""
    if isinstance(item, torch.Tensor):
        x = item
        if x.dim() == 3 and x.shape[0] not in (1, 3) and x.shape[-1] in (1, 3):
            x = x.permute(2, 0, 1)
        if x.dim() != 3:
            raise RewardError(f"an image tensor must be (3, H, W); got shape {tuple(item.shape)}")
        return x.float().expand(3, -1, -1) if x.shape[0] == 1 else x.float()
    if hasattr(item, "convert"):  # PIL
        item = np.asarray(item.convert("RGB"))
    arr = np.asarray(item)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise RewardError(f"an image must be HxWx3; got shape {arr.shape}")
    arr = arr[..., :3]
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32) / scale).permute(2, 0, 1)


def image_batch(media: Any, size: int | None = None) -> torch.Tensor:
    """Images as one (B, 3, S, S) tensor in [0, 1]: a tensor batch as is, a list resized to `size` (or to the
    first image's size) so images of different sizes can be scored together."""
    if isinstance(media, torch.Tensor):
        if media.dim() == 3:
            media = media.unsqueeze(0)
        if media.dim() != 4:
            raise RewardError(f"an image batch must be (B, 3, H, W); got shape {tuple(media.shape)}")
        return resize(media.float(), size) if size else media.float()
    items = [image_tensor(m) for m in media]
    if not items:
        raise RewardError("no images to score")
    target = size or items[0].shape[-1]
    return torch.stack([resize(x.unsqueeze(0), target)[0] for x in items])


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """(B, C, H, W) to (B, C, size, size), antialiased (differentiable)."""
    if size is None or (x.shape[-2] == size and x.shape[-1] == size):
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True)


def audio_mono(item: Any) -> tuple[torch.Tensor, int]:
    """(samples, rate) as a mono float tensor and its rate."""
    try:
        samples, rate = item
    except (TypeError, ValueError):
        raise RewardError("an audio item must be (samples, sample_rate)") from None
    x = samples if isinstance(samples, torch.Tensor) else torch.from_numpy(np.asarray(samples, dtype=np.float32))
    x = x.float()
    if x.dim() == 2:
        x = x.mean(1) if x.shape[1] <= 8 else x.mean(0)  # (n, ch) as the studio delivers; (ch, n) tolerated
    if x.dim() != 1 or x.numel() == 0:
        raise RewardError(f"audio samples must be (n,) or (n, channels); got shape {tuple(x.shape)}")
    return x, int(rate)
