"""Run one image request (txt2img / img2img / inpaint / outpaint) on a LoadedModel."""
from __future__ import annotations

import copy
import inspect
import math
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter

from schedulers import default_sampler, make_scheduler, resolve_sampler

from .loading import MODES, LoadedModel, apply_clip_skip_shim, clip_skip_supported
from .prompting import weighted_embeds
from .variation import variation_latents
from .upscale import LATENT_FAMILIES, upscaled_latents

OUTPAINT_OVERLAP = 8  # px of the original the generation mask reaches into (feathered)


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    if not seeds:
        raise ValueError("seeds must be a non-empty list of ints (one image per seed)")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise ValueError(f"seed {s!r} is not an int")
        out.append(torch.Generator("cpu").manual_seed(int(s) % (2**64)))
    return out


def _rgb(img, size=None) -> Image.Image:
    if not isinstance(img, Image.Image):
        raise ValueError("init_image must be a PIL.Image")
    img = img.convert("RGB")
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.LANCZOS)
    return img


def _mask(mask, size) -> Image.Image:
    if not isinstance(mask, Image.Image):
        raise ValueError("mask must be a PIL.Image (white = repaint, black = keep)")
    m = mask.convert("L")
    if m.size != tuple(size):
        m = m.resize(tuple(size), Image.NEAREST)
    return m


