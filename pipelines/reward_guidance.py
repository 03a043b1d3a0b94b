"""Reward gradient guidance on the predicted clean sample (x0-hat) inside an SD-family denoising loop.

At each step in a window of the schedule: take the scheduler's x0 estimate, decode it with the VAE (with
grad), score it with a differentiable reward (a plain callable: images (B, 3, H, W) in [0, 1] -> (B,) scores;
the studio passes a `Reward`'s score, so this module never imports the studio), and move the latents along
the normalised gradient, `strength` x the latents' std per step, capped at `max_step` x that std (RMS per
image) so a high dial cannot push a sample off the model's distribution.

Hand-written: diffusers has no reward guidance for its SD pipelines; this plugs into the two hooks it does
have, `scheduler.step` (whose inputs give x0-hat) and `callback_on_step_end` (which may replace latents).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

GUIDED_FAMILIES = ("sd1", "sd2", "sdxl")  # the mini model is sd1


@dataclass
class GuidanceLog:
    """What the guidance did, per guided step: the reward before the step and the RMS change / latents std."""

    steps: list[int] = field(default_factory=list)
    scores: list[list[float]] = field(default_factory=list)
    changes: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class GuidanceSpec:
    score: Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) in [0, 1] -> (B,), differentiable
    strength: float
    start: float = 0.0  # window, fractions of the loop's steps: step i is guided if start <= i/(n-1) <= end
    end: float = 0.8
    max_step: float = 0.1  # cap: RMS change per step <= max_step x std(latents), per image
    log: GuidanceLog = field(default_factory=GuidanceLog)  # filled by the run


def guided_delta(latents: torch.Tensor, grad: torch.Tensor, strength: float, max_step: float) -> torch.Tensor:
    """The change to `latents` for an ascent direction `grad`: normalised per image (the dial then means the
    same for a reward scored in [0, 1] as for 100 x a cosine), `strength` x the latents' std, RMS capped at
    `max_step` x that std."""
    dims = tuple(range(1, latents.dim()))
    std = latents.float().std(dim=dims, keepdim=True).clamp_min(1e-6)
    rms = grad.float().pow(2).mean(dim=dims, keepdim=True).sqrt()
    unit = torch.where(rms > 0, grad.float() / rms.clamp_min(1e-20), torch.zeros_like(grad, dtype=torch.float32))
    delta = unit * std * min(float(strength), float(max_step))
    return delta.to(latents.dtype)


def _vp_x0(scheduler, model_output: torch.Tensor, timestep, sample: torch.Tensor) -> torch.Tensor:
    """x0-hat for a variance-preserving scheduler (DDIM, DPM++, UniPC, PNDM, DEIS, LCM...), from the same
    prediction the step uses. DPM++ with Karras sigmas rounds its timesteps, so alphas_cumprod[t] is within
    that rounding of the sigma the step uses: close enough for a gradient direction."""
    t = int(round(float(timestep.flatten()[0] if torch.is_tensor(timestep) else timestep)))
    acp = scheduler.alphas_cumprod.to(sample.device, torch.float32)
    a = acp[min(max(t, 0), acp.shape[0] - 1)]
    kind = scheduler.config.get("prediction_type", "epsilon")
    x, m = sample.float(), model_output.float()
    if kind == "epsilon":
        x0 = (x - (1 - a).sqrt() * m) / a.sqrt()
    elif kind == "v_prediction":
        x0 = a.sqrt() * x - (1 - a).sqrt() * m
    elif kind == "sample":
        x0 = m
    else:
        raise ValueError(f"reward guidance cannot read x0 from prediction type {kind!r}")
    return x0.to(sample.dtype)


class RewardGuide:
    """Attach to a per-call pipeline copy (`install`), then pass `callback` as its `callback_on_step_end`.

    Why x0-hat comes from a wrapped `scheduler.step` and not a second UNet call in the callback: the step is
    given the (CFG-combined) prediction the pipeline just made, so x0-hat costs a few tensor ops instead of a
    UNet forward. Schedulers whose sample is not variance-preserving (Euler, Heun, LMS, KDPM2: init_noise_sigma
    > 1) return their own `pred_original_sample`, which is used as is.

    Why the gradient is taken w.r.t. x0-hat (VAE decoder and reward only) and applied to the latents, instead
    of through the UNet to x_t: backpropagating the UNet costs ~2 UNet forwards per guided step (and its
    activations' memory); d x0-hat / d x_t is ~ I / sqrt(alpha_t) when the UNet's Jacobian is ignored (the
    usual approximation of training-free guidance), and the gradient is normalised anyway, so the scalar
    does not matter."""

    def __init__(self, spec: GuidanceSpec):
        self.spec = spec
        self.log = spec.log
        self._x0: Optional[torch.Tensor] = None

    def install(self, pipe) -> None:
        scheduler = pipe.scheduler
        original = scheduler.step
        vp = float(getattr(scheduler, "init_noise_sigma", 1.0)) == 1.0 and hasattr(scheduler, "alphas_cumprod")

        def step(model_output, timestep, sample, *args, return_dict: bool = True, **kwargs):
            out = original(model_output, timestep, sample, *args, return_dict=True, **kwargs)
            x0 = getattr(out, "pred_original_sample", None)
            if x0 is None:
                x0 = getattr(out, "denoised", None)  # LCM / TCD
            if x0 is None:
                if not vp:
                    raise ValueError(f"reward guidance needs the sampler's x0 estimate; {type(scheduler).__name__} "
                                     "gives none")
                x0 = _vp_x0(scheduler, model_output, timestep, sample)
            self._x0 = x0
            return out if return_dict else out.to_tuple()

        scheduler.step = step

    def _guided(self, i: int, n: int) -> bool:
        frac = i / max(1, n - 1)
        return self.spec.strength > 0 and self.spec.start <= frac + 1e-9 and frac <= self.spec.end + 1e-9

    def callback(self, pipe, i: int, t, cbkw: dict) -> dict:
        n = getattr(pipe, "_num_timesteps", None) or 1
        latents = cbkw.get("latents")
        if latents is None or self._x0 is None or not self._guided(i, n):
            return {}
        began = time.perf_counter()
        vae = pipe.vae
        # the pipeline runs under inference_mode/no_grad: leave both for this step's gradient only
        with torch.inference_mode(False), torch.enable_grad():
            x0 = self._x0.detach().clone().to(vae.dtype).requires_grad_(True)
            shift = getattr(vae.config, "shift_factor", None) or 0.0
            images = vae.decode(x0 / vae.config.scaling_factor + shift, return_dict=False)[0]
            images = ((images.float() + 1) / 2).clamp(0, 1)
            scores = self.spec.score(images).flatten()
            if not scores.requires_grad:
                raise ValueError("reward guidance needs a differentiable reward (its scores carry no gradient)")
            (grad,) = torch.autograd.grad(scores.sum(), x0)
            lat = latents.detach().clone()
            delta = guided_delta(lat, grad.to(lat.device), self.spec.strength, self.spec.max_step)
            dims = tuple(range(1, lat.dim()))
            std = lat.float().std(dim=dims).clamp_min(1e-6)
            change = delta.float().pow(2).mean(dim=dims).sqrt() / std
        self.log.steps.append(i)
        self.log.scores.append(scores.detach().float().tolist())
        self.log.changes.append(change.tolist())
        self.log.seconds += time.perf_counter() - began
        return {"latents": latents + delta.to(latents.device, latents.dtype)}
