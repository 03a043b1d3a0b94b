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


INSTRUCT_FAMILIES: dict[str, InstructFamily] = {f.name: f for f in (
    InstructFamily("ip2p", ("StableDiffusionInstructPix2PixPipeline",), "sd1", 1.5, "InstructPix2Pix (SD 1.5)"),
    InstructFamily("ip2p-sdxl", ("StableDiffusionXLInstructPix2PixPipeline",), "sdxl", 1.5,
                   "InstructPix2Pix (SDXL)"),
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


def run_instruct(model, *, prompt: str, init_image: Image.Image, width: int, height: int, steps: int,
                 guidance: float, image_guidance: Optional[float] = None, negative_prompt: str | None = None,
                 sampler: str | None = None, seeds: Sequence[int] = (0,),
                 callback: Callable[[int, int, torch.Tensor], None] | None = None) -> list[Image.Image]:
    """Edit ``init_image`` as ``prompt`` (the instruction) says, one image per seed (CPU generators)."""
    from schedulers import default_sampler, make_scheduler, resolve_sampler

    from .image import _generators, _rgb

    spec = INSTRUCT_FAMILIES.get(model.family)
    if spec is None:
        raise ValueError(f"{model.family} is not an instruction-editing family ({', '.join(INSTRUCT_FAMILIES)})")
    if init_image is None:
        raise ValueError("an instruction edit needs init_image (the image to edit)")
    if image_guidance is not None and spec.image_guidance is None:
        raise ValueError(f"{spec.what} has no image guidance scale")
    gens = _generators(list(seeds))
    pipe = copy.copy(model.pipe)  # shallow: shares the modules, own scheduler / per-call state
    if spec.base is not None:
        name = resolve_sampler(sampler) if sampler else default_sampler(spec.base, model.base_scheduler_config)
        pipe.scheduler = make_scheduler(name, model.base_scheduler_config, spec.base)
    image = _rgb(init_image, (width, height))
    kw: dict = dict(prompt=prompt, image=image, num_inference_steps=steps, generator=gens,
                    num_images_per_prompt=len(gens), output_type="pil")
    if spec.name in ("ip2p", "ip2p-sdxl"):
        # one image per output: a single image repeated by num_images_per_prompt is deprecated in diffusers
        kw["image"] = [image] * len(gens)
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


__all__ = ["INSTRUCT_FAMILIES", "INSTRUCT_FAMILY_NAMES", "InstructFamily", "base_family",
           "instruct_family_of_pipeline", "is_instruct", "run_instruct"]
