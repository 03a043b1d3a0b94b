"""Instruction editing ("make the circle blue"): InstructPix2Pix (SD1.5, SDXL), Flux Kontext, Qwen-Image-Edit.

Each is its own model family, because the checkpoint itself is the editor (an 8-channel UNet, a Kontext
transformer): the family names the diffusers pipeline, the base family whose samplers drive it, and whether it
takes an image-guidance scale next to text guidance.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from PIL import Image


@dataclass(frozen=True)
class InstructFamily:
    name: str
    pipelines: tuple[str, ...]  # diffusers pipeline class names of this family's checkpoints
    base: Optional[str]  # the `schedulers` family whose catalog samplers drive it; None: its own scheduler only
    image_guidance: Optional[float]  # default image-guidance scale; None: the model has none
    what: str
    # frames of one clip edited by instruction (`run_instruct_frames`); 0: the family edits single images only
    # (Kontext and Qwen-Image-Edit read a list of images as references for one output, not as a batch of frames)
    max_frames: int = 0


# Each frame of a clip is a whole image edit: 120 frames (5 s at 24 fps) is minutes on a GPU; longer clips are
# refused up front rather than cut silently
FRAME_EDIT_LIMIT = 120
FRAME_CHUNK = 16  # frames per pipeline call (with text and image guidance the UNet batch is 3x this)

INSTRUCT_FAMILIES: dict[str, InstructFamily] = {f.name: f for f in (
    InstructFamily("ip2p", ("StableDiffusionInstructPix2PixPipeline",), "sd1", 1.5, "InstructPix2Pix (SD 1.5)",
                   max_frames=FRAME_EDIT_LIMIT),
    InstructFamily("ip2p-sdxl", ("StableDiffusionXLInstructPix2PixPipeline",), "sdxl", 1.5,
                   "InstructPix2Pix (SDXL)", max_frames=FRAME_EDIT_LIMIT),
    InstructFamily("flux-kontext", ("FluxKontextPipeline",), "flux", None, "FLUX.1 Kontext"),
    InstructFamily("qwen-edit", ("QwenImageEditPipeline", "QwenImageEditPlusPipeline"), None, None,
                   "Qwen-Image-Edit"),
)}
INSTRUCT_FAMILY_NAMES = tuple(INSTRUCT_FAMILIES)


def instruct_family_of_pipeline(class_name: str) -> Optional[str]:
    return next((f.name for f in INSTRUCT_FAMILIES.values() if class_name in f.pipelines), None)


def is_instruct(family: Optional[str]) -> bool:
    return family in INSTRUCT_FAMILIES


def base_family(family: Optional[str]) -> Optional[str]:
    """The sampler family of ``family`` (an instruct family's base; others are their own)."""
    if family in INSTRUCT_FAMILIES:
        return INSTRUCT_FAMILIES[family].base
    return family


def _accepts(pipe, name: str) -> bool:
    import inspect

    return name in inspect.signature(type(pipe).__call__).parameters


def _editor(model, sampler: str | None, image_guidance: Optional[float]):
    """(family rules, a per-call copy of the model's pipeline with the sampler set), checked."""
    from schedulers import default_sampler, make_scheduler, resolve_sampler

    spec = INSTRUCT_FAMILIES.get(model.family)
    if spec is None:
        raise ValueError(f"{model.family} is not an instruction-editing family ({', '.join(INSTRUCT_FAMILIES)})")
    if image_guidance is not None and spec.image_guidance is None:
        raise ValueError(f"{spec.what} has no image guidance scale")
    pipe = copy.copy(model.pipe)  # shallow: shares the modules, own scheduler / per-call state
    if spec.base is not None:
        name = resolve_sampler(sampler) if sampler else default_sampler(spec.base, model.base_scheduler_config)
        pipe.scheduler = make_scheduler(name, model.base_scheduler_config, spec.base)
    return spec, pipe


def _edit(spec: InstructFamily, pipe, *, prompt: str, images: list, gens: list, width: int, height: int,
          steps: int, guidance: float, image_guidance: Optional[float], negative_prompt: str | None,
          callback) -> list[Image.Image]:
    """One pipeline call: ``images`` (one per generator for InstructPix2Pix, else one) edited as ``prompt`` says."""
    kw: dict = dict(prompt=prompt, image=images[0], num_inference_steps=steps, generator=gens,
                    num_images_per_prompt=len(gens), output_type="pil")
    if spec.name in ("ip2p", "ip2p-sdxl"):
        # one image per output: a single image repeated by num_images_per_prompt is deprecated in diffusers
        kw["image"] = list(images)
        kw.update(guidance_scale=float(guidance),
                  image_guidance_scale=float(spec.image_guidance if image_guidance is None else image_guidance))
        if negative_prompt:
            kw["negative_prompt"] = negative_prompt
        if spec.name == "ip2p-sdxl":
            kw.update(height=height, width=width)
    elif spec.name == "flux-kontext":
        # distilled guidance; the output keeps the requested area and the image's aspect
        kw.update(guidance_scale=float(guidance), height=height, width=width, max_area=width * height)
        if max(width, height) < 512:
            kw["_auto_resize"] = False  # Kontext's preferred resolutions start at 672 px: keep small edits small
    else:  # qwen-edit: true CFG, enabled by a negative prompt (an empty one is " ")
        kw.update(true_cfg_scale=float(guidance), negative_prompt=negative_prompt or " ", height=height,
                  width=width)

    if callback is not None:
        if _accepts(pipe, "callback_on_step_end"):
            def _cb(p, i, t, cbkw):
                total = getattr(p, "_num_timesteps", None) or steps
                callback(i + 1, total, cbkw.get("latents"))
                return {}
            kw["callback_on_step_end"] = _cb
            kw["callback_on_step_end_tensor_inputs"] = ["latents"]
        else:  # SDXL InstructPix2Pix still has the old per-step callback
            kw["callback"] = lambda i, t, latents: callback(i + 1, steps, latents)
            kw["callback_steps"] = 1

    with torch.inference_mode():
        return list(pipe(**kw).images)


def run_instruct(model, *, prompt: str, init_image: Image.Image, width: int, height: int, steps: int,
                 guidance: float, image_guidance: Optional[float] = None, negative_prompt: str | None = None,
                 sampler: str | None = None, seeds: Sequence[int] = (0,),
                 callback: Callable[[int, int, torch.Tensor], None] | None = None) -> list[Image.Image]:
    """Edit ``init_image`` as ``prompt`` (the instruction) says, one image per seed (CPU generators)."""
    from .image import _generators, _rgb

    spec, pipe = _editor(model, sampler, image_guidance)
    if init_image is None:
        raise ValueError("an instruction edit needs init_image (the image to edit)")
    gens = _generators(list(seeds))
    image = _rgb(init_image, (width, height))
    common = dict(prompt=prompt, width=width, height=height, steps=steps, guidance=guidance,
                  image_guidance=image_guidance, negative_prompt=negative_prompt)
    if spec.name in ("ip2p", "ip2p-sdxl"):
        return _edit(spec, pipe, images=[image] * len(gens), gens=gens, callback=callback, **common)
    # single-reference editors (Kontext, Qwen): a batch of N differs from N single runs in the last bit of a few
    # pixels (batched matmuls), so each seed is its own call: seed s gives the same image in any batch
    out: list[Image.Image] = []
    n = len(gens)
    for i, gen in enumerate(gens):
        cb = None if callback is None else (
            lambda step, total, lat, i=i: callback(i * total + step, n * total, lat))
        out += _edit(spec, pipe, images=[image], gens=[gen], callback=cb, **common)
    return out


def run_instruct_frames(model, *, prompt: str, frames: Sequence[Image.Image], width: int, height: int, steps: int,
                        guidance: float, image_guidance: Optional[float] = None, negative_prompt: str | None = None,
                        sampler: str | None = None, seeds: Sequence[int] = (0,), chunk: int = FRAME_CHUNK,
                        callback: Callable[[int, int, torch.Tensor], None] | None = None) -> list[list[Image.Image]]:
    """Edit every frame of a clip as ``prompt`` says: one clip per seed. The frames go to the pipeline as one
    batch (``chunk`` at a time) with one generator per frame, all seeded alike, so every frame starts from the
    same noise and draws the same noise at each step: what differs between edited frames is what differed
    between the source frames."""
    from .image import _generators, _rgb

    spec, pipe = _editor(model, sampler, image_guidance)
    if not spec.max_frames:
        raise ValueError(f"{spec.what} edits single images: it has no batch of frames to edit a clip with")
    if not frames:
        raise ValueError("an instruction edit of a clip needs its frames")
    if len(frames) > spec.max_frames:
        raise ValueError(f"{len(frames)} frames is over the {spec.max_frames} {spec.what} edits in one clip")
    images = [_rgb(f, (width, height)) for f in frames]
    parts = [images[i:i + max(1, chunk)] for i in range(0, len(images), max(1, chunk))]
    clips = []
    for s_i, seed in enumerate(seeds):
        clip: list[Image.Image] = []
        for p_i, part in enumerate(parts):
            done = (s_i * len(parts) + p_i) * steps
            total = len(seeds) * len(parts) * steps
            step_cb = None if callback is None else (
                lambda i, _t, lat, done=done, total=total: callback(done + i, total, lat))
            clip += _edit(spec, pipe, prompt=prompt, images=part, gens=_generators([seed] * len(part)),
                          width=width, height=height, steps=steps, guidance=guidance, image_guidance=image_guidance,
                          negative_prompt=negative_prompt, callback=step_cb)
        clips.append(clip)
    return clips


__all__ = ["INSTRUCT_FAMILIES", "INSTRUCT_FAMILY_NAMES", "InstructFamily", "base_family",
           "instruct_family_of_pipeline", "is_instruct", "run_instruct", "run_instruct_frames"]
