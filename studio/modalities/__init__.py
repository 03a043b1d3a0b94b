"""What each medium does with a request, one module per modality, chosen from one table.

The engine, the writer, the CLI, jobs and the UI look a request's modality up in `MODALITIES` instead of
branching on it; adding a medium (music) is a new module here plus a row in the table.
"""
from __future__ import annotations

from typing import Optional

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


def _adopter(request, made: str, family: Optional[str] = None) -> Optional[MediaModality]:
    """The capability of `request`'s modality that a model making `made`, of `family` (None: not known yet),
    runs it as although it asks another mode (`MediaModality.adopts`), or None."""
    return next((cap for (name, _), cap in CAPABILITIES.items()
                 if name == request.modality and made in cap.runs_on and cap.adopts(request, family)), None)


def runs_as(request, made: str, family: Optional[str] = None) -> str:
    """The modality `request` runs as on a model that makes `made`: the model's, unless the module that runs the
    request runs on such models too (`MediaModality.runs_on`: an image instruction editor edits a clip), or a
    capability of the request's modality adopts it there (a clip given to an image model without `instruct`).
    Without `family` that is whether some model of `made` could: `adopt` decides, and refuses, with the family."""
    if request.modality and (made in modality(request.modality, request.mode).runs_on
                             or _adopter(request, made, family) is not None):
        return request.modality
    return made


def adopt(request, family: Optional[str], base_source: Optional[str] = None):
    """`request` as the model of `family` runs it: as it is when the model makes its medium (or runs its mode);
    else in the mode of the capability that adopts it (its own `decide` applied: an instruct clip edit's image
    guidance), or refused in one line, the refusal `runs_as` defers until the family is known."""
    from ..registry import family_modality

    made = family_modality(family)
    if made is None or made == request.modality or made in modality(request.modality, request.mode).runs_on:
        return request
    cap = _adopter(request, made, family)
    if cap is None:
        return request.with_modality(made)  # the modalities differ: RequestError naming both
    return cap.decide(cap.adopt(request), family, base_source)


def sampler_family(family: str | None) -> str | None:
    """The `schedulers` family whose samplers drive a model of `family` (None: it runs only its own)."""
    from ..registry import family_modality

    return MODALITIES[family_modality(family) or "image"].sampler_family(family)


def for_format(fmt: str) -> MediaModality:
    return next(m for m in MODALITIES.values() if fmt in m.extensions)


__all__ = ["CAPABILITIES", "adopt", "EXTENSIONS", "MODALITIES", "MediaModality", "WRITABLE_SUFFIXES", "for_format",
           "modality", "runs_as", "sampler_family"]
