"""Named models: built-in entries for well-known checkpoints, user entries from `models.toml` in the user
config dir, and direct paths (diffusers folders, single-file checkpoints)."""
from __future__ import annotations

import json
import logging
import struct
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

log = logging.getLogger(__name__)

USER_FILE = "models.toml"
# the last four edit by instruction (= pipelines.INSTRUCT_FAMILIES, tested)
IMAGE_FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux", "other", "ip2p", "ip2p-sdxl", "flux-kontext", "qwen-edit")
VIDEO_FAMILIES = ("animatediff", "svd", "cogvideox", "ltx", "wan")  # = pipelines.VIDEO_FAMILIES (tested)
AUDIO_FAMILIES = ("stable-audio", "audioldm2", "musicgen")  # = pipelines.AUDIO_FAMILIES (tested)
FAMILIES = IMAGE_FAMILIES + VIDEO_FAMILIES + AUDIO_FAMILIES


def family_modality(family: Optional[str]) -> Optional[str]:
    """What a model of `family` makes (None: unknown family)."""
    if family is None:
        return None
    return "video" if family in VIDEO_FAMILIES else "audio" if family in AUDIO_FAMILIES else "image"
_SAFE_SUFFIXES = (".safetensors", ".sft")
_PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")
# A safetensors header is JSON metadata only; anything this large is not one (and must not be read into memory).
_MAX_HEADER = 100 * 1024 * 1024
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


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
    # video defaults; an AnimateDiff entry names its motion adapter (hub id or folder) next to its SD1.5 base
    frames: Optional[int] = None
    fps: Optional[float] = None
    motion_adapter: Optional[str] = None
    duration: Optional[float] = None  # audio: default clip length in seconds
    modality: Optional[str] = None  # None: from the family when known, else from the files at load time
    builtin: bool = False
    origin: str = "builtin"

    def __post_init__(self):
        if self.modality is None and self.family is not None:
            object.__setattr__(self, "modality", family_modality(self.family))

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


def _mini_instruct_path() -> str:
    return str(Path(__file__).parent / "mini" / "instruct" / "weights")


def _mini_video_path() -> str:
    return str(Path(__file__).parent / "mini" / "video" / "weights")


def _mini_music_path() -> str:
    return str(Path(__file__).parent / "mini" / "music" / "weights")


