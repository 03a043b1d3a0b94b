"""What each medium does with a request, one module per modality, chosen from one table.

The engine, the writer, the CLI, jobs and the UI look a request's modality up in `MODALITIES` instead of
branching on it; adding a medium (music) is a new module here plus a row in the table.
"""
from __future__ import annotations

from .audio import AUDIO
from .base import MediaModality
from .image import IMAGE
from .video import VIDEO

MODALITIES: dict[str, MediaModality] = {m.name: m for m in (IMAGE, VIDEO, AUDIO)}

# format -> file extension, and the suffixes a user may write (-> format), across every modality
EXTENSIONS: dict[str, str] = {fmt: ext for m in MODALITIES.values() for fmt, ext in m.extensions.items()}
WRITABLE_SUFFIXES: dict[str, str] = {sfx: fmt for m in MODALITIES.values() for sfx, fmt in m.suffixes.items()}


def modality(name: str | None) -> MediaModality:
    """The modality called `name` (None: image, what an undecided request is until a model decides)."""
    return MODALITIES[name or "image"]


def sampler_family(family: str | None) -> str | None:
    """The `schedulers` family whose samplers drive a model of `family` (None: it runs only its own)."""
    from ..registry import family_modality

    return MODALITIES[family_modality(family) or "image"].sampler_family(family)


def for_format(fmt: str) -> MediaModality:
    return next(m for m in MODALITIES.values() if fmt in m.extensions)


__all__ = ["EXTENSIONS", "MODALITIES", "MediaModality", "WRITABLE_SUFFIXES", "for_format", "modality",
           "sampler_family"]
