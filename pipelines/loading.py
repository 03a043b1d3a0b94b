"""Load a hub id, a diffusers folder or a single checkpoint file into a diffusers pipeline, offline-first."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from .device import pick_device_dtype
from .instruct import INSTRUCT_FAMILY_NAMES, instruct_family_of_pipeline

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")
SAFE_SUFFIXES = (".safetensors", ".sft")
WEIGHT_SUFFIXES = SAFE_SUFFIXES + PICKLE_SUFFIXES
# instruction-editing families (pipelines.instruct.INSTRUCT_FAMILIES) make images too
FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux", "other") + INSTRUCT_FAMILY_NAMES
MODES = ("txt2img", "img2img", "inpaint", "outpaint")
# video families (rules and modes in pipelines.video.VIDEO_FAMILIES); named here so loading needs no video import
VIDEO_FAMILY_NAMES = ("animatediff", "svd", "cogvideox", "ltx", "wan")
_VIDEO_PIPELINES = {
    "animatediff": ("AnimateDiffPipeline", "AnimateDiffVideoToVideoPipeline"),
    "svd": ("StableVideoDiffusionPipeline",),
    "cogvideox": ("CogVideoXPipeline", "CogVideoXImageToVideoPipeline", "CogVideoXVideoToVideoPipeline"),
    "ltx": ("LTXPipeline", "LTXImageToVideoPipeline"),
    "wan": ("WanPipeline", "WanImageToVideoPipeline", "WanVideoToVideoPipeline"),
}
# bf16 on CUDA where the checkpoints are published in bf16 (fp16 overflows in their transformers)
_VIDEO_BF16 = ("cogvideox", "ltx", "wan")
VIDEO_MODES = ("txt2vid", "img2vid", "vid2vid")
# audio families (rules and modes in pipelines.audio.AUDIO_FAMILIES); MusicGen is transformers, wrapped in
# pipelines.audio.MusicGenPipeline
AUDIO_FAMILY_NAMES = ("stable-audio", "audioldm2", "musicgen")
_AUDIO_PIPELINES = {
    "stable-audio": ("StableAudioPipeline", "StableAudio3Pipeline", "StableAudio3AudioToAudioPipeline",
                     "StableAudio3InpaintPipeline"),
    "audioldm2": ("AudioLDM2Pipeline",),
    "musicgen": ("MusicGenPipeline",),
}
AUDIO_MODES = ("txt2audio", "audio_extend", "audio_inpaint", "audio2audio")
MEDIA_FAMILY_NAMES = VIDEO_FAMILY_NAMES + AUDIO_FAMILY_NAMES
TOKENIZERS_ENV = "DIFFUSION_STUDIO_TOKENIZERS"


class ModelLoadError(RuntimeError):
    """Base class of every model-loading failure."""


class ModelNotAvailable(ModelLoadError):
    """The model is not on disk / not in the offline cache."""


class UnsafeCheckpoint(ModelLoadError):
    """A pickle-based checkpoint was refused (pickle can execute code when loaded)."""


class MissingTokenizer(ModelLoadError):
    """A single-file checkpoint needs a tokenizer that is not available offline."""


# Tokenizers each family needs, as "repo" or "repo:subfolder" candidates (first is the canonical name).
TOKENIZERS: dict[str, dict[str, list[str]]] = {
    "sd1": {"tokenizer": ["openai/clip-vit-large-patch14", "stable-diffusion-v1-5/stable-diffusion-v1-5:tokenizer"]},
    "sd2": {"tokenizer": ["stabilityai/stable-diffusion-2-1:tokenizer", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"]},
    "sdxl": {"tokenizer": ["openai/clip-vit-large-patch14", "stabilityai/stable-diffusion-xl-base-1.0:tokenizer"],
             "tokenizer_2": ["laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
                             "stabilityai/stable-diffusion-xl-base-1.0:tokenizer_2"]},
    "sd3": {"tokenizer": ["openai/clip-vit-large-patch14",
                          "stabilityai/stable-diffusion-3-medium-diffusers:tokenizer"],
            "tokenizer_2": ["laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
                            "stabilityai/stable-diffusion-3-medium-diffusers:tokenizer_2"],
            "tokenizer_3": ["google/t5-v1_1-xxl", "stabilityai/stable-diffusion-3-medium-diffusers:tokenizer_3"]},
    "flux": {"tokenizer": ["openai/clip-vit-large-patch14", "black-forest-labs/FLUX.1-dev:tokenizer"],
             "tokenizer_2": ["google/t5-v1_1-xxl", "black-forest-labs/FLUX.1-dev:tokenizer_2"]},
}

# infer_diffusers_model_type() result -> (family, shipped config folder, config patches)
_MODEL_TYPES: dict[str, tuple[str, str | None, dict]] = {
    "v1": ("sd1", "sd1", {}),
    "inpainting": ("sd1", "sd1", {"inpaint": True}),
    "v2": ("sd2", "sd2", {}),
    "inpainting_v2": ("sd2", "sd2", {"inpaint": True}),
    "xl_base": ("sdxl", "sdxl", {}),
    "xl_inpaint": ("sdxl", "sdxl", {"inpaint": True}),
    "playground-v2-5": ("sdxl", None, {}),
    "sd3": ("sd3", "sd3", {}),
    "sd35_medium": ("sd3", None, {}),
    "sd35_large": ("sd3", None, {}),
    "flux-dev": ("flux", "flux-dev", {}),
    "flux-schnell": ("flux", "flux-schnell", {}),
    "flux-fill": ("flux", None, {}),
    "flux-depth": ("flux", None, {}),
}


# ----------------------------------------------------------------------------------------------- hashing
_HASH_LOCK = threading.Lock()
_HASH_MEM: dict[str, str] = {}


def _hash_cache_path() -> Path:
    env = os.environ.get("DIFFUSION_STUDIO_HASH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "diffusion-studio" / "sha256-cache.json"


def _cache_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def file_sha256(path: str | os.PathLike, *, chunk: int = 1 << 22) -> str:
    """Streamed sha256 of a file, cached by (path, size, mtime) in memory and on disk."""
    path = Path(path)
    key = _cache_key(path)
    with _HASH_LOCK:
        if key in _HASH_MEM:
            return _HASH_MEM[key]
        disk = {}
        cp = _hash_cache_path()
        try:
            disk = json.loads(cp.read_text())
        except (OSError, ValueError):
            disk = {}
        if key in disk:
            _HASH_MEM[key] = disk[key]
            return disk[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASH_MEM[key] = digest
        try:
            cp = _hash_cache_path()
            cp.parent.mkdir(parents=True, exist_ok=True)
            try:
                disk = json.loads(cp.read_text())
            except (OSError, ValueError):
                disk = {}
            disk[key] = digest
            tmp = cp.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(disk))
            os.replace(tmp, cp)
        except OSError:  # read-only home etc.: memory cache only
            pass
    return digest


def weight_files(path: str | os.PathLike) -> list[Path]:
    """Weight files of a single file (itself) or a folder (sorted by relative path)."""
    p = Path(path)
    if p.is_file():
        return [p]
    return sorted((f for f in p.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES),
                  key=lambda f: f.relative_to(p).as_posix())


def content_hash(path: str | os.PathLike) -> str:
    """sha256 hex of the weights: for one file its plain sha256; for a folder, sha256 over
    ``relpath\\0sha256\\n`` of every weight file in sorted order."""
    p = Path(path)
    files = weight_files(p)
    if p.is_file():
        return file_sha256(p)
    if not files:
        raise ModelLoadError(f"no weight files found under {p}")
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(p).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- helpers
def apply_clip_skip_shim(pipe) -> None:
    """diffusers 0.42.1 reads ``text_encoder.text_model.final_layer_norm`` when clip_skip is set, but
    transformers >= 5.6 flattened CLIPTextModel (no ``.text_model``; diffusers#14124). Add an unregistered alias
    (not a submodule: state_dict / save_pretrained are unchanged)."""
    for name in ("text_encoder", "text_encoder_2"):
        te = getattr(pipe, name, None)
        if te is None or hasattr(te, "text_model") or not hasattr(te, "final_layer_norm"):
            continue
        object.__setattr__(te, "text_model", SimpleNamespace(final_layer_norm=te.final_layer_norm))


def clip_skip_supported(pipe) -> bool:
    te = getattr(pipe, "text_encoder", None)
    return te is not None and hasattr(te, "text_model")


def family_from_pipeline(pipe_or_class: Any, components: dict | None = None) -> str:
    name = pipe_or_class if isinstance(pipe_or_class, str) else type(pipe_or_class).__name__
    for fam, classes in (*_VIDEO_PIPELINES.items(), *_AUDIO_PIPELINES.items()):
        if name in classes:
            return fam
    if instruct_family_of_pipeline(name):
        return instruct_family_of_pipeline(name)
    if name.startswith("StableDiffusionXL"):
        return "sdxl"
    if name.startswith("StableDiffusion3"):
        return "sd3"
    if name.startswith("Flux") and not name.startswith("Flux2"):
        return "flux"
    if re.match(r"^StableDiffusion(Pipeline|Img2ImgPipeline|InpaintPipeline)$", name):
        if not isinstance(pipe_or_class, str):
            unet = getattr(pipe_or_class, "unet", None)
            xdim = getattr(getattr(unet, "config", None), "cross_attention_dim", None)
        else:
            xdim = (components or {}).get("cross_attention_dim")
        return "sd2" if xdim == 1024 else "sd1"
    return "other"


def folder_family(folder: Path) -> str:
    """The family a diffusers folder's model_index.json (and UNet width) names, or "musicgen" for a transformers
    MusicGen folder; "other" when it names none."""
    if not (folder / "model_index.json").is_file() and _musicgen_type(folder):
        return "musicgen"
    try:
        idx = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return "other"
    xdim = None
    try:
        xdim = json.loads((folder / "unet" / "config.json").read_text()).get("cross_attention_dim")
    except (OSError, ValueError, AttributeError):  # missing, unreadable, or not a JSON object
        pass
    return family_from_pipeline(idx.get("_class_name", ""), {"cross_attention_dim": xdim})


def _first_line(exc: BaseException) -> str:
    """A library's message reduced to one line: tracebacks and config dumps stay in the log."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def _refuse_pickle(path: Path, what: str = "checkpoint") -> None:
    raise UnsafeCheckpoint(
        f"refusing to load the pickle {what} {path}: pickle files ({', '.join(PICKLE_SUFFIXES)}) can run arbitrary "
        f"code when loaded. Prefer a .safetensors version; if you trust the file, pass allow_pickle=True "
        f"(CLI: --allow-unsafe-pickle).")


def _looks_like_path(s: str) -> bool:
    return (s.startswith(("/", "./", "../", "~", "\\")) or os.sep in s.rstrip("/").split("/", 1)[-1]
            or s.endswith(WEIGHT_SUFFIXES) or (len(s) > 1 and s[1] == ":") or s.count("/") > 1)


def _not_available(model_id: str, reason: str = "") -> ModelNotAvailable:
    return ModelNotAvailable(
        f"model {model_id!r} is not available offline{': ' + reason if reason else ''}. To provide it: on a connected "
        f"machine run `huggingface-cli download {model_id}` (then copy the folder here and pass its path, or point "
        f"HF_HOME at that cache), or register a local diffusers folder / .safetensors file path instead of the id.")


def _check_family(family: str | None) -> None:
    if family is not None and family not in FAMILIES + MEDIA_FAMILY_NAMES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES + MEDIA_FAMILY_NAMES)}")


