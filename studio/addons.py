"""Named LoRAs and upscalers: built-in upscaler entries (hub ids, used only when already in the local cache) and
the user's own in `models.toml` next to the models:

```toml
[loras.ink]
path = "/loras/ink-style.safetensors"
weight = 0.8                 # optional: the weight a picker starts at
description = "ink drawing style"

[upscalers.myx2]
source = "/models/sd-x2-latent-upscaler"   # a diffusers folder or a hub id in the local cache
```
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import StudioError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class UpscalerEntry:
    name: str
    source: str  # diffusers folder or hub id of a StableDiffusion(Latent)UpscalePipeline
    description: str = ""
    builtin: bool = False


@dataclass(frozen=True)
class LoraEntry:
    name: str
    path: str
    weight: float = 1.0
    description: str = ""


BUILTIN_UPSCALERS = {
    "sd-x2-latent-upscaler": UpscalerEntry("sd-x2-latent-upscaler", "stabilityai/sd-x2-latent-upscaler",
                                           "Stable Diffusion x2 latent upscaler", True),
    "sd-x4-upscaler": UpscalerEntry("sd-x4-upscaler", "stabilityai/stable-diffusion-x4-upscaler",
                                    "Stable Diffusion x4 upscaler", True),
}


def _tables(user_file: Optional[Path], key: str) -> dict:
    if user_file is None or not Path(user_file).exists():
        return {}
    try:
        data = tomllib.loads(Path(user_file).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StudioError(f"{user_file}: not valid TOML ({exc})") from None
    table = data.get(key) or {}
    if not isinstance(table, dict):
        raise StudioError(f"{user_file}: [{key}] must be a table of named entries")
    return table


def upscalers(registry) -> dict[str, UpscalerEntry]:
    """Built-in upscalers plus `[upscalers.NAME]` of the registry's models.toml (built-in names are kept)."""
    out = dict(BUILTIN_UPSCALERS)
    user_file = getattr(registry, "user_file", None)
    for name, spec in _tables(user_file, "upscalers").items():
        if not isinstance(spec, dict) or not isinstance(spec.get("source"), str) or not spec["source"]:
            raise StudioError(f"{user_file}: upscaler {name!r} needs a 'source' (folder or hub id)")
        if name not in out:
            out[name] = UpscalerEntry(name, spec["source"], str(spec.get("description", "")))
    return out


def loras(registry) -> dict[str, LoraEntry]:
    """`[loras.NAME]` entries of the registry's models.toml."""
    user_file = getattr(registry, "user_file", None)
    out = {}
    for name, spec in _tables(user_file, "loras").items():
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str) or not spec["path"]:
            raise StudioError(f"{user_file}: LoRA {name!r} needs a 'path' (.safetensors file)")
        try:
            weight = float(spec.get("weight", 1.0))
        except (TypeError, ValueError):
            raise StudioError(f"{user_file}: LoRA {name!r} weight must be a number") from None
        out[name] = LoraEntry(name, str(Path(spec["path"]).expanduser()), weight, str(spec.get("description", "")))
    return out


__all__ = ["BUILTIN_UPSCALERS", "LoraEntry", "UpscalerEntry", "loras", "upscalers"]
