"""LoRA: load several at once with weights (peft backend); unloaded between requests so nothing leaks."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Sequence

from .loading import PICKLE_SUFFIXES, SAFE_SUFFIXES, LoadedModel, ModelNotAvailable, _refuse_pickle, file_sha256


def clear_loras(model: LoadedModel) -> None:
    """Remove every LoRA adapter this module loaded into ``model`` (no-op when none)."""
    if not model._lora_names:
        return
    pipe = model.pipe
    try:
        pipe.delete_adapters(list(model._lora_names))
    finally:
        model._lora_names = []
        model._lora_weights = []
        try:
            pipe.unload_lora_weights()
        except Exception:  # noqa: BLE001 - nothing left to unload
            pass


def check_lora_file(path: str | os.PathLike, *, allow_pickle: bool = False) -> None:
    """Everything about a LoRA file that can be checked without a model: it exists, has a weights suffix, is
    not a refused pickle, and a .safetensors file has a readable header (corrupt files otherwise fail deep
    inside diffusers with "Unable to load weights from checkpoint file")."""
    p = Path(path)
    if not p.is_file():
        raise ModelNotAvailable(f"LoRA file not found: {p}")
    if p.suffix in PICKLE_SUFFIXES and not allow_pickle:
        _refuse_pickle(p, "LoRA")
    if p.suffix not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
        raise ValueError(f"{p}: not a LoRA weights file (expected {', '.join(SAFE_SUFFIXES)})")
    if p.suffix in SAFE_SUFFIXES:
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                f.keys()
        except Exception:  # noqa: BLE001 - SafetensorError (header too large, invalid JSON, ...)
            raise ValueError(f"LoRA {p} is not a valid .safetensors file (corrupt, truncated or another "
                             "format)") from None


def apply_loras(model: LoadedModel, loras: Iterable[tuple[str | os.PathLike, float]], *,
                allow_pickle: bool = False) -> list[str]:
    """Replace the active LoRAs with ``loras`` [(path, weight), ...]; ``[]`` clears them.
    Returns the sha256 of each LoRA file, in order."""
    loras = [(Path(p), float(w)) for p, w in loras]
    for p, _ in loras:
        check_lora_file(p, allow_pickle=allow_pickle)
    clear_loras(model)
    if not loras:
        return []
    hashes, names, weights = [], [], []
    try:
        for i, (p, w) in enumerate(loras):
            h = file_sha256(p)
            name = f"lora{i}_{h[:12]}"
            model.pipe.load_lora_weights(str(p), adapter_name=name)
            names.append(name)
            model._lora_names.append(name)
            model._lora_weights.append(w)
            weights.append(w)
            hashes.append(h)
        model.pipe.set_adapters(names, adapter_weights=weights)
    except Exception:
        clear_loras(model)
        raise
    return hashes


@contextlib.contextmanager
def loras_applied(model: LoadedModel, loras: Sequence[tuple[str | os.PathLike, float]], **kw):
    """``with loras_applied(model, [...]) as hashes:`` -- LoRAs active inside, always removed after."""
    try:
        yield apply_loras(model, loras, **kw)
    finally:
        clear_loras(model)