def builtin_entries() -> dict[str, ModelEntry]:
    entries = [
        ModelEntry("mini", _mini_path(), "sd1", "the studio's own tiny offline model (procedural shapes world)",
                   width=256, height=256, steps=30, guidance=1.5, sampler="Euler"),
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
        # instruction editing (the prompt is the instruction; give the image to edit)
        ModelEntry("instruct-pix2pix", "timbrooks/instruct-pix2pix", "ip2p",
                   "InstructPix2Pix (SD 1.5): edits an image as told; image guidance 1.5", steps=20, guidance=7.5),
        ModelEntry("sdxl-instruct-pix2pix", "diffusers/sdxl-instructpix2pix-768", "ip2p-sdxl",
                   "InstructPix2Pix (SDXL, 768 px)", width=768, height=768, steps=30, guidance=3.0),
        ModelEntry("flux-kontext", "black-forest-labs/FLUX.1-Kontext-dev", "flux-kontext",
                   "FLUX.1 Kontext dev: instruction editing (gated licence)", width=1024, height=1024, steps=28,
                   guidance=2.5),
        ModelEntry("qwen-image-edit", "Qwen/Qwen-Image-Edit", "qwen-edit", "Qwen-Image-Edit (true CFG)",
                   width=1024, height=1024, steps=50, guidance=4.0),
        ModelEntry("mini-instruct", _mini_instruct_path(), "ip2p",
                   "the studio's own tiny offline instruction editor for mini images (\"make the circle blue\")",
                   width=256, height=256, steps=20, guidance=5.0, sampler="DPM++ 2M"),
        # video
        ModelEntry("mini-video", _mini_video_path(), "animatediff",
                   "the studio's own tiny offline video model (mini world shapes that move)",
                   width=256, height=256, steps=25, guidance=5.0, sampler="Euler", frames=16, fps=8),
        ModelEntry("animatediff", "stable-diffusion-v1-5/stable-diffusion-v1-5", "animatediff",
                   "AnimateDiff: SD 1.5 + motion adapter v1-5-2 (any SD1.5 base and LoRA)", steps=25,
                   frames=16, fps=8, motion_adapter="guoyww/animatediff-motion-adapter-v1-5-2"),
        ModelEntry("svd", "stabilityai/stable-video-diffusion-img2vid", "svd",
                   "Stable Video Diffusion (image-to-video, 14 frames)", width=1024, height=576, steps=25,
                   guidance=3.0, frames=14, fps=7),
        ModelEntry("svd-xt", "stabilityai/stable-video-diffusion-img2vid-xt", "svd",
                   "Stable Video Diffusion XT (image-to-video, 25 frames)", width=1024, height=576, steps=25,
                   guidance=3.0, frames=25, fps=7),
        ModelEntry("cogvideox-2b", "THUDM/CogVideoX-2b", "cogvideox", "CogVideoX 2B (text-to-video, video-to-video)",
                   width=720, height=480, steps=50, guidance=6.0, frames=49, fps=8),
        ModelEntry("cogvideox-5b-i2v", "THUDM/CogVideoX-5b-I2V", "cogvideox", "CogVideoX 5B image-to-video",
                   width=720, height=480, steps=50, guidance=6.0, frames=49, fps=8),
        ModelEntry("ltx-video", "Lightricks/LTX-Video", "ltx", "LTX-Video (text- and image-to-video)",
                   width=704, height=480, steps=50, guidance=3.0, frames=161, fps=25),
        ModelEntry("wan2.1-t2v-1.3b", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "wan", "Wan 2.1 T2V 1.3B (480p)",
                   width=832, height=480, steps=50, guidance=5.0, frames=81, fps=16),
        ModelEntry("wan2.1-i2v-14b-480p", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "wan",
                   "Wan 2.1 I2V 14B (480p image-to-video)", width=832, height=480, steps=50, guidance=5.0,
                   frames=81, fps=16),
        ModelEntry("wan2.2-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "wan",
                   "Wan 2.2 TI2V 5B (720p text- and image-to-video)", width=1280, height=704, steps=50,
                   guidance=5.0, frames=121, fps=24),
        # music
        ModelEntry("mini-music", _mini_music_path(), "stable-audio",
                   "the studio's own tiny offline music model (mini music world melodies; weak, see its card)",
                   steps=20, guidance=1.5, duration=8),
        ModelEntry("musicgen-small", "facebook/musicgen-small", "musicgen",
                   "MusicGen small (transformers; text-to-music, continuation)", guidance=3.0, duration=8),
        ModelEntry("musicgen-medium", "facebook/musicgen-medium", "musicgen", "MusicGen medium", guidance=3.0,
                   duration=8),
        ModelEntry("musicgen-melody", "facebook/musicgen-melody", "musicgen",
                   "MusicGen melody (keeps the melody of an init clip)", guidance=3.0, duration=8),
        ModelEntry("stable-audio-open", "stabilityai/stable-audio-open-1.0", "stable-audio",
                   "Stable Audio Open 1.0 (44.1 kHz stereo, up to 47 s)", steps=100, guidance=7.0, duration=10),
        ModelEntry("audioldm2-music", "cvssp/audioldm2-music", "audioldm2", "AudioLDM 2 music", steps=200,
                   guidance=3.5, duration=10),
    ]
    return {e.name: replace(e, builtin=True) for e in entries}


def _looks_like_path(source: str) -> bool:
    p = Path(source).expanduser()
    return p.is_absolute() or source.startswith((".", "~")) or p.suffix in {
        ".safetensors", ".ckpt", ".bin", ".pt", ".pth"} or p.exists()


def check_safetensors(path: Path) -> dict:
    """The parsed header of a `.safetensors` file, or StudioError saying why the file is not a complete one.

    Read by hand rather than with `safe_open`, which refuses the same files but with one generic error
    ("incomplete metadata, file not fully covered"): the Models tab and `studio models --add` say which
    problem it is (no header, not JSON, truncated in the header or in a named tensor)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise StudioError(f"{path.name} is not a safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > _MAX_HEADER:
            raise StudioError(f"{path.name} is not a safetensors file (header length {n} is implausible)")
        if 8 + n > size:
            raise StudioError(f"{path.name} is truncated: its header needs {8 + n} bytes, the file has {size}")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StudioError(f"{path.name} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise StudioError(f"{path.name} is not a safetensors file (its header is not a JSON object)")
    data_len = size - 8 - n
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise StudioError(f"{path.name} holds no tensors")
    for key, spec in tensors.items():
        try:
            begin, end = (int(x) for x in spec["data_offsets"])
            count = 1
            for d in spec["shape"]:
                count *= int(d)
            itemsize = _DTYPE_BYTES.get(spec["dtype"])
        except (KeyError, TypeError, ValueError):
            raise StudioError(f"{path.name}: tensor {key!r} has a malformed header entry") from None
        if not 0 <= begin <= end:
            raise StudioError(f"{path.name}: tensor {key!r} has invalid data offsets")
        if end > data_len:
            raise StudioError(f"{path.name} is truncated: tensor {key!r} ends at byte {8 + n + end}, "
                              f"the file has {size}")
        if itemsize is not None and end - begin != count * itemsize:
            raise StudioError(f"{path.name}: tensor {key!r} does not match its shape and dtype")
    return header


def _file_family(path: Path) -> Optional[str]:
    """The family read from a checkpoint's keys, or None when the keys do not say."""
    from pipelines.loading import detect_single_file

    try:
        model_type, family, _cfg, _patches = detect_single_file(path)
    except Exception as exc:  # detection reads only the header; any failure means "cannot tell"
        log.debug("family detection failed for %s: %s", path, exc)
        return None
    if family == "other":
        return None
    if model_type == "v1":
        # diffusers falls back to "v1" for keys it does not recognise (a LoRA, a VAE, anything): only trust it
        # when the file really has an SD UNet.
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            if not any(k.startswith("model.diffusion_model.") for k in f.keys()):
                return None
    return family


