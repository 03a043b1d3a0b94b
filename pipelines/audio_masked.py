"""Continuation and span inpainting for Stable Audio Open (diffusers' ``StableAudioPipeline``) by a latent frame mask.

Why hand-written: diffusers 0.42's StableAudioPipeline has no mask; its ``initial_audio_waveforms`` only adds the
encoded audio to full-strength noise. The stock pipeline runs unchanged, RePaint-style without resampling: the
known latent frames (the VAE-encoded source) are noised to the sigma the sampler has just moved to, with one fixed
noise draw, and written over the sample outside the mask after every step (after the last one: the clean latent).
The generated frames are then denoised next to known frames that are always the source at the right noise level,
and the DiT's attention carries tempo and key across the join.

This relies on two things of diffusers' loop, both checked at run time: its ``callback(step, t, latents)`` receives
the very tensor the loop continues with (so an in-place write steers the next step), and it is called after every
step (a one-model-call-per-step scheduler, as the released CosineDPMSolverMultistepScheduler is). Latents are
unscaled VAE means and the noised sample is ``x0 + sigma * noise`` (no VP scaling), so the known frames at level
sigma are ``known + sigma * noise``.

Imports diffusers / torch / numpy only (never studio or ui).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# latent frames over which the known side of each mask edge fades into the generated side. The encoder's receptive
# field crosses the edge, so the known frames there also encode what lies beyond it (for a continuation: the
# silence the source was padded with); letting the sampler partly rewrite them keeps that out of the join. The
# audio there is pasted back from the original afterwards, so nothing the caller keeps is lost.
EDGE_FRAMES = 4


def frame_mask(frames: int, hop: int, start: int, end: int, edge: int = EDGE_FRAMES) -> torch.Tensor:
    """(frames,) float weights of the generated latent: 1 on every frame that touches samples [start, end), 0 on the
    known frames, a linear ramp over ``edge`` known frames next to each edge."""
    if not 0 <= start < end:
        raise ValueError(f"the masked span must satisfy 0 <= start < end (samples); got [{start}, {end})")
    a, b = start // hop, min(frames, -(-end // hop))
    if a >= frames:
        raise ValueError(f"the masked span starts at sample {start}, past the {frames * hop}-sample latent window")
    m = torch.zeros(frames)
    m[a:b] = 1.0
    for d in range(1, edge + 1):
        w = 1.0 - d / (edge + 1)
        for k in (a - d, b - 1 + d):
            if 0 <= k < frames:
                m[k] = max(float(m[k]), w)
    return m


def encode_known(pipe, wave: np.ndarray) -> torch.Tensor:
    """(1, latent channels, window frames) VAE posterior mean of ``wave`` ((n, channels) at the VAE's rate), padded
    with silence (or cut) to the DiT's window, as the pipeline's own ``prepare_latents`` lays out init audio."""
    vae = pipe.vae
    length = int(pipe.transformer.config.sample_size) * int(vae.hop_length)
    x = torch.zeros(1, int(vae.config.audio_channels), length, dtype=vae.dtype, device=vae.device)
    w = torch.from_numpy(np.ascontiguousarray(wave.T[:, :length], dtype=np.float32))
    x[0, :, : w.shape[1]] = w.to(x.device, x.dtype)
    z = vae.encode(x).latent_dist.mean
    want = (int(pipe.transformer.config.in_channels), int(pipe.transformer.config.sample_size))
    if tuple(z.shape[1:]) != want:
        raise ValueError(f"the VAE encodes the window to {tuple(z.shape[1:])} (channels, frames) but the DiT samples "
                         f"{want}; masked extension/inpainting needs the DiT to sample the VAE's latent directly")
    return z


def masked_sample(pipe, wave: np.ndarray, start: int, end: int, *, prompt: str, negative_prompt: str | None,
                  audio_end_in_s: float, num_inference_steps: int, guidance_scale: float,
                  generator: torch.Generator, callback: Callable[[int, int, torch.Tensor], None] | None = None,
                  output_type: str = "pt", edge: int = EDGE_FRAMES) -> torch.Tensor:
    """Render the pipeline's window with samples [start, end) of ``wave`` regenerated and the rest kept (in latent
    space; the caller pastes the exact audio back). Returns the pipeline's ``audios`` ((1, channels, n) cut to
    ``audio_end_in_s``), or the final latents with ``output_type="latent"``. ``callback`` is the pipeline's."""
    sched = pipe.scheduler
    if getattr(sched, "order", 1) != 1:
        raise ValueError(f"masked audio sampling needs a one-step-per-call scheduler; {type(sched).__name__} has "
                         f"order {sched.order}")
    frames = int(pipe.transformer.config.sample_size)
    dtype = pipe.transformer.dtype
    device = pipe._execution_device
    known = encode_known(pipe, wave).to(device, dtype)
    mask = frame_mask(frames, int(pipe.vae.hop_length), start, end, edge).to(device, dtype)[None, None]
    # the pipeline's own first draw (same shape, generator and order), so an all-generate mask is its txt2audio
    noise = torch.randn((1, int(pipe.transformer.config.in_channels), frames), generator=generator,
                        device=generator.device, dtype=dtype).to(device)
    sched.set_timesteps(num_inference_steps, device=device)  # the pipeline sets the same ones again
    s0 = float(sched.sigmas[0])
    init = float(sched.init_noise_sigma)
    # prepare_latents multiplies the latents passed by init_noise_sigma
    first = mask * noise + (1 - mask) * (known + s0 * noise) / init
    calls = []

    def on_step(i, t, lat):
        if sched.step_index is None:  # pragma: no cover - diffusers sets it in its first step
            raise RuntimeError("the scheduler has no step index after a step; cannot noise the known frames")
        sigma = float(sched.sigmas[sched.step_index])  # the level the sampler has just moved to
        lat.copy_(mask * lat + (1 - mask) * (known + sigma * noise))
        calls.append(i)
        if callback is not None:
            callback(i, t, lat)

    out = pipe(prompt=prompt, negative_prompt=negative_prompt, audio_start_in_s=0.0, audio_end_in_s=audio_end_in_s,
               num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=generator,
               latents=first, callback=on_step, callback_steps=1, output_type=output_type).audios
    if len(calls) != len(sched.timesteps):
        raise RuntimeError(f"{type(pipe).__name__} called back {len(calls)} times for {len(sched.timesteps)} steps; "
                           "the known frames were not kept at every step")
    return out


__all__ = ["EDGE_FRAMES", "encode_known", "frame_mask", "masked_sample"]
