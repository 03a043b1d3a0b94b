"""Named models: built-in entries for well-known checkpoints, user entries from `models.toml` in the user
config dir, and direct paths (diffusers folders, single-file checkpoints)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from .config import config_dir
from .errors import StudioError, UnknownModel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

USER_FILE = "models.toml"
FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux", "other")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: str  # hub id, diffusers folder or checkpoint file
    family: Optional[str] = None  # None: detected at load time
    description: str = ""
    width: int = 512
    height: int = 512
    steps: int = 30
    guidance: float = 7.5
    sampler: Optional[str] = None  # None: the family's default
    builtin: bool = False
    origin: str = "builtin"

    @property
    def is_path(self) -> bool:
        return _looks_like_path(self.source)

    def available_locally(self) -> bool:
        """True when loading needs no network: the path exists, or the hub id is in the local HF cache."""
        if self.is_path:
            return Path(self.source).expanduser().exists()
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(self.source, "model_index.json")
            return isinstance(hit, str)
        except Exception:
            return False


def _mini_path() -> str:
    return str(Path(__file__).parent / "mini" / "weights")


def builtin_entries() -> dict[str, ModelEntry]:
    entries = [
        ModelEntry("mini", _mini_path(), "sd1", "the studio's own tiny offline model (procedural shapes world)",
                   width=256, height=256, steps=30, guidance=5.0, sampler="Euler"),
        ModelEntry("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd1", "Stable Diffusion 1.5"),
        ModelEntry("sd15-inpaint", "stable-diffusion-v1-5/stable-diffusion-inpainting", "sd1",
                   "Stable Diffusion 1.5 inpainting (9-channel UNet)"),
        ModelEntry("sd21", "stabilityai/stable-diffusion-2-1", "sd2", "Stable Diffusion 2.1 (768, v-prediction)",
                   width=768, height=768),
        ModelEntry("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl", "SDXL base 1.0",
                   width=1024, height=1024, guidance=5.0),
        ModelEntry("sdxl-inpaint", "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", "sdxl",
                   "SDXL inpainting 0.1 (9-channel UNet)", width=1024, height=1024),
        ModelEntry("sd35-medium", "stabilityai/stable-diffusion-3.5-medium", "sd3", "Stable Diffusion 3.5 medium",
                   width=1024, height=1024, steps=28, guidance=4.5),
        ModelEntry("flux-schnell", "black-forest-labs/FLUX.1-schnell", "flux", "FLUX.1 schnell (4 steps, no CFG)",
                   width=1024, height=1024, steps=4, guidance=0.0),
        ModelEntry("flux-dev", "black-forest-labs/FLUX.1-dev", "flux", "FLUX.1 dev (gated licence)",
                   width=1024, height=1024, steps=28, guidance=3.5),
    ]
    return {e.name: replace(e, builtin=True) for e in entries}


def _looks_like_path(source: str) -> bool:
    p = Path(source).expanduser()
    return p.is_absolute() or source.startswith((".", "~")) or p.suffix in {
        ".safetensors", ".ckpt", ".bin", ".pt", ".pth"} or p.exists()


class Registry:
    """Built-in entries overlaid by the user's `models.toml`:

    ```toml
    [models.myxl]
    source = "/models/myxl.safetensors"
    family = "sdxl"          # optional: detected from the weights otherwise
    width = 1024             # optional defaults: width, height, steps, guidance, sampler
    ```
    """

    def __init__(self, user_file: Optional[Path] = None):
        self.user_file = user_file if user_file is not None else config_dir() / USER_FILE
        self.entries: dict[str, ModelEntry] = builtin_entries()
        self.entries.update(self._load_user())

    def _load_user(self) -> dict[str, ModelEntry]:
        if not self.user_file.exists():
            return {}
        try:
            data = tomllib.loads(self.user_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise StudioError(f"{self.user_file}: not valid TOML ({exc})") from None
        out = {}
        for name, spec in (data.get("models") or {}).items():
            if not isinstance(spec, dict) or not spec.get("source"):
                raise StudioError(f"{self.user_file}: model {name!r} needs a 'source' (hub id or path)")
            unknown = set(spec) - {"source", "family", "description", "width", "height", "steps", "guidance",
                                   "sampler"}
            if unknown:
                raise StudioError(f"{self.user_file}: model {name!r} has unknown keys {sorted(unknown)}")
            if spec.get("family") not in (None, *FAMILIES):
                raise StudioError(f"{self.user_file}: model {name!r} family must be one of {', '.join(FAMILIES)}")
            base = {k: v for k, v in spec.items()}
            out[name] = ModelEntry(name=name, origin=str(self.user_file), **base)
        return out

    def names(self) -> list[str]:
        return list(self.entries)

    def default_name(self) -> str:
        """`mini` ships with the studio, so it is the default whenever no other model is asked for."""
        return "mini"

    def resolve(self, name_or_path: Optional[str]) -> ModelEntry:
        key = name_or_path or self.default_name()
        if key in self.entries:
            return self.entries[key]
        if _looks_like_path(key):
            path = Path(key).expanduser()
            if not path.exists():
                raise UnknownModel(f"model path {key!r} does not exist")
            return ModelEntry(name=path.name, source=str(path.resolve()), origin="path")
        if "/" in key:  # a hub id given directly
            return ModelEntry(name=key, source=key, origin="hub")
        raise UnknownModel(
            f"unknown model {key!r}: known models are {', '.join(self.entries)}; or pass a hub id "
            f"(org/name), a diffusers folder or a .safetensors file"
        )

    def add(self, name: str, source: str, family: Optional[str] = None, **defaults) -> ModelEntry:
        """Add or replace a user entry and persist it to `models.toml`."""
        import tomli_w

        if family not in (None, *FAMILIES):
            raise StudioError(f"family must be one of {', '.join(FAMILIES)}")
        data = {}
        if self.user_file.exists():
            data = tomllib.loads(self.user_file.read_text(encoding="utf-8"))
        spec = {"source": source, **({"family": family} if family else {}), **defaults}
        data.setdefault("models", {})[name] = spec
        self.user_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.user_file.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
        tmp.replace(self.user_file)
        entry = ModelEntry(name=name, origin=str(self.user_file), **spec)
        self.entries[name] = entry
        return entry
