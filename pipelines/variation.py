"""Variation seeds (A1111's "variation seed" / subseed): the initial noise of image i is
slerp(noise(seed_i), noise(variation_seed), strength), so a strength walks from one image towards another.

Hand-written because neither diffusers nor torch offers it: diffusers pipelines take ready-made `latents`, and the
spherical interpolation is a few lines (A1111's `slerp`, done over the whole latent rather than per pixel row)."""
from __future__ import annotations

import inspect
from typing import Sequence

import torch

# Below this angle between the two noises slerp divides by ~0: they are (nearly) parallel, so a straight line is exact.
_PARALLEL_DOT = 0.9995


def slerp(t: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation per batch item (dim 0) from `low` (t=0, returned exactly) to `high` (t=1, exactly).

    Gaussian noise lives near a sphere: a straight line between two noises passes through lower-norm points
    (under-noised latents look washed out), the arc keeps the norm."""
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"variation strength must be in [0, 1] (got {t:g})")
    if low.shape != high.shape:
        raise ValueError(f"slerp needs two tensors of one shape (got {tuple(low.shape)} and {tuple(high.shape)})")
    if t == 0.0:
        return low.clone()
    if t == 1.0:
        return high.clone()
    lo, hi = low.flatten(1).double(), high.flatten(1).double()
    dot = (lo / lo.norm(dim=1, keepdim=True) * hi / hi.norm(dim=1, keepdim=True)).sum(1).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    arc = (torch.sin((1.0 - t) * omega) / so).unsqueeze(1) * lo + (torch.sin(t * omega) / so).unsqueeze(1) * hi
    line = (1.0 - t) * lo + t * hi
    out = torch.where((dot > _PARALLEL_DOT).unsqueeze(1), line, arc)
    return out.reshape(low.shape).to(low.dtype)


def latent_shape(pipe, width: int, height: int) -> tuple[int, int, int]:
    """(channels, h, w) of one item's initial latents, as the pipeline's own `prepare_latents` makes them."""
    scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    if type(pipe).__name__.startswith("Flux"):
        # Flux packs 2x2 latent patches into tokens; its own noise layout is not a (C, H, W) grid to interpolate.
        raise ValueError("variation seeds are not supported for Flux models yet")
    unet = getattr(pipe, "unet", None)
    if unet is not None:
        # the inpaint pipelines (9-channel UNets) draw noise with the VAE's latent channels, not the UNet's input
        inpaint = "mask_image" in inspect.signature(type(pipe).__call__).parameters
        channels = pipe.vae.config.latent_channels if inpaint else unet.config.in_channels
    elif getattr(pipe, "transformer", None) is not None:
        channels = pipe.transformer.config.in_channels
    else:
        raise ValueError(f"variation seeds are not supported for {type(pipe).__name__}")
    return int(channels), int(height) // scale, int(width) // scale


def _dtype(pipe) -> torch.dtype:
    te = getattr(pipe, "text_encoder", None)  # the pipelines draw noise in the prompt embeddings' dtype
    module = te if te is not None else (getattr(pipe, "unet", None) or getattr(pipe, "transformer", None))
    return getattr(module, "dtype", torch.float32)


def variation_latents(pipe, generators: Sequence[torch.Generator], *, width: int, height: int,
                      variation_seed: int, strength: float) -> torch.Tensor:
    """The batch's initial noise: item i is slerp(noise from `generators[i]`, noise(variation_seed), strength).

    Each item's own noise is drawn from the very generator the pipeline gets, exactly as diffusers'
    `randn_tensor` draws it (CPU, shape (1, C, h, w), the pipeline's dtype), so the generator is left where the
    pipeline would have left it (ancestral samplers draw their step noise from it next). Every item shares the
    one variation seed: a batch explores around one target, and item i equals a single render of seed+i."""
    c, h, w = latent_shape(pipe, width, height)
    dtype = _dtype(pipe)
    own = torch.cat([torch.randn((1, c, h, w), generator=g, device="cpu", dtype=dtype) for g in generators])
    target_gen = torch.Generator("cpu").manual_seed(int(variation_seed) % (2**64))
    target = torch.randn((1, c, h, w), generator=target_gen, device="cpu", dtype=dtype).expand_as(own)
    return slerp(strength, own, target.contiguous())
