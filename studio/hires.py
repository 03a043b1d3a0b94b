"""Hires fix as two requests through the one engine path: the first pass is rendered and sealed like any
output (in memory), then an img2img request refines it at the upscaled size, starting from the sealed first
pass (its latents interpolated, its pixels Lanczos-resized, or its pixels run through an upscaler model). The
delivered output records the whole hires request (so it replays), and its C2PA ingredient is the sealed
first pass."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Optional

from .errors import RequestError, StudioError
from .schema import HIRES_BUILTIN_UPSCALERS, GenerationRecord, GenerationRequest, hires_size

_cache_lock = threading.Lock()
_cached: Optional[tuple] = None  # (key, LoadedUpscaler): one upscaler model at a time, like the engine's model


def upscaler_source(name: str, registry) -> Optional[str]:
    """None for the built-in methods; else the folder or hub id of the upscaler model `name` names."""
    from . import addons

    if name in HIRES_BUILTIN_UPSCALERS:
        return None
    named = addons.upscalers(registry)
    if name in named:
        return named[name].source
    if "/" in name or "\\" in name or name.startswith(("~", ".")):  # a bare word is only ever a name
        path = Path(name).expanduser()
        if path.exists() or name.startswith(("/", "./", "../", "~")):
            return str(path.resolve())
        if re.match(r"^[\w.\-]+/[\w.\-]+$", name):
            return name  # a hub id: used from the local cache only
    raise RequestError(f"unknown hires upscaler {name!r}: use {', '.join(HIRES_BUILTIN_UPSCALERS)}, "
                       f"{', '.join(named)}, a local upscaler folder or a cached hub id")


def upscaler_available(source: str) -> bool:
    """Whether an upscaler's weights are on this machine (a folder, or a hub id in the local cache)."""
    import pipelines
    from pipelines import upscale

    try:
        upscale.upscaler_folder(source)
        return True
    except (pipelines.ModelLoadError, ValueError, OSError):
        return False


