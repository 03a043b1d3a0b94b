"""What the rewards do per modality, one entry per modality in one table (as `studio.modalities` does for
rendering): the learned reward's name and features, whether it is differentiable, and whether a modality is
scored as frames of another (video: the image reward per frame plus the temporal term, `video.VideoReward`).
The registry, the learned reward and the CLI look entries up here instead of branching on the name; a new
modality is a new entry (a test fails for a studio modality without one). No studio imports (see `base`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .base import RewardError, image_batch
from .features import (AUDIO_FEATURE_DIM, AUDIO_FEATURES_VERSION, IMAGE_FEATURE_DIM, IMAGE_FEATURES_VERSION,
                       audio_features, image_features)


@dataclass(frozen=True)
class Features:
    version: str  # stored in the learned reward's weights; a mismatch on load asks for a retrain
    dim: int
    compute: Callable[[object], torch.Tensor]  # media (as `base` describes them) -> (B, dim)


@dataclass(frozen=True)
class RewardModality:
    name: str
    learned_name: Optional[str] = None  # the registry's name for the learned reward on this modality
    learned_summary: str = ""  # its line in `studio rewards`
    features: Optional[Features] = None  # what the learned reward computes (None: no learned reward of its own)
    differentiable: bool = False  # the learned reward keeps the graph from a media tensor to its scores
    frames_of: Optional[str] = None  # scored as frames by this modality's rewards (+ the temporal term)


def _image_features(media) -> torch.Tensor:
    return image_features(image_batch(media, size=64) if not isinstance(media, torch.Tensor) else media)


REWARD_MODALITIES: dict[str, RewardModality] = {m.name: m for m in (
    RewardModality("image", "learned", "the studio's own reward, learned from your ratings (Bradley-Terry)",
                   Features(IMAGE_FEATURES_VERSION, IMAGE_FEATURE_DIM, _image_features), differentiable=True),
    RewardModality("video", frames_of="image"),
    RewardModality("audio", "learned-audio", "the learned reward on audio features, from your ratings of clips",
                   Features(AUDIO_FEATURES_VERSION, AUDIO_FEATURE_DIM, audio_features)),
)}


def learned_modalities() -> list[str]:
    """The modalities the learned reward trains on, in table order."""
    return [n for n, m in REWARD_MODALITIES.items() if m.features is not None]


def learned_name(modality: str) -> str:
    m = REWARD_MODALITIES.get(modality)
    return m.learned_name if m is not None and m.learned_name else f"learned-{modality}"


def features(modality: str, noun: str = " features") -> Features:
    """The learned reward's features for `modality`; RewardError (one line) where it has none."""
    m = REWARD_MODALITIES.get(modality)
    if m is None or m.features is None:
        raise RewardError(f"the learned reward scores {' or '.join(learned_modalities())}{noun}, not {modality}")
    return m.features


def scored_as(modality: str) -> str:
    """The modality whose rewards score `modality` (video -> image: per frame, plus the temporal term)."""
    m = REWARD_MODALITIES.get(modality)
    return m.frames_of if m is not None and m.frames_of else modality


def framed(modalities) -> list[str]:
    """The modalities scored as frames of one of `modalities` (image -> [video])."""
    return [n for n, m in REWARD_MODALITIES.items() if m.frames_of and m.frames_of in modalities]
