"""``mini-instruct``: the mini model turned into an InstructPix2Pix instruction editor ("make the circle blue").

Light imports (no torch): ``weights_path()`` is the shipped diffusers folder
(``StableDiffusionInstructPix2PixPipeline``, 256 px).
"""

from __future__ import annotations

from pathlib import Path

#: Sampling defaults the shipped weights were evaluated with (see weights/README.md).
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE_SCALE = 5.0
DEFAULT_IMAGE_GUIDANCE_SCALE = 1.5


def weights_path() -> Path:
    return Path(__file__).resolve().parent / "weights"


def load_pipeline(path=None, dtype=None):
    """The shipped editor, offline (float32 on CPU by default)."""
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline

    return StableDiffusionInstructPix2PixPipeline.from_pretrained(
        str(path or weights_path()), local_files_only=True, torch_dtype=dtype or torch.float32)


__all__ = ["weights_path", "load_pipeline", "DEFAULT_STEPS", "DEFAULT_GUIDANCE_SCALE", "DEFAULT_IMAGE_GUIDANCE_SCALE"]
