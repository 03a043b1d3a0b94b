"""Upscaling for hires fix: interpolated latents for the refine pass, and the diffusers upscaler pipelines
(`StableDiffusionLatentUpscalePipeline`, x2; `StableDiffusionUpscalePipeline`, x4) loaded from local weights
only (a folder, or a hub id already in the local cache: nothing is downloaded at run time)."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from PIL import Image

from .loading import ModelLoadError, ModelNotAvailable, content_hash

# The diffusers pipeline classes an upscaler folder may hold, and the factor each upscales by.
UPSCALER_CLASSES = {"StableDiffusionLatentUpscalePipeline": 2, "StableDiffusionUpscalePipeline": 4}
LATENT_FAMILIES = ("sd1", "sd2", "sdxl")  # 4-channel SD latents the img2img pipelines take as `image`
X4_NOISE_LEVEL = 20  # diffusers' default for the x4 upscaler


@dataclass
class LoadedUpscaler:
    pipe: object
    factor: int
    source: str
    content_hash: str


def upscaled_latents(pipe, image: Image.Image, width: int, height: int) -> torch.Tensor:
    """`image` encoded by `pipe`'s VAE at its own size, its latents bilinearly interpolated to the latent size
    of `width` x `height` (A1111's "Latent" upscaler). SD/SDXL img2img pipelines take 4-channel latents as
    their `image` and start denoising from them, so no pixel resize happens."""
    vae = pipe.vae
    scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    if width % scale or height % scale:
        raise ValueError(f"latent upscale: {width}x{height} is not a multiple of the VAE factor {scale}")
    x = pipe.image_processor.preprocess(image.convert("RGB")).to(device=vae.device, dtype=vae.dtype)
    with torch.inference_mode():
        latents = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
        latents = torch.nn.functional.interpolate(latents.float(), size=(height // scale, width // scale),
                                                  mode="bilinear", align_corners=False)
    return latents.to(vae.dtype)


def _index_class(folder: Path) -> Optional[str]:
    try:
        return json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def upscaler_folder(source: str) -> Path:
    """The local folder of an upscaler `source` (a folder path, or a hub id in the local Hugging Face cache),
    checked to hold one of `UPSCALER_CLASSES`; ModelNotAvailable / ModelLoadError in one line otherwise."""
    path = Path(os.path.expanduser(source))
    if path.exists() or source.startswith(("/", ".", "~")):
        if not path.is_dir():
            raise ModelNotAvailable(f"upscaler folder {path.name!r} does not exist (give a diffusers folder of "
                                    f"{' or '.join(UPSCALER_CLASSES)})")
        folder = path
    else:
        if not re.match(r"^[\w.\-]+/[\w.\-]+$", source):
            raise ModelNotAvailable(f"upscaler {source!r} is neither a local folder nor a hub id (owner/name)")
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(source, local_files_only=True))
        except Exception:  # noqa: BLE001 - huggingface_hub raises several kinds for "not cached"
            raise ModelNotAvailable(
                f"upscaler {source!r} is not available offline: on a connected machine run `huggingface-cli "
                f"download {source}` (or copy its folder here and name the folder), then try again") from None
    cls = _index_class(folder)
    if cls not in UPSCALER_CLASSES:
        raise ModelLoadError(f"{folder.name} is not an upscaler: its model_index.json names {cls or 'nothing'}, "
                             f"not {' or '.join(UPSCALER_CLASSES)}")
    return folder


def load_upscaler(source: str, *, device=None, dtype=None) -> LoadedUpscaler:
    from diffusers import DiffusionPipeline

    folder = upscaler_folder(source)
    try:
        pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                 **({"dtype": dtype} if dtype is not None else {}))
    except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds for a broken folder
        raise ModelLoadError(f"could not load upscaler {folder.name}: {str(exc).splitlines()[0][:200]}") from None
    if device is not None:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return LoadedUpscaler(pipe, UPSCALER_CLASSES[type(pipe).__name__], source, content_hash(folder))


def run_upscaler(up: LoadedUpscaler, image: Image.Image, *, prompt: str, negative_prompt: str = "",
                 steps: int = 20, guidance: float = 0.0, seed: int = 0) -> Image.Image:
    """`image` upscaled by the model's own factor (x2 or x4), noise from a CPU generator seeded `seed`."""
    kw = dict(prompt=prompt, image=image.convert("RGB"), num_inference_steps=int(steps),
              guidance_scale=float(guidance), generator=torch.Generator("cpu").manual_seed(int(seed) % 2**64))
    if negative_prompt and guidance > 1:
        kw["negative_prompt"] = negative_prompt
    if up.factor == 4:
        kw["noise_level"] = X4_NOISE_LEVEL
    with torch.inference_mode():
        return up.pipe(**kw).images[0]


__all__ = ["LATENT_FAMILIES", "LoadedUpscaler", "UPSCALER_CLASSES", "load_upscaler", "run_upscaler",
           "upscaled_latents", "upscaler_folder"]