def _first_size(request: GenerationRequest, entry, inputs, scale: int) -> tuple[int, int]:
    """The first pass's size as the engine's resolve() will fill it in."""
    w, h = request.width, request.height
    if inputs.size is not None and (w is None or h is None):
        iw, ih = inputs.size
        w, h = w or max(scale, iw // scale * scale), h or max(scale, ih // scale * scale)
    return w or entry.width, h or entry.height


def check_hires(request: GenerationRequest, entry, registry, *, init_value=None, mask_value=None,
                allow_pickle: bool = False, check_device: bool = True):
    """Everything about a hires request that is known before anything renders: the first pass's own checks,
    the upscaled size (multiple of 8, within MAX_SIDE, within the device's budget), the upscaler (known, and
    present locally) and the latent upscaler's model family. Returns the first pass's `_Checked`."""
    import pipelines
    from pipelines import upscale

    from .engine import _preflight

    kw = dict(init_value=init_value, mask_value=mask_value, allow_pickle=allow_pickle, check_device=check_device)
    first = _preflight(request.model_copy(update={"hires": None}), entry, **kw)
    if first.request.modality != "image":
        raise RequestError(f"hires given for a {first.request.modality} model ({entry.name}): it upscales images")
    scale = max(8, first.source.vae_scale_factor or 8)
    w, h = _first_size(first.request, entry, first.inputs, scale)
    tw, th = hires_size(w, h, request.hires.scale)
    for side, value in (("width", tw), ("height", th)):
        if value % scale:
            raise RequestError(f"hires {side} {value} must be a multiple of {scale} for model {entry.name}")
    # the refine pass, one image at a time at the upscaled size, against the device's budget
    _preflight(first.request.model_copy(update={"width": tw, "height": th, "batch": 1}), entry, **kw)
    upscaler = request.hires.upscaler
    family = first.source.family
    if upscaler == "latent" and family is not None and family not in upscale.LATENT_FAMILIES:
        raise RequestError(f"the latent hires upscaler needs an SD 1.x/2.x/XL model ({entry.name} is {family}): "
                           "use --hires-upscaler pixel-lanczos")
    source = upscaler_source(upscaler, registry)
    if source is not None:
        try:
            upscale.upscaler_folder(source)
        except pipelines.ModelLoadError as exc:
            raise RequestError(str(exc)) from None
    return first


def _upscaler(source: str, device, dtype):
    import pipelines
    from pipelines import upscale

    global _cached
    key = (source, str(device), str(dtype))
    with _cache_lock:
        if _cached is None or _cached[0] != key:
            _cached = None
            try:
                _cached = (key, upscale.load_upscaler(source, device=device, dtype=dtype))
            except pipelines.ModelLoadError as exc:
                raise StudioError(str(exc)) from None
        return _cached[1]


def run_hires(studio, request: GenerationRequest, entry, *, out, init_value, mask_value, progress, preview,
              preview_every, allow_pickle, overwrite, styled: Optional[dict] = None):
    """The engine's hires path (called from `Studio._generate`, under the studio's lock): returns a `Generated`
    whose outputs are the refined images and whose ingredients are the sealed first passes."""
    from pipelines import upscale

    from .engine import Generated

    started = time.perf_counter()
    check_hires(request, entry, studio.registry, init_value=init_value, mask_value=mask_value,
                allow_pickle=allow_pickle)
    hires = request.hires
    common = dict(progress=progress, preview=preview, preview_every=preview_every, allow_pickle=allow_pickle,
                  video_value=None, audio_value=None)
    first = studio._generate(request.model_copy(update={"hires": None}), out=None, init_value=init_value,
                             mask_value=mask_value, **common).finish()  # sealed: nothing unsealed goes on
    resolved = first.record.request
    tw, th = hires_size(resolved.width, resolved.height, hires.scale)
    steps = hires.steps or resolved.steps
    model = studio._loaded[2]  # what the first pass ran on: the family is now known for certain
    if hires.upscaler == "latent" and (model.family not in upscale.LATENT_FAMILIES or model.inpaint_unet):
        kind = "a 9-channel inpainting model" if model.inpaint_unet else model.family
        raise RequestError(f"the latent hires upscaler needs an SD 1.x/2.x/XL text-to-image model ({entry.name} "
                           f"is {kind}): use --hires-upscaler pixel-lanczos")
    source = upscaler_source(hires.upscaler, studio.registry)
    up = None
    if source is not None:
        up = _upscaler(source, model.device, model.dtype)
    # the refine pass starts from the first pass's pixels: the first pass's own noise options (variation seed)
    # are already in them, and the rest of the request carries over (prompt, LoRAs, sampler, controls)
    base = resolved.model_dump(exclude={"hires", "init_image", "mask", "outpaint", "strength", "steps", "width",
                                        "height", "seed", "batch", "variation_seed", "variation_strength"})
    images, parents, seeds, refined = [], [], [], None
    for sealed in first.outputs:
        init = sealed.data  # the sealed first pass itself (watermarked pixels), as any init image is read
        if up is not None:
            # the upscaler's own factor (x2, x4); the refine pass Lanczos-resizes it to the hires size
            init = upscale.run_upscaler(
                up, sealed.image, prompt=resolved.prompt, negative_prompt=resolved.negative_prompt, steps=steps,
                guidance=resolved.guidance if up.factor == 4 else 0.0, seed=sealed.record.seed)
        second = GenerationRequest.build(**base, init_image="<first pass>", strength=hires.strength, steps=steps,
                                         width=tw, height=th, seed=sealed.record.seed, batch=1)
        refined = studio._generate(second, out=None, init_value=init, mask_value=None, overwrite=False,
                                   upscale="latent" if hires.upscaler == "latent" else None, **common)
        images.extend(refined._images)
        parents.append(sealed.data)
        seeds.append(sealed.record.seed)
    rec = refined.record
    hashes = dict(first.record.input_hashes)
    if up is not None:
        hashes["upscaler"] = up.content_hash
    record = GenerationRecord(
        **rec.model_dump(exclude={"request", "mode", "input_hashes", "elapsed_s", "outputs", "styles"}),
        request=resolved.model_copy(update={"hires": hires.model_copy(update={"steps": steps})}),
        mode=first.record.mode, input_hashes=hashes, elapsed_s=round(time.perf_counter() - started, 3),
        **({"styles": styled} if styled else {}))  # applied before this pass split in two
    return Generated(record, images, seeds, out=out, overwrite=overwrite, parent=parents,
                     parent_format=resolved.output_format)


__all__ = ["check_hires", "run_hires", "upscaler_available", "upscaler_source"]