def _folder_family(folder: Path) -> Optional[str]:
    """The folder's family as loading detects it, after saying why an unreadable model_index.json is one
    (loading itself would only call such a folder "other")."""
    from pipelines.loading import folder_family

    index = folder / "model_index.json"
    if not index.exists():
        from pipelines.audio import musicgen_type

        if musicgen_type(folder):  # a transformers MusicGen folder (config.json), not a diffusers pipeline
            return "musicgen"
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudioError(f"{folder.name} is not a diffusers folder (no model_index.json) nor a MusicGen "
                          "folder") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StudioError(f"{folder.name}/model_index.json is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StudioError(f"{folder.name}/model_index.json is not a JSON object")
    family = folder_family(folder)
    return None if family == "other" else family


def validate_source(source: str, family: Optional[str] = None) -> tuple[str, Optional[str]]:
    """(source, family) for a new entry, checked the way loading would fail later: a path must exist and be a
    complete `.safetensors` file or a diffusers folder with a readable model_index.json, and its family must be
    detectable or given. A hub id cannot be checked offline and is kept as given."""
    if not _looks_like_path(source):
        if source.count("/") != 1 or not all(source.split("/")):
            raise StudioError(f"{source!r} is neither a path on this machine nor a hub id (org/name)")
        return source, family
    path = Path(source).expanduser()
    if not path.exists():
        raise StudioError(f"{source} does not exist")
    path = path.resolve()
    if path.is_dir():
        detected = _folder_family(path)
    elif path.suffix.lower() in _SAFE_SUFFIXES:
        check_safetensors(path)
        detected = _file_family(path)
    elif path.suffix.lower() in _PICKLE_SUFFIXES:
        # Reading a pickle's keys would run it; its family has to be given.
        detected = None
    else:
        raise StudioError(f"{path.name}: a model file must be .safetensors (or a pickle checkpoint with a family)")
    if family is None and detected is None:
        raise StudioError(f"cannot tell the model family of {path.name}; give it explicitly "
                          f"({', '.join(FAMILIES)})")
    return str(path), family or detected


class Registry:
    """Built-in entries plus the user's `models.toml`:

    ```toml
    [models.myxl]
    source = "/models/myxl.safetensors"
    family = "sdxl"          # optional: detected from the weights otherwise
    width = 1024             # optional defaults: width, height, steps, guidance, sampler
    ```

    Built-in names are reserved: `add` refuses them, and a `models.toml` entry named like one is ignored with a
    warning (in `problems` and the log) so a stray entry can never silently change what `mini` means; the rest of
    the file still loads, so one such entry does not lock the user out of every other model.
    """

    def __init__(self, user_file: Optional[Path] = None):
        self.user_file = user_file if user_file is not None else config_dir() / USER_FILE
        self.problems: list[str] = []
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
                                   "sampler", "frames", "fps", "motion_adapter", "duration"}
            if unknown:
                raise StudioError(f"{self.user_file}: model {name!r} has unknown keys {sorted(unknown)}")
            if spec.get("family") not in (None, *FAMILIES):
                raise StudioError(f"{self.user_file}: model {name!r} family must be one of {', '.join(FAMILIES)}")
            if name in self.entries and self.entries[name].builtin:
                msg = (f"{self.user_file}: ignoring model {name!r}: {name!r} is a built-in model name; rename the "
                       f"entry to use it")
                self.problems.append(msg)
                log.warning("%s", msg)
                continue
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

    @staticmethod
    def check_name(name: str) -> str:
        """`name` stripped, or StudioError when it is empty or a built-in's."""
        name = (name or "").strip()
        if not name:
            raise StudioError("a model needs a name")
        builtins = builtin_entries()
        if name in builtins:
            raise StudioError(f"{name!r} is a built-in model name and cannot be replaced; pick another name "
                              f"(built-in: {', '.join(builtins)})")
        return name

    def add(self, name: str, source: str, family: Optional[str] = None, **defaults) -> ModelEntry:
        """Add or replace a user entry and persist it to `models.toml`, after checking that it can load
        (`validate_source`); the detected family is stored with it."""
        import tomli_w

        name = self.check_name(name)
        if family not in (None, *FAMILIES):
            raise StudioError(f"family must be one of {', '.join(FAMILIES)}")
        source, family = validate_source(source, family)
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
