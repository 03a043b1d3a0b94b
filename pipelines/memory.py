"""Memory options: CPU offload (CUDA only), VAE tiling/slicing, attention slicing."""
from __future__ import annotations

import warnings

import torch

from .loading import LoadedModel

OFFLOADS = (None, "model", "sequential")


def apply_memory_options(model: LoadedModel, *, offload: str | None = None, vae_tiling: bool = False,
                         vae_slicing: bool = False, attention_slicing: bool = False) -> dict:
    """Apply options to ``model.pipe`` (shared components: every mode's pipeline sees them).
    Returns what was actually applied. Offload without CUDA is a no-op with a warning."""
    if offload not in OFFLOADS:
        raise ValueError(f"offload must be one of {OFFLOADS}")
    pipe = model.pipe
    applied = {"offload": None, "vae_tiling": False, "vae_slicing": False, "attention_slicing": False}
    if offload:
        if torch.cuda.is_available() and model.device.type == "cuda":
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
        if vae_tiling:
            vae.enable_tiling()
        elif hasattr(vae, "disable_tiling"):
            vae.disable_tiling()
        if vae_slicing:
            vae.enable_slicing()
        elif hasattr(vae, "disable_slicing"):
            vae.disable_slicing()
        applied["vae_tiling"], applied["vae_slicing"] = bool(vae_tiling), bool(vae_slicing)
    if hasattr(pipe, "enable_attention_slicing"):
        if attention_slicing:
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()
        applied["attention_slicing"] = bool(attention_slicing)
    model._memory = applied
    return applied
