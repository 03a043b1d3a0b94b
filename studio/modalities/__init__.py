"""What each medium does with a request, one module per modality, chosen from one table.

The engine, the writer, the CLI, jobs and the UI look a request's modality up in `MODALITIES` instead of
branching on it; adding a medium (music) is a new module here plus a row in the table.
"""
from __future__ import annotations

from .audio import AUDIO
from .base import MediaModality
from .image import IMAGE
from .instruct_video import INSTRUCT_VIDEO
from .video import VIDEO

MODALITIES: dict[str, MediaModality] = {m.name: m for m in (IMAGE, VIDEO, AUDIO)}
# (modality, mode) -> the module that runs such requests instead of the modality's own: a capability that is its
# own module, found here rather than by branches in the engine and front doors
CAPABILITIES: dict[tuple[str, str], MediaModality] = {("video", "instruct"): INSTRUCT_VIDEO}

# format -> file extension, and the suffixes a user may write (-> format), across every modality
EXTENSIONS: dict[str, str] = {fmt: ext for m in MODALITIES.values() for fmt, ext in m.extensions.items()}
WRITABLE_SUFFIXES: dict[str, str] = {sfx: fmt for m in MODALITIES.values() for sfx, fmt in m.suffixes.items()}


def modality(name: str | None, mode: str | None = None) -> MediaModality:
    """The modality called `name` (None: image, what an undecided request is until a model decides); given the
    request's `mode`, the capability module that runs that mode when there is one."""
    return CAPABILITIES.get((name or "image", mode)) or MODALITIES[name or "image"]


def runs_as(request, made: str) -> str:
    """The modality `request` runs as on a model that makes `made`: the model's, unless the module that runs the
    request runs on such models too (`MediaModality.runs_on`: an image instruction editor edits a clip)."""
    if request.modality and made in modality(request.modality, request.mode).runs_on:
        return request.modality
    return made


def sampler_family(family: str | None) -> str | None:
    """The `schedulers` family whose samplers drive a model of `family` (None: it runs only its own)."""
    from ..registry import family_modality

    return MODALITIES[family_modality(family) or "image"].sampler_family(family)


def for_format(fmt: str) -> MediaModality:
    return next(m for m in MODALITIES.values() if fmt in m.extensions)


__all__ = ["CAPABILITIES", "EXTENSIONS", "MODALITIES", "MediaModality", "WRITABLE_SUFFIXES", "for_format",
           "modality", "runs_as", "sampler_family"]
