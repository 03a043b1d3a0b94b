"""Image-to-video for AnimateDiff by first-frame replacement (no extra trained module).

Why hand-written: diffusers' AnimateDiff image-to-video variants (PIA, SparseCtrl) each need a network of
their own, trained for it.  A motion module can instead be steered through frame 0 alone: at every
sampling step frame 0's latent is overwritten with the given image's latent noised to the timestep the
sampler moves to next (and, after the last step, with the clean latent).  The other frames are then
denoised next to a frame 0 that is always the given image at the right noise level, and the temporal
attention carries its content through the clip.  This is the stock ``AnimateDiffPipeline`` with a
``callback_on_step_end``; nothing in diffusers is patched.

Imports diffusers / torch / PIL only (never studio or ui).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image


def encode_image(pipe, image: Image.Image, width: int, height: int, generator=None) -> torch.Tensor:
    """(1, C, h, w) scaled latent of ``image`` resized to width x height (posterior mean: no sampling noise)."""
    vae = pipe.vae
    img = image.convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    x = x.to(device=vae.device, dtype=vae.dtype)
    with torch.no_grad():
        lat = vae.encode(x).latent_dist.mean
    return lat * vae.config.scaling_factor


def animate_image(pipe, image: Image.Image, *, prompt, negative_prompt=None, num_frames: int, width: int, height: int,
                  num_inference_steps: int, guidance_scale: float, generator=None,
                  callback: Callable[[int, int, torch.Tensor], None] | None = None) -> list[Image.Image]:
    """Generate ``num_frames`` frames whose first frame is ``image``; returns the frames as PIL images.

    ``pipe`` is an ``AnimateDiffPipeline``.  ``callback(step, timestep, latents)`` (optional) is called
    after each step, after the replacement (e.g. for previews).
    """
    init = encode_image(pipe, image, width, height)
    sched = pipe.scheduler
    # one fixed noise draw for frame 0: its noised copies then lie on one path from noise to the image
    gen = generator[0] if isinstance(generator, (list, tuple)) else generator
    gdev = gen.device if gen is not None else torch.device("cpu")
    noise = torch.randn(init.shape, generator=gen, device=gdev, dtype=torch.float32).to(init.device)

    def on_step_end(p, i, t, kw):
        lat = kw["latents"]
        ts = p.scheduler.timesteps
        if i + 1 < len(ts):
            nxt = ts[i + 1].reshape(1)
            frame0 = p.scheduler.add_noise(init.float(), noise, nxt.to(init.device))
        else:
            frame0 = init
        lat = lat.clone()
        lat[:, :, 0] = frame0.to(lat.dtype)
        if callback is not None:
            callback(i, int(t), lat)
        return {"latents": lat}

    out = pipe(
        prompt=prompt, negative_prompt=negative_prompt, num_frames=num_frames, width=width, height=height,
        num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=generator,
        callback_on_step_end=on_step_end, callback_on_step_end_tensor_inputs=["latents"], output_type="pil",
    )
    return list(out.frames[0])


__all__ = ["animate_image", "encode_image"]
