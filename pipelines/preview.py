"""Cheap previews of in-flight latents, for progress displays.

Small VAEs (the bundled mini model, tiny test models) are decoded for real: it costs milliseconds. Large
ones use the linear latent-to-RGB approximation A1111 and ComfyUI use for SD-family 4-channel latents,
which costs nothing; latent layouts without a known approximation (SD3's 16 channels, Flux's packed
tokens) get no preview rather than a misleading one.
"""
from __future__ import annotations

from typing import Optional

import torch

# Rows: latent channels; columns: RGB contribution (SD 1.x/2.x/XL VAE latent space).
_SD_LATENT_RGB = torch.tensor([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173],
                               [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]])
SMALL_VAE_PARAMS = 5_000_000


def _to_pil(rgb: torch.Tensor):
    """(3, H, W) in [-1, 1] -> PIL."""
    from PIL import Image

    arr = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


@torch.no_grad()
def latent_preview(pipe, latents: Optional[torch.Tensor]):
    """A PIL preview of the first latent of a batch, or None when there is no cheap faithful one.
    AnimateDiff's video latents (B, C, F, H, W) are SD latents per frame: the middle frame is previewed;
    other video layouts (SVD's (B, F, C, H, W), the 3-D VAEs' temporally compressed latents) get None."""
    if latents is not None and latents.ndim == 5:
        if not type(pipe).__name__.startswith("AnimateDiff"):
            return None
        latents = latents[:, :, latents.shape[2] // 2]
    if latents is None or latents.ndim != 4 or latents.shape[1] != 4:
        return None
    first = latents[:1].float()
    vae = getattr(pipe, "vae", None)
    if vae is not None and sum(p.numel() for p in vae.decoder.parameters()) <= SMALL_VAE_PARAMS:
        scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        decoded = vae.decode(first.to(vae.device, vae.dtype) / scale).sample[0].float()
        return _to_pil(decoded)
    rgb = torch.einsum("chw,cr->rhw", first[0].cpu(), _SD_LATENT_RGB)
    image = _to_pil(rgb)
    return image.resize((image.width * 8, image.height * 8))
