"""Memory options: CPU offload (CUDA only), VAE tiling/slicing, attention slicing."""
from __future__ import annotations

import warnings

import torch

from .loading import LoadedModel

OFFLOADS = (None, "model", "sequential")


def _vae_option(vae, what: str, on: bool) -> bool:
    """enable_/disable_ tiling or slicing; False (with a warning when asked for) where this VAE lacks it
    (SVD's temporal-decoder VAE has neither: use decode_chunk_size there)."""
    try:
        getattr(vae, f"{'enable' if on else 'disable'}_{what}")()
    except (AttributeError, NotImplementedError):
        if on:
            warnings.warn(f"{type(vae).__name__} does not support VAE {what}; ignored", RuntimeWarning, stacklevel=3)
        return False
    return bool(on)


def _attention_slicing(pipe, on: bool) -> bool:
    sliceable = any(hasattr(m, "set_attention_slice") for m in pipe.components.values())
    if on and not sliceable:
        # diffusers' enable_attention_slicing silently skips models without sliced attention (the video
        # transformers): report what happened
        warnings.warn(f"{type(pipe).__name__} does not support attention slicing; ignored", RuntimeWarning,
                      stacklevel=3)
        return False
    try:
        if on:
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()
    except (AttributeError, NotImplementedError, ValueError):
        # transformer video models (Wan, LTX, CogVideoX) use attention processors without slicing
        if on:
            warnings.warn(f"{type(pipe).__name__} does not support attention slicing; ignored", RuntimeWarning,
                          stacklevel=3)
        return False
    return bool(on)


def apply_memory_options(model: LoadedModel, *, offload: str | None = None, vae_tiling: bool = False,
                         vae_slicing: bool = False, attention_slicing: bool = False) -> dict:
    """Apply options to ``model.pipe`` (shared components: every mode's pipeline sees them).
    Returns what was actually applied. Offload without CUDA is a no-op with a warning."""
    if offload not in OFFLOADS:
        raise ValueError(f"offload must be one of {OFFLOADS}")
    pipe = model.pipe
    applied = {"offload": None, "vae_tiling": False, "vae_slicing": False, "attention_slicing": False}
    if offload:
        if not hasattr(pipe, "enable_model_cpu_offload"):
            # MusicGen (transformers) has no diffusers offload hooks
            warnings.warn(f"{type(pipe).__name__} does not support CPU offload; ignored", RuntimeWarning,
                          stacklevel=2)
        elif torch.cuda.is_available() and model.device.type == "cuda":
            if offload == "model":
                pipe.enable_model_cpu_offload()
            else:
                pipe.enable_sequential_cpu_offload()
            applied["offload"] = offload
        else:
            warnings.warn(f"offload={offload!r} needs CUDA; ignored on {model.device.type}", RuntimeWarning,
                          stacklevel=2)
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        applied["vae_tiling"] = _vae_option(vae, "tiling", vae_tiling)
        applied["vae_slicing"] = _vae_option(vae, "slicing", vae_slicing)
    if hasattr(pipe, "enable_attention_slicing"):
        applied["attention_slicing"] = _attention_slicing(pipe, attention_slicing)
    model._memory = applied
    return applied
