"""ControlNet for SD1.5/SD2 (StableDiffusionControlNet*), SDXL (StableDiffusionXLControlNet*) and Flux
(FluxControlNet*): loading ControlNet weights offline, building the family's ControlNet pipeline for a mode
from the loaded base (``from_pipe``: shared components), and the call arguments of one or several units.

``pipelines.image.run_image`` runs controlled generations through here, so samplers, seeds, callbacks and
inpaint overlays stay the same code as uncontrolled ones.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from .loading import (PICKLE_SUFFIXES, SAFE_SUFFIXES, ModelLoadError, ModelNotAvailable, _check_folder_weights,
                      _first_line, _looks_like_path, _not_available, _read_json, _refuse_pickle, content_hash,
                      file_sha256)

# family -> mode -> diffusers pipeline class
CONTROL_PIPELINES: dict[str, dict[str, str]] = {
    "sd1": {"txt2img": "StableDiffusionControlNetPipeline", "img2img": "StableDiffusionControlNetImg2ImgPipeline",
            "inpaint": "StableDiffusionControlNetInpaintPipeline"},
    "sdxl": {"txt2img": "StableDiffusionXLControlNetPipeline",
             "img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
             "inpaint": "StableDiffusionXLControlNetInpaintPipeline"},
    "flux": {"txt2img": "FluxControlNetPipeline", "img2img": "FluxControlNetImg2ImgPipeline",
             "inpaint": "FluxControlNetInpaintPipeline"},
}
CONTROL_PIPELINES["sd2"] = CONTROL_PIPELINES["sd1"]  # SD 2.x ControlNets run in the same pipelines
GUESS_MODE_FAMILIES = ("sd1", "sd2", "sdxl")  # Flux's ControlNet pipelines have no guess mode
_MODEL_CLASSES = {"sd1": ("ControlNetModel",), "sd2": ("ControlNetModel",), "sdxl": ("ControlNetModel",),
                  "flux": ("FluxControlNetModel",)}


@dataclass
class ControlNet:
    """Loaded ControlNet weights: ``.model`` (a diffusers ControlNetModel / FluxControlNetModel)."""

    model: torch.nn.Module
    source: str
    content_hash: str


@dataclass
class ControlSpec:
    """One unit of a controlled generation, as the pipeline call takes it."""

    net: ControlNet
    image: "Image.Image"  # noqa: F821 - the control map at the output size
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0


def supports_control(family: Optional[str]) -> bool:
    return family in CONTROL_PIPELINES


def _controlnet_folder(source: str, *, allow_pickle: bool) -> Path:
    """The local folder (or single file) of a ControlNet source: a path, or a hub id in the offline cache."""
    path = Path(os.path.expanduser(source))
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES and not allow_pickle:
            _refuse_pickle(path, "ControlNet")
        return path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a folder but not a diffusers ControlNet (no config.json)")
        _check_folder_weights(path, allow_pickle)
        return path
    if _looks_like_path(source):
        raise ModelNotAvailable(f"ControlNet: no such file or directory: {source!r} (give a ControlNet folder or a "
                                "hub id like 'lllyasviel/control_v11p_sd15_canny')")
    if not re.match(r"^[\w.\-]+/[\w.\-]+$", source):
        raise ModelNotAvailable(f"ControlNet {source!r} is neither an existing path nor a hub id 'owner/name'")
    from huggingface_hub import snapshot_download

    patterns = None if allow_pickle else ["*.json", "*.safetensors"]
    try:
        folder = Path(snapshot_download(source, local_files_only=True, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises several kinds
        raise _not_available(source, "not in the local Hugging Face cache") from e
    if not (folder / "config.json").is_file():
        raise _not_available(source, "the cached snapshot has no config.json")
    _check_folder_weights(folder, allow_pickle)
    return folder


def check_controlnet_source(source: str, family: str, *, allow_pickle: bool = False) -> None:
    """What :func:`load_controlnet` would refuse, without loading weights (a path's config, a hub id's cache)."""
    if not supports_control(family):
        raise ValueError(f"ControlNet is not available for {family} models (ControlNet families: "
                         f"{', '.join(CONTROL_PIPELINES)})")
    where = _controlnet_folder(source, allow_pickle=allow_pickle)
    if where.is_dir():
        cls = (_read_json(where / "config.json") or {}).get("_class_name")
        if cls not in _MODEL_CLASSES[family]:
            raise ModelLoadError(f"ControlNet {source} is a {cls or 'unknown'} model; a {family} base needs "
                                 f"{' or '.join(_MODEL_CLASSES[family])}")


_cache: "OrderedDict[tuple, ControlNet]" = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 4  # ControlNets are ~1.4 GB (SD1.5) to 3+ GB (Flux): keep a few, not all


def load_controlnet(source, *, family: str, device=None, dtype=None, allow_pickle: bool = False) -> ControlNet:
    """Load ControlNet weights for a ``family`` base from a folder, a ``.safetensors`` file (SD1/SDXL) or a
    hub id in the offline cache; cached (a few), so a batch or a job reuses them."""
    import diffusers

    src = os.fspath(source)
    check_controlnet_source(src, family, allow_pickle=allow_pickle)
    key = (src, family, str(device), str(dtype))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    where = _controlnet_folder(src, allow_pickle=allow_pickle)
    cls = getattr(diffusers, _MODEL_CLASSES[family][0])
    try:
        if where.is_file():
            model = cls.from_single_file(str(where), torch_dtype=dtype, local_files_only=True)
            chash = file_sha256(where)
        else:
            use_safe = any(f.suffix in SAFE_SUFFIXES for f in where.rglob("*"))
            model = cls.from_pretrained(str(where), torch_dtype=dtype, local_files_only=True,
                                        use_safetensors=True if use_safe else None)
            chash = content_hash(where)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"could not load ControlNet {src}: {_first_line(e)}") from e
    if device is not None:
        model.to(device)
    net = ControlNet(model.eval(), src, chash)
    with _cache_lock:
        _cache[key] = net
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return net


def from_module(model: torch.nn.Module, source: str = "<in-memory>") -> ControlNet:
    """Wrap a built ControlNet (tests); content hash over its state dict."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return ControlNet(model.eval(), source, h.hexdigest())