def _musicgen_type(folder: Path) -> str | None:
    """"musicgen" / "musicgen_melody" when a folder's config.json is a transformers MusicGen checkpoint."""
    cfg = _read_json(Path(folder) / "config.json")
    t = (cfg or {}).get("model_type")
    return t if t in ("musicgen", "musicgen_melody") else None


def _not_a_model_folder(path: Path) -> ModelLoadError:
    return ModelLoadError(f"{path} is a folder but not a diffusers pipeline (no model_index.json) nor a MusicGen "
                          "checkpoint (config.json with model_type musicgen)")


# ----------------------------------------------------------------------------------------------- model
@dataclass
class LoadedModel:
    pipe: Any
    family: str
    source: str
    content_hash: str
    device: torch.device
    dtype: torch.dtype
    kind: str = "folder"  # "folder" | "hub" | "single_file" | "pipeline"
    base_scheduler_config: dict = field(default_factory=dict)
    _pipes: dict = field(default_factory=dict, repr=False)
    _lora_names: list = field(default_factory=list, repr=False)
    _lora_weights: list = field(default_factory=list, repr=False)  # one per name in _lora_names
    _memory: dict = field(default_factory=dict, repr=False)
    motion_adapter_source: str | None = None  # AnimateDiff built from an SD base + a separate adapter

    @property
    def modality(self) -> str:
        """"video" / "audio" for the video / audio families (pipelines.video.VIDEO_FAMILIES,
        pipelines.audio.AUDIO_FAMILIES), else "image"."""
        if self.family in VIDEO_FAMILY_NAMES:
            return "video"
        return "audio" if self.family in AUDIO_FAMILY_NAMES else "image"

    def __post_init__(self):
        # MusicGen samples tokens: no scheduler, nothing to record
        if not self.base_scheduler_config and getattr(self.pipe, "scheduler", None) is not None:
            # drop diffusers' "_use_default_values" so an in-memory pipeline builds the same samplers as the same
            # pipeline saved and re-loaded (from_config would otherwise swap in the target class's defaults)
            self.base_scheduler_config = {k: v for k, v in self.pipe.scheduler.config.items()
                                          if k != "_use_default_values"}
        apply_clip_skip_shim(self.pipe)

    @property
    def inpaint_unet(self) -> bool:
        unet = getattr(self.pipe, "unet", None)
        return bool(unet is not None and unet.config.in_channels == 9)

    def pipeline_for(self, mode: str):
        """The pipeline for ``mode`` built with ``from_pipe`` (shared components, never reloaded); cached."""
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

        if self.modality == "video":
            if mode in MODES:
                raise ValueError(f"{mode} is an image mode; this is a {self.family} video model")
            from .video import video_pipeline_for

            return video_pipeline_for(self, mode)
        if self.modality == "audio":
            if mode in MODES + VIDEO_MODES:
                raise ValueError(f"{mode} is not an audio mode; this is a {self.family} audio model")
            from .audio import audio_pipeline_for

            return audio_pipeline_for(self, mode)
        if mode in AUDIO_MODES:
            raise ValueError(f"{mode} needs an audio model; this is a {self.family} image model")
        if mode in VIDEO_MODES:
            raise ValueError(f"{mode} needs a video model; this is a {self.family} image model")
        if (mode == "instruct") != (self.family in INSTRUCT_FAMILY_NAMES):
            raise ValueError(f"{self.family} models do not support {mode}" if mode == "instruct" else
                             f"{self.family} is an instruction-editing model: it runs instruct edits only")
        if mode == "instruct":
            return self.pipe  # the checkpoint's own pipeline is the editor
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        key = "inpaint" if mode == "outpaint" else mode
        if key in self._pipes:
            return self._pipes[key]
        auto = {"txt2img": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image,
                "inpaint": AutoPipelineForInpainting}[key]
        if self.inpaint_unet and key != "inpaint":
            raise ValueError(f"{mode} needs a regular model; this is a 9-channel inpainting model "
                             "(run_image maps txt2img/img2img onto inpainting for it)")
        try:
            p = auto.from_pipe(self.pipe)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{type(self.pipe).__name__} ({self.family}) does not support {mode}: {e}") from e
        apply_clip_skip_shim(p)
        self._pipes[key] = p
        return p

    def supports(self, mode: str) -> bool:
        if self.modality == "video":
            from .video import video_family_for

            return mode in video_family_for(self).modes
        if self.modality == "audio":
            from .audio import audio_family_for

            return mode in audio_family_for(self).modes
        if mode == "instruct" or self.family in INSTRUCT_FAMILY_NAMES:
            return mode == "instruct" and self.family in INSTRUCT_FAMILY_NAMES
        if mode not in MODES:
            return False
        if self.inpaint_unet:
            return True  # all modes through the inpaint pipeline
        try:
            self.pipeline_for(mode)
            return True
        except ValueError:
            return False


