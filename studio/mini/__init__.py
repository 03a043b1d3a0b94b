"""The studio's own tiny offline text-to-image model (``mini``), trained on a procedural world.

Imports here stay light (no torch): ``weights_path()`` returns the shipped diffusers folder.
"""

from __future__ import annotations

from pathlib import Path

#: Sampling defaults the shipped weights were evaluated with.
DEFAULT_GUIDANCE_SCALE = 1.5
DEFAULT_STEPS = 30
HEIGHT = WIDTH = 256


def weights_path() -> Path:
    """Folder of the shipped weights (diffusers format, loads with StableDiffusionPipeline.from_pretrained)."""
    return Path(__file__).resolve().parent / "weights"


def load_pipeline(path=None, dtype=None):
    """Load the shipped pipeline offline (float32 on CPU by default)."""
    import torch
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        str(path or weights_path()), local_files_only=True, torch_dtype=dtype or torch.float32
    )


__all__ = ["weights_path", "load_pipeline", "DEFAULT_GUIDANCE_SCALE", "DEFAULT_STEPS"]