def check_fits(base_family: str, pipe, net: ControlNet) -> None:
    """A ControlNet made for another base fails deep inside the UNet with a shape error: say so first."""
    cfg = net.model.config
    if base_family == "flux":
        tr = getattr(pipe, "transformer", None)
        pairs = [("joint_attention_dim", getattr(tr.config, "joint_attention_dim", None)),
                 ("in_channels", getattr(tr.config, "in_channels", None))]
    else:
        unet = getattr(pipe, "unet", None)
        pairs = [("cross_attention_dim", getattr(unet.config, "cross_attention_dim", None)),
                 ("addition_embed_type", getattr(unet.config, "addition_embed_type", None))]
    for name, want in pairs:
        got = getattr(cfg, name, None) if not isinstance(cfg, dict) else cfg.get(name)
        if want is not None and got != want:
            raise ValueError(f"ControlNet {net.source} does not fit this {base_family} model ({name} {got} vs "
                             f"{want}): it was made for another base model family")


def _config(source: str, name: str) -> Optional[dict]:
    """A component config from a local folder or the offline hub cache, without loading anything."""
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        return _read_json(path / name)
    if path.exists() or not re.match(r"^[\w.\-]+/[\w.\-]+$", source):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(source, name)
    except Exception:  # noqa: BLE001 - a broken cache: the load reports it
        return None
    return _read_json(hit) if isinstance(hit, str) else None


def check_fits_on_disk(base_source: str, controlnet: str, family: str) -> None:
    """`check_fits` from the configs on disk (base folder / cache and the ControlNet's), before either loads;
    silent when a config is not on disk (the load-time check still runs)."""
    base_cfg = _config(os.fspath(base_source), "transformer/config.json" if family == "flux" else "unet/config.json")
    net_cfg = _config(os.fspath(controlnet), "config.json")
    if not base_cfg or not net_cfg:
        return
    keys = ("joint_attention_dim", "in_channels") if family == "flux" else ("cross_attention_dim",
                                                                            "addition_embed_type")
    for key in keys:
        if base_cfg.get(key) is not None and net_cfg.get(key) != base_cfg.get(key):
            raise ValueError(f"ControlNet {controlnet} does not fit this {family} model ({key} {net_cfg.get(key)} "
                             f"vs {base_cfg.get(key)}): it was made for another base model family")


def control_pipeline(pipe, base_family: str, mode: str, units: Sequence[ControlSpec]):
    """The family's ControlNet pipeline for ``mode`` (txt2img | img2img | inpaint) sharing ``pipe``'s components,
    with one ControlNet or a Multi-ControlNet of all ``units``."""
    import diffusers

    if not supports_control(base_family):
        raise ValueError(f"ControlNet is not available for {base_family} models")
    if mode not in CONTROL_PIPELINES[base_family]:
        raise ValueError(f"ControlNet does not run {mode}")
    for u in units:
        check_fits(base_family, pipe, u.net)
    nets = [u.net.model for u in units]
    if len(nets) == 1:
        controlnet = nets[0]
    elif base_family == "flux":
        controlnet = diffusers.FluxMultiControlNetModel(nets)
    else:
        controlnet = diffusers.MultiControlNetModel(nets)
    cls = getattr(diffusers, CONTROL_PIPELINES[base_family][mode])
    try:
        return cls.from_pipe(pipe, controlnet=controlnet)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{type(pipe).__name__} cannot run ControlNet {mode}: {_first_line(e)}") from e


def control_kwargs(base_family: str, mode: str, units: Sequence[ControlSpec], *, guess_mode: bool = False) -> dict:
    """The pipeline call's control arguments: the maps, per-unit conditioning scale and start/end."""
    if guess_mode and base_family not in GUESS_MODE_FAMILIES:
        raise ValueError(f"guess mode is not available for {base_family} ControlNets")
    many = len(units) > 1
    pick = (lambda xs: list(xs)) if many else (lambda xs: xs[0])
    images = pick([u.image for u in units])
    kw = {"controlnet_conditioning_scale": pick([float(u.weight) for u in units]),
          "control_guidance_start": pick([float(u.start) for u in units]),
          "control_guidance_end": pick([float(u.end) for u in units])}
    if base_family == "flux" or mode != "txt2img":
        kw["control_image"] = images
    else:
        kw["image"] = images  # SD/SDXL txt2img take the control map as `image`
    if base_family in GUESS_MODE_FAMILIES:
        kw["guess_mode"] = bool(guess_mode)
    return kw


__all__ = ["CONTROL_PIPELINES", "ControlNet", "ControlSpec", "GUESS_MODE_FAMILIES", "check_controlnet_source",
           "check_fits", "check_fits_on_disk", "control_kwargs", "control_pipeline", "from_module", "load_controlnet", "supports_control"]
