"""Checks that let a job's up-front validation refuse what the render would refuse, without loading a model:
samplers a model cannot use and init images / masks that cannot be read.

A model's scheduler config is read from disk (a diffusers folder's `scheduler/scheduler_config.json`, the
local hub cache, or the component configs the studio ships for single-file checkpoints): that config, not
the family, decides for instance that a zero-terminal-SNR model such as `mini` refuses Karras spacing.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

SCHEDULER_CONFIG = "scheduler/scheduler_config.json"


def _read_json(path) -> Optional[dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _hub_file(repo: str, name: str) -> Optional[str]:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo, name)
    except Exception:  # an id the hub client cannot parse: the engine reports it
        return None
    return hit if isinstance(hit, str) else None


def _family_of_index(index: Optional[dict], unet_config: Optional[dict]) -> Optional[str]:
    if not index:
        return None
    from pipelines.loading import family_from_pipeline

    xdim = (unet_config or {}).get("cross_attention_dim")
    return family_from_pipeline(str(index.get("_class_name", "")), {"cross_attention_dim": xdim})


@lru_cache(maxsize=64)
def _scheduler_context(source: str, family: Optional[str]) -> tuple[Optional[str], Optional[dict]]:
    src = Path(source).expanduser()
    if src.is_dir():
        config = _read_json(src / SCHEDULER_CONFIG)
        family = family or _family_of_index(_read_json(src / "model_index.json"),
                                            _read_json(src / "unet" / "config.json"))
        return family, config
    if src.is_file() or src.suffix in (".safetensors", ".ckpt", ".bin", ".pt", ".pth"):
        if family is None:
            return None, None  # detected from the weights at load time
        from pipelines.loading import CONFIG_DIR

        return family, _read_json(CONFIG_DIR / family / SCHEDULER_CONFIG)
    config_file = _hub_file(source, SCHEDULER_CONFIG)
    config = _read_json(config_file) if config_file else None
    if family is None:
        index, unet = _hub_file(source, "model_index.json"), _hub_file(source, "unet/config.json")
        family = _family_of_index(_read_json(index) if index else None, _read_json(unet) if unet else None)
    return family, config


def scheduler_context(entry: Any) -> tuple[Optional[str], Optional[dict]]:
    """(family, scheduler config) of a registry entry as far as the disk tells without loading weights;
    either may be None (a hub model not in the cache is known by its family only)."""
    return _scheduler_context(str(entry.source), getattr(entry, "family", None))


def default_sampler_for(entry: Any) -> Optional[str]:
    """The sampler the engine uses when a request names none (the entry's, else the family's for its config)."""
    import schedulers

    if getattr(entry, "sampler", None):
        return schedulers.resolve_sampler(entry.sampler)
    family, config = scheduler_context(entry)
    return schedulers.default_sampler(family, config) if family else None


@lru_cache(maxsize=256)
def _sampler_problem(source: str, family: Optional[str], name: str, sampler: str) -> Optional[str]:
    import schedulers

    family, config = _scheduler_context(source, family)
    if family is None and config is None:
        return None  # nothing to judge by before loading: the engine decides
    try:
        schedulers.make_scheduler(sampler, config, family or "other")
    except ValueError as exc:  # IncompatibleSampler, UnknownSampler
        return f"model {name} refuses sampler {sampler!r}: {exc}"
    return None


def sampler_problem(entry: Any, sampler: Optional[str]) -> Optional[str]:
    """Why the engine would refuse `sampler` for this entry's model, or None."""
    if not sampler or not hasattr(entry, "source"):
        return None
    return _sampler_problem(str(entry.source), getattr(entry, "family", None), str(getattr(entry, "name", "")),
                            sampler)


def image_problem(path: str) -> Optional[tuple[int, int] | str]:
    """The image's size, or (a str) why it cannot be read as the engine reads it (full decode)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except Exception as exc:  # not an image, truncated, a decompression bomb...
        return " ".join(str(exc).split()) or type(exc).__name__