# ----------------------------------------------------------------------------------------------- tokenizers
def _tokenizer_search_dirs(tokenizers_dir) -> list[Path]:
    dirs: list[Path] = []
    if tokenizers_dir:
        items = tokenizers_dir if isinstance(tokenizers_dir, (list, tuple)) else str(tokenizers_dir).split(os.pathsep)
        dirs += [Path(os.path.expanduser(str(d))) for d in items if str(d)]
    env = os.environ.get(TOKENIZERS_ENV)
    if env:
        dirs += [Path(os.path.expanduser(d)) for d in env.split(os.pathsep) if d]
    return dirs


def _is_tokenizer_dir(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in ("tokenizer.json", "vocab.json", "spiece.model",
                                                          "tokenizer_config.json"))


def find_tokenizer(family: str, component: str, cls_name: str = "CLIPTokenizer", tokenizers_dir=None):
    """Load the ``component`` tokenizer for ``family`` from a local folder or the offline HF cache, else None."""
    import transformers

    cls = getattr(transformers, cls_name, None) or transformers.AutoTokenizer
    cands = TOKENIZERS.get(family, {}).get(component, [])
    for d in _tokenizer_search_dirs(tokenizers_dir):
        paths = [d / family / component, d / component]
        for c in cands:
            repo, _, sub = c.partition(":")
            for base in (d / repo, d / repo.split("/")[-1], d / repo.replace("/", "--")):
                paths.append(base / sub if sub else base)
        for p in paths:
            if _is_tokenizer_dir(p):
                tok = cls.from_pretrained(str(p))
                if len(tok) > 2:
                    return tok
    # the offline HF cache: resolve the snapshot folder first -- transformers 5 tokenizer classes
    # "load" a missing repo offline as an empty 2-token tokenizer instead of raising.
    from huggingface_hub import snapshot_download

    for c in cands:
        repo, _, sub = c.partition(":")
        try:
            snap = Path(snapshot_download(repo, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached
            continue
        p = snap / sub if sub else snap
        if _is_tokenizer_dir(p):
            tok = cls.from_pretrained(str(p))
            if len(tok) > 2:
                return tok
    return None


def _missing_tokenizer(family: str, component: str) -> MissingTokenizer:
    cands = TOKENIZERS.get(family, {}).get(component, ["?"])
    repo, _, sub = cands[0].partition(":")
    where = f"{repo}/{sub}" if sub else repo
    return MissingTokenizer(
        f"the {family} checkpoint needs the tokenizer {cands[0].replace(':', ' subfolder ')!r} "
        f"(component {component!r}) and it is not available offline. Provide it: on a connected machine run "
        f"`huggingface-cli download {repo}` and set HF_HOME to that cache, or copy the tokenizer files to "
        f"DIR/{where} (or DIR/{family}/{component}) and pass tokenizers_dir=DIR or set {TOKENIZERS_ENV}=DIR.")


# ----------------------------------------------------------------------------------------------- single file
class _Shape:
    def __init__(self, shape):
        self.shape = tuple(shape)


def read_checkpoint_shapes(path: Path, allow_pickle: bool = False) -> dict[str, _Shape]:
    """Key -> object with ``.shape``, read without loading tensors (safetensors header only)."""
    if path.suffix in SAFE_SUFFIXES:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return {k: _Shape(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception:  # noqa: BLE001 - safetensors raises its own SafetensorError (header too large, ...)
            raise ModelLoadError(f"{path.name} is not a valid .safetensors file (corrupt, truncated or another "
                                 "format)") from None
    if not allow_pickle:
        _refuse_pickle(path)
    sd = torch.load(str(path), map_location="cpu", weights_only=False, mmap=False)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return {k: _Shape(v.shape) for k, v in sd.items() if hasattr(v, "shape")}


def detect_single_file(path: str | os.PathLike, allow_pickle: bool = False) -> tuple[str, str, str | None, dict]:
    """(diffusers model type, family, shipped config name or None, patches) from the checkpoint keys."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    shapes = read_checkpoint_shapes(Path(path), allow_pickle)
    model_type = infer_diffusers_model_type(shapes)
    family, cfg, patches = _MODEL_TYPES.get(model_type, ("other", None, {}))
    return model_type, family, cfg, patches


def _prepared_config(cfg_dir: Path, patches: dict, tmp_root: Path) -> Path:
    if not patches:
        return cfg_dir
    out = tmp_root / "config"
    shutil.copytree(cfg_dir, out)
    if patches.get("inpaint"):
        idx = json.loads((out / "model_index.json").read_text())
        idx["_class_name"] = idx["_class_name"].replace("Pipeline", "InpaintPipeline")
        (out / "model_index.json").write_text(json.dumps(idx, indent=2))
        ucfg = json.loads((out / "unet" / "config.json").read_text())
        ucfg["in_channels"] = 9
        (out / "unet" / "config.json").write_text(json.dumps(ucfg, indent=2))
    return out


def _load_single_file(path: Path, *, family, dtype, allow_pickle, single_file_config, tokenizers_dir):
    import diffusers

    if path.suffix in PICKLE_SUFFIXES and not allow_pickle:
        _refuse_pickle(path)
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ModelLoadError(f"{path}: not a checkpoint file (expected {', '.join(WEIGHT_SUFFIXES)})")
    model_type, det_family, shipped, patches = detect_single_file(path, allow_pickle)
    family = family or det_family
    if single_file_config:
        cfg_dir = Path(single_file_config)
        patches = {}
    elif shipped:
        cfg_dir = CONFIG_DIR / shipped
    else:
        raise ModelLoadError(
            f"{path.name}: detected checkpoint type {model_type!r} (family {family}) but no config is shipped for "
            f"it; pass single_file_config=<diffusers folder with model_index.json and component configs>.")
    if not (cfg_dir / "model_index.json").is_file():
        raise ModelLoadError(f"single_file_config {cfg_dir} has no model_index.json")
    with tempfile.TemporaryDirectory(prefix="ds-sfcfg-") as tmp:
        cfg_dir = _prepared_config(cfg_dir, patches, Path(tmp))
        idx = json.loads((cfg_dir / "model_index.json").read_text())
        cls = getattr(diffusers, idx["_class_name"])
        kwargs: dict[str, Any] = {}
        for comp, spec in idx.items():
            if not comp.startswith("tokenizer") or not isinstance(spec, list) or spec[0] is None:
                continue
            if _is_tokenizer_dir(cfg_dir / comp):
                continue
            tok = find_tokenizer(family, comp, spec[1], tokenizers_dir)
            if tok is None:
                raise _missing_tokenizer(family, comp)
            kwargs[comp] = tok
        if "safety_checker" in idx:
            kwargs["safety_checker"] = None
        try:
            pipe = cls.from_single_file(str(path), config=str(cfg_dir), local_files_only=True, dtype=dtype,
                                        **kwargs)
        except ModelLoadError:
            raise
        except Exception as e:  # noqa: BLE001 - diffusers raises OSError/ValueError/SingleFileComponentError/...
            raise ModelLoadError(f"could not load {path.name} as {idx['_class_name']} ({model_type}): {_first_line(e)}") from e
    return pipe, family


# ----------------------------------------------------------------------------------------------- entry point
def _check_folder_weights(folder: Path, allow_pickle: bool) -> bool:
    """True when the folder has safetensors weights; refuses pickle-only folders unless allowed."""
    files = weight_files(folder)
    safe = [f for f in files if f.suffix in SAFE_SUFFIXES]
    pick = [f for f in files if f.suffix in PICKLE_SUFFIXES]
    safe_dirs = {f.parent for f in safe}
    unsafe_only = [f for f in pick if f.parent not in safe_dirs]
    if unsafe_only and not allow_pickle:
        _refuse_pickle(unsafe_only[0], "weights")
    return not unsafe_only


def _load_folder(folder: Path, family, device, dtype, allow_pickle: bool, error):
    """A diffusers folder (local, or a hub snapshot) -> (pipe, family, device, dtype); `error(exc)` builds the
    exception a failed load raises, so each caller names the source the way the user gave it."""
    from diffusers import DiffusionPipeline

    use_safe = _check_folder_weights(folder, allow_pickle)
    fam = family or folder_family(folder)
    dev, dt = _pick(device, dtype, fam)
    try:
        pipe = DiffusionPipeline.from_pretrained(str(folder), dtype=dt, local_files_only=True,
                                                 use_safetensors=True if use_safe else None)
    except (OSError, ValueError) as e:
        raise error(e) from e
    return pipe, fam, dev, dt


# ----------------------------------------------------------------------------------------------- motion adapters
def _motion_adapter_path(adapter, *, allow_pickle: bool, local_files_only: bool | None,
                         download: bool = True) -> Path | None:
    """The file or folder of a motion adapter source (a file, a MotionAdapter folder, or a hub id from the
    offline cache), checked like model sources; None for a hub id when ``download`` is False."""
    src = os.fspath(adapter)
    path = Path(os.path.expanduser(src))
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES and not allow_pickle:
            _refuse_pickle(path, "motion adapter")
        if path.suffix not in WEIGHT_SUFFIXES:
            raise ModelLoadError(f"{path}: not a motion adapter weights file (expected {', '.join(WEIGHT_SUFFIXES)})")
        return path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a folder but not a diffusers MotionAdapter (no config.json)")
        _check_folder_weights(path, allow_pickle)
        return path
    if _looks_like_path(src):
        raise ModelNotAvailable(f"motion adapter: no such file or directory: {src!r} (give a MotionAdapter folder, "
                                f"a .safetensors file, or a hub id like 'guoyww/animatediff-motion-adapter-v1-5-2')")
    if not re.match(r"^[\w.\-]+/[\w.\-]+$", src):
        raise ModelNotAvailable(f"motion adapter {src!r} is neither an existing path nor a hub id of the form "
                                "'owner/name'")
    if not download:
        return None
    from huggingface_hub import snapshot_download

    lfo = True if local_files_only is None else local_files_only
    patterns = None if allow_pickle else ["*.json", "*.safetensors"]
    try:
        folder = Path(snapshot_download(src, local_files_only=lfo, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises several kinds
        raise _not_available(src, "not in the local Hugging Face cache" if lfo else _first_line(e)) from e
    if not (folder / "config.json").is_file():
        raise _not_available(src, "the cached snapshot has no config.json")
    _check_folder_weights(folder, allow_pickle)
    return folder


def _load_motion_adapter(path: Path, name: str, dtype):
    """(MotionAdapter, sha256 of its weights)."""
    from diffusers import MotionAdapter

    try:
        if path.is_file():
            adapter = MotionAdapter.from_single_file(str(path), torch_dtype=dtype, local_files_only=True)
            return adapter, file_sha256(path)
        use_safe = any(f.suffix in SAFE_SUFFIXES for f in weight_files(path))
        adapter = MotionAdapter.from_pretrained(str(path), dtype=dtype, local_files_only=True,
                                                use_safetensors=True if use_safe else None)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"could not load motion adapter {name}: {_first_line(e)}") from e
    return adapter, content_hash(path)


def _with_motion_adapter(pipe, chash: str, base_src: str, adapter, *, allow_pickle, local_files_only, dtype):
    """An SD1.5 pipeline + motion adapter -> (AnimateDiffPipeline, combined hash); an AnimateDiff pipeline
    (a complete saved folder) passes through unchanged."""
    from diffusers import AnimateDiffPipeline

    name = type(pipe).__name__
    if name in _VIDEO_PIPELINES["animatediff"]:
        if adapter is not None:
            raise ValueError(f"{base_src} is already an AnimateDiff pipeline with its own motion adapter; to use "
                             f"another adapter, load its SD1.5 base with motion_adapter=")
        return pipe, chash
    if name != "StableDiffusionPipeline" or family_from_pipeline(pipe) != "sd1":
        raise ValueError(f"AnimateDiff needs an SD1.5 base (StableDiffusionPipeline); {base_src} is a {name}")
    if adapter is None:
        raise ValueError(f"{base_src} is an SD1.5 image model: AnimateDiff needs motion_adapter=<a MotionAdapter "
                         "folder or hub id, e.g. guoyww/animatediff-motion-adapter-v1-5-2>")
    path = _motion_adapter_path(adapter, allow_pickle=allow_pickle, local_files_only=local_files_only)
    motion, ahash = _load_motion_adapter(path, os.fspath(adapter), dtype)
    try:
        anim = AnimateDiffPipeline.from_pipe(pipe, motion_adapter=motion)
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        raise ModelLoadError(f"motion adapter {os.fspath(adapter)} does not fit the base {base_src}: "
                             f"{_first_line(e)}") from e
    # the clip depends on both weight sets: a new adapter on the same base is a different model
    combined = hashlib.sha256(f"{chash}\0motion_adapter\0{ahash}".encode()).hexdigest()
    return anim, combined


def _hub_is_musicgen(src: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(src, "config.json")
    except Exception:  # noqa: BLE001 - a broken cache: the download reports it
        return False
    cfg = _read_json(hit) if isinstance(hit, str) else None
    return bool(cfg and cfg.get("model_type") in ("musicgen", "musicgen_melody"))


def _load_musicgen(folder: Path, family, device, dtype, allow_pickle: bool, error):
    """A transformers MusicGen folder -> (MusicGenPipeline, "musicgen", device, dtype)."""
    from .audio import MusicGenPipeline

    if family not in (None, "musicgen"):
        raise ModelLoadError(f"{folder} is a MusicGen checkpoint, not a {family} model")
    use_safe = _check_folder_weights(folder, allow_pickle)
    dev, dt = _pick(device, dtype, "musicgen")
    try:
        pipe = MusicGenPipeline.from_pretrained(folder, dtype=dt, use_safetensors=True if use_safe else None)
    except (OSError, ValueError, KeyError) as e:
        raise error(e) from e
    return pipe, "musicgen", dev, dt


def _check_family_matches(pipe, family: str | None, src: str) -> None:
    """A video family named for an image pipeline (or the reverse) cannot run: refuse at load time."""
    if family is None:
        return
    actual = family_from_pipeline(pipe)
    if (family in MEDIA_FAMILY_NAMES or actual in MEDIA_FAMILY_NAMES) and actual != family:
        raise ModelLoadError(f"{src} is a {type(pipe).__name__} ({actual}), not a {family} model")


def _pick(device, dtype, family):
    # the video transformers are published in bf16: treat them like flux/sd3 in the device's dtype choice
    return pick_device_dtype(device, dtype, "flux" if family in _VIDEO_BF16 else family)


@dataclass(frozen=True)
class SourceInfo:
    """What is known about a model source without loading its weights (see :func:`inspect_source`)."""

    kind: str  # "folder" | "single_file" | "hub"
    family: str | None  # None: only known after loading
    scheduler_config: dict | None  # the config the pipeline's scheduler will be built from; None: not on disk
    vae_scale_factor: int | None = None


def _read_json(path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _vae_scale(vae_config: dict | None) -> int | None:
    cfg = vae_config or {}
    cls = cfg.get("_class_name", "")
    if cls == "AutoencoderKLWan":  # no block list; 2.2's 16x VAE states its factor
        return int(cfg.get("scale_factor_spatial") or 2 ** len(cfg.get("temperal_downsample") or [0, 0, 0]))
    if cls == "AutoencoderKLLTXVideo":  # patchified input, then one 2x per spatio-temporal stage
        return int(cfg.get("spatial_compression_ratio") or
                   cfg.get("patch_size", 4) * 2 ** sum(bool(x) for x in cfg.get("spatio_temporal_scaling") or []))
    blocks = cfg.get("block_out_channels")
    return 2 ** (len(blocks) - 1) if isinstance(blocks, list) and blocks else None


def inspect_source(source, *, family: str | None = None, allow_pickle: bool = False,
                   motion_adapter=None) -> SourceInfo:
    """Check ``source`` the way :func:`load_model` would and read its family and scheduler config, without
    loading weights (a few small JSON files, a safetensors header): a request that cannot run on this model
    fails in milliseconds instead of after a load. Raises the same errors as ``load_model``. Hub ids are
    looked up in the local cache only; what is not cached is left None (the load reports it).
    ``motion_adapter`` (AnimateDiff from an SD1.5 base) is checked the same way when it is a path."""
    _check_family(family)
    if motion_adapter is not None:
        _motion_adapter_path(motion_adapter, allow_pickle=allow_pickle, local_files_only=True, download=False)
        family = family or "animatediff"
    src = os.fspath(source)
    path = Path(os.path.expanduser(src))
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES and not allow_pickle:
            _refuse_pickle(path)
        if path.suffix not in WEIGHT_SUFFIXES:
            raise ModelLoadError(f"{path}: not a checkpoint file (expected {', '.join(WEIGHT_SUFFIXES)})")
        if path.suffix not in SAFE_SUFFIXES:
            return SourceInfo("single_file", family, None)  # reading a pickle's keys means loading it
        _, det_family, shipped, _ = detect_single_file(path)
        cfg_dir = CONFIG_DIR / shipped if shipped else None
        return SourceInfo("single_file", family or det_family,
                          _read_json(cfg_dir / "scheduler" / "scheduler_config.json") if cfg_dir else None,
                          _vae_scale(_read_json(cfg_dir / "vae" / "config.json")) if cfg_dir else None)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            if not _musicgen_type(path):
                raise _not_a_model_folder(path)
            _check_folder_weights(path, allow_pickle)
            return SourceInfo("folder", family or "musicgen", None)
        _check_folder_weights(path, allow_pickle)
        return SourceInfo("folder", family or folder_family(path),
                          _read_json(path / "scheduler" / "scheduler_config.json"),
                          _vae_scale(_read_json(path / "vae" / "config.json")))
    if _looks_like_path(src):
        raise ModelNotAvailable(f"no such file or directory: {src!r} (give an existing .safetensors file, a "
                                f"diffusers folder, or a hub id like 'owner/name')")
    if not re.match(r"^[\w.\-]+/[\w.\-]+$", src):
        raise ModelNotAvailable(f"{src!r} is neither an existing path nor a hub id of the form 'owner/name'")
    try:
        from huggingface_hub import try_to_load_from_cache

        def cached(name: str) -> dict | None:
            hit = try_to_load_from_cache(src, name)
            return _read_json(hit) if isinstance(hit, str) else None

        index, sched, vae = cached("model_index.json"), cached("scheduler/scheduler_config.json"), \
            cached("vae/config.json")
        unet = cached("unet/config.json") if index and family is None else None
        top = cached("config.json") if not index else None
    except Exception:  # noqa: BLE001 - a broken cache: the load reports it properly
        index = sched = vae = unet = top = None
    if top and top.get("model_type") in ("musicgen", "musicgen_melody"):
        return SourceInfo("hub", family or "musicgen", None)
    fam = family
    if fam is None and index:
        fam = family_from_pipeline(str(index.get("_class_name", "")),
                                   {"cross_attention_dim": (unet or {}).get("cross_attention_dim")})
    return SourceInfo("hub", fam, sched, _vae_scale(vae))


def load_model(source, *, family: str | None = None, device=None, dtype=None, allow_pickle: bool = False,
               local_files_only: bool | None = None, single_file_config=None, tokenizers_dir=None,
               motion_adapter=None) -> LoadedModel:
    """Load ``source`` (hub id, diffusers folder, or single checkpoint file) into a :class:`LoadedModel`.

    Hub ids are looked up in the local HF cache only unless ``local_files_only=False`` is passed.
    Video pipelines load the same way (family from model_index.json). AnimateDiff also loads from an SD1.5
    base (any of the three source kinds) plus ``motion_adapter`` (a MotionAdapter folder, file or hub id).
    """
    from diffusers import DiffusionPipeline

    _check_family(family)
    src = os.fspath(source)
    path = Path(os.path.expanduser(src))
    if path.is_file():
        base_family = None if family in VIDEO_FAMILY_NAMES else family  # a single file is an image base
        fam_guess = base_family
        if fam_guess is None and path.suffix in SAFE_SUFFIXES:
            fam_guess = detect_single_file(path)[1]
        dev, dt = _pick(device, dtype, fam_guess)
        pipe, fam = _load_single_file(path, family=base_family, dtype=dt, allow_pickle=allow_pickle,
                                      single_file_config=single_file_config, tokenizers_dir=tokenizers_dir)
        chash, kind = content_hash(path), "single_file"
    elif path.is_dir() and not (path / "model_index.json").is_file():
        if not _musicgen_type(path):
            raise _not_a_model_folder(path)
        pipe, fam, dev, dt = _load_musicgen(
            path, family, device, dtype, allow_pickle,
            lambda e: ModelLoadError(f"could not load MusicGen folder {path}: {_first_line(e)}"))
        chash, kind = content_hash(path), "folder"
    elif path.is_dir():
        pipe, fam, dev, dt = _load_folder(
            path, family, device, dtype, allow_pickle,
            lambda e: ModelLoadError(f"could not load diffusers folder {path}: {_first_line(e)}"))
        chash, kind = content_hash(path), "folder"
    elif _looks_like_path(src):
        raise ModelNotAvailable(f"no such file or directory: {src!r} (give an existing .safetensors file, a "
                                f"diffusers folder, or a hub id like 'owner/name')")
    else:
        if not re.match(r"^[\w.\-]+/[\w.\-]+$", src):
            raise ModelNotAvailable(f"{src!r} is neither an existing path nor a hub id of the form 'owner/name'")
        lfo = True if local_files_only is None else local_files_only
        try:
            if family == "musicgen" or _hub_is_musicgen(src):
                # a transformers repo: DiffusionPipeline.download insists on model_index.json
                from huggingface_hub import snapshot_download

                patterns = None if allow_pickle else ["*.json", "*.safetensors", "*.model", "*.txt"]
                folder = Path(snapshot_download(src, local_files_only=lfo, allow_patterns=patterns))
            else:
                folder = Path(DiffusionPipeline.download(src, local_files_only=lfo))
        except Exception as e:  # noqa: BLE001 - huggingface_hub raises several kinds
            raise _not_available(src, "not in the local Hugging Face cache" if lfo else _first_line(e)) from e
        loader = _load_musicgen if _musicgen_type(folder) else _load_folder
        pipe, fam, dev, dt = loader(folder, family, device, dtype, allow_pickle,
                                    lambda e: _not_available(src, _first_line(e)))
        chash, kind = content_hash(folder), "hub"
    if motion_adapter is not None or family == "animatediff":
        pipe, chash = _with_motion_adapter(pipe, chash, src, motion_adapter, allow_pickle=allow_pickle,
                                           local_files_only=local_files_only, dtype=dt)
        family = fam = "animatediff"
    _check_family_matches(pipe, family, src)
    if family is None:
        fam = family_from_pipeline(pipe) if fam in (None, "other") else fam
    pipe.to(dev)
    return LoadedModel(pipe=pipe, family=fam, source=src, content_hash=chash, device=dev, dtype=dt, kind=kind,
                       motion_adapter_source=None if motion_adapter is None else os.fspath(motion_adapter))


def from_pipeline(pipe, *, family: str | None = None, source: str = "<in-memory>", device=None,
                  dtype=None) -> LoadedModel:
    """Wrap an already-built pipeline (tests, tiny models). content_hash is over the in-memory state dicts."""
    _check_family(family)
    _check_family_matches(pipe, family, source)
    fam = family or family_from_pipeline(pipe)
    dev, dt = _pick(device, dtype or torch.float32, fam)
    h = hashlib.sha256()
    for name, comp in sorted(pipe.components.items()):
        if isinstance(comp, torch.nn.Module):
            for k, v in sorted(comp.state_dict().items()):
                h.update(f"{name}.{k}".encode())
                h.update(v.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    pipe.to(dev)
    if pipe.dtype != dt:
        pipe.to(dtype=dt)
    return LoadedModel(pipe=pipe, family=fam, source=source, content_hash=h.hexdigest(), device=dev, dtype=dt,
                       kind="pipeline")
