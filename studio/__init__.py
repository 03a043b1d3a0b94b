"""diffusion-studio's public Python API.

    import studio
    result = studio.generate("a large red circle in the center on a white background", seed=7, out="red.png")
    result.outputs[0].path, result.images[0]      # sealed file, and the image decoded from it

Everything else (`pipelines`, `schedulers`, `safety`, `fused_ops`, `ui`) is the app's internals.
"""
from __future__ import annotations

from .config import config_dir
from .errors import RequestError, StudioError, UnknownModel
from .metadata import STUDIO_VERSION as __version__
from .schema import GenerationRecord, GenerationRequest, LoraRef, MemoryOptions, OutputRecord, Outpaint

__all__ = [
    "GenerationRecord", "GenerationRequest", "LoraRef", "MemoryOptions", "OutputRecord", "Outpaint",
    "RequestError", "StudioError", "UnknownModel", "Registry", "Result", "Studio", "generate", "verify", "info",
    "samplers", "config_dir",
    "__version__",
]


def __getattr__(name):
    # The engine pulls in torch/diffusers (seconds of import time); load it only when used.
    if name in ("Studio", "Result", "generate"):
        from . import engine

        return getattr(engine, name)
    if name == "Registry":
        from .registry import Registry

        return Registry
    raise AttributeError(name)


def samplers() -> list[str]:
    """Names of the sampler catalog, e.g. 'Euler a', 'DPM++ 2M Karras'."""
    import schedulers

    return list(schedulers.SAMPLERS)


def verify(path):
    """Check a file's C2PA credentials and watermark; see `safety.VerifyReport`."""
    import safety

    from .writer import safety_config

    return safety.verify(path, config=safety_config())


def info(path):
    """The generation record stored in a studio output, or None."""
    from pathlib import Path

    from .metadata import read_info

    return read_info(Path(path))
