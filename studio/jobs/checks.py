"""Checks that let a job's up-front validation refuse what the render would refuse, without loading a model:
samplers a model cannot use and init images / masks that cannot be read.

A model's scheduler config is read from disk (a diffusers folder's `scheduler/scheduler_config.json`, the
local hub cache, or the component configs the studio ships for single-file checkpoints): that config, not
the family, decides for instance that a zero-terminal-SNR model such as `mini` refuses Karras spacing.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional


@lru_cache(maxsize=64)
def _scheduler_context(source: str, family: Optional[str]) -> tuple[Optional[str], Optional[dict]]:
    import pipelines

    # The engine's preflight reads the same files the same way: one reader, so a job is judged as it renders.
    try:
        info = pipelines.inspect_source(source, family=family)
    except Exception:  # noqa: BLE001 - a broken source is the engine's to report, with its own message
        return family, None
    return info.family, info.scheduler_config


def scheduler_context(entry: Any) -> tuple[Optional[str], Optional[dict]]:
    """(family, scheduler config) of a registry entry as far as the disk tells without loading weights;
    either may be None (a hub model not in the cache is known by its family only)."""
    return _scheduler_context(str(entry.source), getattr(entry, "family", None))


def default_sampler_for(entry: Any) -> Optional[str]:
    """The sampler the engine uses when a request names none (the entry's, else the family's for its config)."""
    import schedulers

    if getattr(entry, "sampler", None):
        return schedulers.resolve_sampler(entry.sampler)
    from ..modalities import sampler_family

    family, config = scheduler_context(entry)
    family = sampler_family(family)
    return schedulers.default_sampler(family, config) if family else None


@lru_cache(maxsize=256)
def _sampler_problem(source: str, family: Optional[str], name: str, sampler: str) -> Optional[str]:
    from ..engine import check_sampler
    from ..errors import RequestError

    from ..modalities import sampler_family

    found, config = _scheduler_context(source, family)
    if found is not None and sampler_family(found) is None:
        return None  # a video model that runs only its own scheduler: the pipeline judges the name at render
    try:
        check_sampler(sampler, sampler_family(found), config)
    except RequestError as exc:
        return f"model {name} refuses sampler {sampler!r}: {exc}"
    return None


def sampler_problem(entry: Any, sampler: Optional[str]) -> Optional[str]:
    """Why the engine would refuse `sampler` for this entry's model, or None."""
    if not sampler or not hasattr(entry, "source"):
        return None
    return _sampler_problem(str(entry.source), getattr(entry, "family", None), str(getattr(entry, "name", "")),
                            sampler)


def image_problem(path: str, what: str, shown: str) -> tuple[int, int] | str:
    """The image's size, or (a str) why the engine would refuse it: the engine's own bounded reader (byte
    and pixel limits before decoding, then a full decode), so a job cannot pass what the render refuses."""
    from ..inputs import read_image
    from ..errors import RequestError

    try:
        return read_image(path, what, "RGB", shown=shown).image.size
    except RequestError as exc:
        return str(exc)