def outpaint_canvas(image: Image.Image, margins: Sequence[int], *, overlap: int = OUTPAINT_OVERLAP):
    """(canvas, generation mask, keep mask) for outpainting ``image`` by (left, top, right, bottom) px.

    The canvas extends the edge pixels into the margins and blurs them (a neutral start for inpainting);
    the generation mask is white over the margins and ``overlap`` px into the original, feathered;
    the keep mask is black exactly over the original, used to paste it back unchanged.
    """
    if len(margins) != 4 or any((not isinstance(m, (int, np.integer))) or m < 0 for m in margins):
        raise ValueError("outpaint must be (left, top, right, bottom) non-negative ints")
    l, t, r, b = (int(m) for m in margins)
    if l + t + r + b == 0:
        raise ValueError("outpaint margins are all 0: nothing to extend")
    w, h = image.size
    W, H = w + l + r, h + t + b
    if W % 8 or H % 8:
        raise ValueError(f"outpaint result {W}x{H} (= {w}x{h} + margins {l},{t},{r},{b}) must be a multiple of 8 "
                         f"in both dimensions; adjust the margins")
    arr = np.asarray(image.convert("RGB"))
    padded = np.pad(arr, ((t, b), (l, r), (0, 0)), mode="edge")
    canvas = Image.fromarray(padded)
    radius = max(2, max(l, t, r, b) // 4)
    blurred = canvas.filter(ImageFilter.GaussianBlur(radius))
    canvas = blurred.copy()
    canvas.paste(image.convert("RGB"), (l, t))
    keep = Image.new("L", (W, H), 255)
    keep.paste(0, (l, t, l + w, t + h))
    gen = Image.new("L", (W, H), 255)
    ov = [overlap if m > 0 else 0 for m in (l, t, r, b)]
    inner = (l + ov[0], t + ov[1], l + w - ov[2], t + h - ov[3])
    if inner[2] > inner[0] and inner[3] > inner[1]:
        gen.paste(0, inner)
    if overlap > 0:
        gen = gen.filter(ImageFilter.GaussianBlur(overlap / 2))
        g = np.asarray(gen).copy()
        g[np.asarray(keep) == 255] = 255  # margins stay fully generated
        gen = Image.fromarray(g)
    return canvas, gen, keep


def _accepts(pipe, name: str) -> bool:
    return name in inspect.signature(type(pipe).__call__).parameters


def _flux_like(model: LoadedModel) -> bool:
    return model.family == "flux" or type(model.pipe).__name__.startswith("Flux")


def run_image(model: LoadedModel, *, mode: str, prompt: str | Sequence[str],
              negative_prompt: str | Sequence[str] | None = None, width: int = 512,
              height: int = 512, steps: int = 30, guidance: float = 7.0, sampler: str | None = None,
              seeds: Sequence[int] = (0,), init_image: Image.Image | None = None, strength: float | None = None,
              mask: Image.Image | None = None, outpaint: Sequence[int] | None = None,
              callback: Callable[[int, int, torch.Tensor], None] | None = None,
              clip_skip: int | None = None, latent_upscale: bool = False,
              variation_seed: int | None = None, variation_strength: float = 0.0,
              prompt_weighting: bool = False, controls: Sequence | None = None,
              guess_mode: bool = False, reward_guidance=None) -> list[Image.Image]:
    """Generate ``len(seeds)`` images; image i uses ``torch.Generator('cpu').manual_seed(seeds[i])``.
    ``latent_upscale`` (img2img): start from the init image's latents interpolated to width x height instead of
    its pixels resized (hires fix's latent upscaler). A list ``prompt`` (and ``negative_prompt``) gives image i
    its own prompt: one call for several requests (txt2img only), image i still seeded ``seeds[i]``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError("steps must be a positive int")
    gens = _generators(list(seeds))
    n = len(gens)
    per_image = not isinstance(prompt, str)
    if per_image:
        prompt = list(prompt)
        if len(prompt) != n or (negative_prompt is not None and len(negative_prompt) != n):
            raise ValueError(f"{len(prompt)} prompts for {n} seeds: a list prompt needs one per seed (and "
                             f"negative prompt)")
        if mode != "txt2img" or variation_seed is not None or prompt_weighting or controls or reward_guidance:
            raise ValueError("a list of prompts runs plain txt2img only")
        negative_prompt = list(negative_prompt) if negative_prompt is not None else None

    # ---- inputs per mode
    keep_mask = None
    base_image = None
    if mode == "outpaint":
        if outpaint is None or init_image is None:
            raise ValueError("outpaint needs init_image and outpaint=(left, top, right, bottom)")
        src = _rgb(init_image)
        canvas, gen_mask, keep_mask = outpaint_canvas(src, outpaint)
        init, msk = canvas, gen_mask
        width, height = canvas.size
        strength = 1.0 if strength is None else strength
        base_image = canvas
    else:
        if width % 8 or height % 8 or width <= 0 or height <= 0:
            raise ValueError(f"width and height must be positive multiples of 8 (got {width}x{height})")
        init = msk = None
        if mode in ("img2img", "inpaint"):
            if init_image is None:
                raise ValueError(f"{mode} needs init_image")
            init = _rgb(init_image, (width, height))
        if mode == "inpaint":
            if mask is None:
                raise ValueError("inpaint needs mask (white = repaint)")
            msk = _mask(mask, (width, height))
            keep_mask = msk
            base_image = init
            strength = 1.0 if strength is None else strength
        if mode == "img2img":
            strength = 0.75 if strength is None else strength
    if strength is not None and not (0.0 <= float(strength) <= 1.0):
        raise ValueError("strength must be in [0, 1]")
    if mode == "img2img" and float(strength) == 0.0:
        return [init.copy() for _ in range(n)]  # strength 0 = keep the input unchanged

    # ---- 9-channel inpaint models run every mode through the inpaint pipeline
    pipe_mode = "inpaint" if mode == "outpaint" else mode
    if model.inpaint_unet and mode in ("txt2img", "img2img"):
        if mode == "txt2img":
            init = Image.new("RGB", (width, height), (127, 127, 127))
            strength = 1.0
        msk = Image.new("L", (width, height), 255)
        pipe_mode = "inpaint"
    # a unit at weight 0 adds nothing, but Flux's pipeline still VAE-encodes its map with the seeds' generators
    # (other noise): drop such units, so weight 0 is exactly the uncontrolled image on every family
    controls = [u for u in controls or () if float(u.weight) != 0.0]
    if controls:  # pipelines.controlnet.ControlSpec units: the family's ControlNet pipeline for this mode
        from .controlnet import control_pipeline

        base = control_pipeline(model.pipe, model.family, pipe_mode, controls)
    else:
        base = model.pipeline_for(pipe_mode)
    if latent_upscale:
        if pipe_mode != "img2img" or model.family not in LATENT_FAMILIES:
            raise ValueError(f"latent upscale runs on SD 1.x/2.x/XL img2img (not {model.family} {pipe_mode})")
        init = upscaled_latents(base, _rgb(init_image), width, height)

    # ---- sampler: fresh scheduler from the model's own config, on a per-call pipeline copy
    name = resolve_sampler(sampler) if sampler else default_sampler(model.family, model.base_scheduler_config)
    scheduler = make_scheduler(name, model.base_scheduler_config, model.family)
    if hasattr(scheduler, "noise_sampler_seed"):
        # SDE samplers draw their Brownian noise from their own generator, randomly seeded unless told:
        # seed it per image so a seed reproduces, and image i of a batch matches a single run of seed i.
        scheduler.noise_sampler_seed = list(seeds) if len(seeds) > 1 else int(seeds[0])
    pipe = copy.copy(base)  # shallow: shares the modules, own config/scheduler/per-call state
    pipe.scheduler = scheduler
    if clip_skip:
        apply_clip_skip_shim(pipe)
        if not clip_skip_supported(pipe):
            raise ValueError("clip_skip is not supported for this model")

    if strength is not None and pipe_mode != "txt2img" and steps * float(strength) < 1:
        steps = math.ceil(1 / float(strength))  # at least one denoising step

    kw: dict = dict(prompt=prompt, num_inference_steps=steps, generator=gens,
                    num_images_per_prompt=1 if per_image else n, output_type="pil")
    if _flux_like(model):
        # Flux: distilled guidance (dev) goes in guidance_scale; schnell ignores it; no classic CFG/negatives.
        kw["guidance_scale"] = float(guidance)
    else:
        kw["guidance_scale"] = float(guidance)
        if negative_prompt:
            kw["negative_prompt"] = negative_prompt
    if clip_skip:
        kw["clip_skip"] = int(clip_skip)
    if pipe_mode == "txt2img":
        kw.update(width=width, height=height)
    elif pipe_mode == "img2img":
        kw.update(image=init, strength=float(strength))
        if _accepts(pipe, "height"):  # SD3 / Flux / ... img2img take an output size; SD/SDXL use the image's
            kw.update(width=width, height=height)
    else:
        kw.update(image=init, mask_image=msk, strength=float(strength), width=width, height=height)

    if variation_seed is not None and variation_strength > 0:
        # txt2img only (a 9-channel inpaint model runs it as inpaint at strength 1, which takes noise the same way)
        if mode != "txt2img":
            raise ValueError(f"variation seeds apply to txt2img, not {mode}")
        kw["latents"] = variation_latents(pipe, gens, width=width, height=height, variation_seed=variation_seed,
                                          strength=variation_strength)
    if prompt_weighting:
        if clip_skip:
            raise ValueError("prompt weighting and clip_skip cannot be combined")
        kw.update(weighted_embeds(pipe, prompt, negative_prompt or ""))
        kw.pop("prompt")
        kw.pop("negative_prompt", None)

    if controls:
        from .controlnet import control_kwargs

        kw.update(control_kwargs(model.family, pipe_mode, controls, guess_mode=guess_mode))

    guide = None
    if reward_guidance is not None:  # a pipelines.reward_guidance.GuidanceSpec: steer latents by a reward
        from .reward_guidance import RewardGuide

        guide = RewardGuide(reward_guidance)
        guide.install(pipe)
    if callback is not None or guide is not None:
        def _cb(p, i, t, cbkw):
            out = guide.callback(p, i, t, cbkw) if guide is not None else {}
            if callback is not None:
                total = getattr(p, "_num_timesteps", None) or steps
                callback(i + 1, total, out.get("latents", cbkw.get("latents")))
            return out
        kw["callback_on_step_end"] = _cb
        kw["callback_on_step_end_tensor_inputs"] = ["latents"]

    with torch.inference_mode():
        images = list(pipe(**kw).images)

    if keep_mask is not None and base_image is not None:
        images = [pipe.image_processor.apply_overlay(keep_mask, base_image, im) for im in images]
    return images
