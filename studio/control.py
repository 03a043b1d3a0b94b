"""ControlNet and instruction-editing requests on the studio side: which ControlNet a unit uses, the checks a
request passes before any model loads, the control maps made before the run, and their seal.

A control map is shown to the user sealed (`Result.controls`, with the unit's source image as its parent
ingredient), recorded in the output's record (`input_hashes["control_<i>"]`: sha256 of the map's pixels,
`control_<i>_source`: of the source file) and is a componentOf ingredient of every output it steered.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import RequestError

ANNOTATORS_ENV = "DIFFUSION_STUDIO_ANNOTATORS"  # = pipelines.control_preprocess.ANNOTATORS_ENV (tested)

# Known ControlNets: name -> (hub id, base family, the preprocessors whose maps it was trained on)
CONTROLNETS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "sd15-canny": ("lllyasviel/control_v11p_sd15_canny", "sd1", ("canny",)),
    "sd15-shuffle": ("lllyasviel/control_v11e_sd15_shuffle", "sd1", ("shuffle",)),
    "sd15-lineart": ("lllyasviel/control_v11p_sd15_lineart", "sd1", ("lineart_standard", "lineart")),
    "sd15-lineart-anime": ("lllyasviel/control_v11p_sd15s2_lineart_anime", "sd1", ("lineart_anime",)),
    "sd15-softedge": ("lllyasviel/control_v11p_sd15_softedge", "sd1", ("hed", "pidinet")),
    "sd15-scribble": ("lllyasviel/control_v11p_sd15_scribble", "sd1", ("scribble",)),
    "sd15-mlsd": ("lllyasviel/control_v11p_sd15_mlsd", "sd1", ("mlsd",)),
    "sd15-depth": ("lllyasviel/control_v11f1p_sd15_depth", "sd1", ("depth",)),
    "sd15-normal": ("lllyasviel/control_v11p_sd15_normalbae", "sd1", ("normal",)),
    "sd15-openpose": ("lllyasviel/control_v11p_sd15_openpose", "sd1", ("openpose",)),
    "sdxl-canny": ("diffusers/controlnet-canny-sdxl-1.0", "sdxl", ("canny",)),
    "sdxl-depth": ("diffusers/controlnet-depth-sdxl-1.0", "sdxl", ("depth",)),
    "sdxl-openpose": ("thibaud/controlnet-openpose-sdxl-1.0", "sdxl", ("openpose",)),
    "flux-canny": ("InstantX/FLUX.1-dev-Controlnet-Canny", "flux", ("canny",)),
    "flux-depth": ("Shakker-Labs/FLUX.1-dev-ControlNet-Depth", "flux", ("depth",)),
    # the project's own, for `mini` (a local folder that ships with the studio): edge maps, and layout maps made
    # by `layout` or drawn directly (`none`: black shapes on white, as the sketch pad gives)
    "mini-control": (str(Path(__file__).parent / "mini" / "control" / "weights"), "sd1", ("canny", "layout", "none")),
}
CONTROL_FAMILIES = ("sd1", "sd2", "sdxl", "flux")  # = pipelines.controlnet.CONTROL_PIPELINES (tested)
INSTRUCT_FAMILIES = ("ip2p", "ip2p-sdxl", "flux-kontext", "qwen-edit")  # = pipelines.INSTRUCT_FAMILIES (tested)
INSTRUCT_BASE = {"ip2p": "sd1", "ip2p-sdxl": "sdxl", "flux-kontext": "flux", "qwen-edit": None}  # sampler families
IMAGE_GUIDANCE_FAMILIES = {"ip2p": 1.5, "ip2p-sdxl": 1.5}  # default image guidance of the families that have one
# `studio edit`: the instruct model for an image made by a model of this family (a recorded model with a
# registered `<name>-instruct` uses that first: `mini` -> `mini-instruct`, see studio.counterparts)
EDIT_MODEL_FOR_FAMILY = {"sd1": "instruct-pix2pix", "sd2": "instruct-pix2pix", "sdxl": "sdxl-instruct-pix2pix",
                         "flux": "flux-kontext"}
# no record: the editor that ships with the studio (offline, like `mini` for generation)
DEFAULT_EDIT_MODEL = "mini-instruct"


def annotators_dir() -> Path:
    """Where learned preprocessors' weights are looked for: `$DIFFUSION_STUDIO_ANNOTATORS`, else
    `<config dir>/annotators` (CLI: `--annotators DIR` sets the variable)."""
    env = os.environ.get(ANNOTATORS_ENV)
    if env:
        return Path(env.split(os.pathsep)[0]).expanduser()
    from .config import config_dir

    return config_dir() / "annotators"


def controlnet_fits(model: str, family: str, base_source: Optional[str]) -> Optional[bool]:
    """Whether ControlNet `model` (a known name, a folder or a hub id) is on disk and fits the base at `base_source` (True), is on disk and made for
    another base (False), or cannot be judged yet (None: not downloaded, or no base given)."""
    from pipelines.controlnet import check_controlnet_source, check_fits_on_disk
    from pipelines.loading import ModelNotAvailable

    if not base_source:
        return None
    try:
        check_controlnet_source(controlnet_source(model), family)
        check_fits_on_disk(base_source, controlnet_source(model), family)
    except ModelNotAvailable:
        return None
    except (ValueError, RuntimeError):
        return False
    return True


def default_controlnet(family: str, preprocessor: str, base_source: Optional[str] = None) -> str:
    """The ControlNet name for a `family` base and a preprocessor's maps, or RequestError saying to pick one.
    Given the base's folder (`base_source`), one on disk that fits it comes first (`mini` gets mini-control, an
    SD 1.5 model the SD 1.5 one) and one on disk made for another base is never picked."""
    named = [n for n, (_, fam, preps) in CONTROLNETS.items() if fam == family and preprocessor in preps]
    fits = {n: controlnet_fits(n, family, base_source) for n in named} if base_source else {}
    for name in sorted(named, key=lambda n: fits.get(n) is not True):
        if fits.get(name) is not False:
            return name
    known = [n for n, (_, fam, _) in CONTROLNETS.items() if fam == family]
    if preprocessor == "none":
        raise RequestError(f"a control map with preprocessor 'none' needs its ControlNet named (model=..., CLI "
                           f"MODEL:IMAGE); {family} ControlNets: {', '.join(known) or 'a folder or hub id'}")
    raise RequestError(f"no default {family} ControlNet for preprocessor {preprocessor!r}: name one (model=..., "
                       f"CLI MODEL:IMAGE:{preprocessor}){'; known: ' + ', '.join(known) if known else ''}")


def controlnet_source(model: str) -> str:
    """A unit's `model` as a loadable source: a known name's hub id, else the folder / hub id itself."""
    return CONTROLNETS[model][0] if model in CONTROLNETS else model


def check_request(request, family: Optional[str], *, allow_pickle: bool = False,
                  base_source: Optional[str] = None) -> None:
    """Everything about instruct / control fields that the model's family decides, before it loads;
    `base_source` (the model's folder or hub id) lets a ControlNet's fit be judged from the configs on disk."""
    import pipelines.control_preprocess as prep
    from pipelines.controlnet import check_controlnet_source, check_fits_on_disk

    from .registry import family_modality

    instruct = family in INSTRUCT_FAMILIES
    if instruct and not request.init_image:
        raise RequestError(f"{request.model or 'this model'} is an instruction-editing model ({family}): give the "
                           "image to edit (init_image, CLI --init or `studio edit IMAGE INSTRUCTION`)")
    if request.instruct and not instruct:
        raise RequestError(f"instruct given for model {request.model or 'mini'} ({family or 'unknown family'}), "
                           f"which is not an instruction-editing model (families: {', '.join(INSTRUCT_FAMILIES)})")
    if request.image_guidance is not None and family not in IMAGE_GUIDANCE_FAMILIES:
        what = "has no image guidance scale" if instruct else "is not an instruction-editing model"
        raise RequestError(f"image_guidance given for model {request.model or 'mini'} ({family or 'unknown'}), "
                           f"which {what}: it applies to {', '.join(IMAGE_GUIDANCE_FAMILIES)}")
    if instruct and (request.mask or request.outpaint or request.strength is not None):
        raise RequestError("mask, outpaint and strength do not apply to an instruction edit: the instruction "
                           "says what changes")
    if not request.controls:
        return
    if family_modality(family) not in (None, "image") or family not in CONTROL_FAMILIES:
        raise RequestError(f"ControlNet is not available for {family or 'this'} models (ControlNet families: "
                           f"{', '.join(CONTROL_FAMILIES)})")
    if request.guess_mode and family == "flux":
        raise RequestError("guess_mode is not available for Flux ControlNets (SD 1.x/2.x and SDXL have it)")
    for i, unit in enumerate(request.controls):
        try:
            prep.weights_folder(unit.preprocessor, annotators_dir())
        except prep.PreprocessError as exc:
            raise RequestError(f"control {i}: {exc}") from None
        model = unit.model or default_controlnet(family, unit.preprocessor, base_source)
        if model in CONTROLNETS and CONTROLNETS[model][1] != family:
            raise RequestError(f"control {i}: ControlNet {model} is for {CONTROLNETS[model][1]} models, this one "
                               f"is {family}")
        try:
            check_controlnet_source(controlnet_source(model), family, allow_pickle=allow_pickle)
            if base_source:
                check_fits_on_disk(base_source, controlnet_source(model), family)
        except (ValueError, RuntimeError) as exc:  # ModelLoadError is a RuntimeError
            raise RequestError(f"control {i}: {exc}") from None


def decide(request, family: Optional[str], base_source: Optional[str] = None):
    """The request with what the family decides filled in: an instruct model given an init image edits it
    (`instruct=True`, the family's default image guidance); each unit's ControlNet named (the one that fits
    the base at `base_source` first)."""
    update = {}
    if family in INSTRUCT_FAMILIES and request.init_image and not request.instruct:
        update["instruct"] = True
    if family in IMAGE_GUIDANCE_FAMILIES and request.image_guidance is None and (request.instruct or update):
        update["image_guidance"] = IMAGE_GUIDANCE_FAMILIES[family]
    if request.controls and family in CONTROL_FAMILIES and any(u.model is None for u in request.controls):
        update["controls"] = [u if u.model else u.model_copy(update={"model": default_controlnet(
            family, u.preprocessor, base_source)}) for u in request.controls]
    if not update:
        return request
    from .schema import GenerationRequest

    return GenerationRequest.build(**{**request.model_dump(exclude_unset=True), **update})


def read_sources(request, values=None) -> list:
    """Each unit's source image read within the input limits (a one-line RequestError otherwise); `values`
    are in-memory replacements (bytes / PIL) by unit index."""
    from .inputs import read_image

    values = values or {}
    return [read_image(values.get(i, unit.image), f"control {i} image", "RGB")
            for i, unit in enumerate(request.controls)]


@dataclass
class ControlMap:
    """A preprocessed control map and what the record and the seal say about it."""

    index: int
    image: "PIL.Image.Image"  # noqa: F821 - at the output size; private until sealed
    source: "SourceImage"  # noqa: F821
    preprocessor: str
    model: str
    sha256: str  # of the map's pixels


def make_maps(request, sources: list, *, width: int, height: int) -> list[ControlMap]:
    """The control maps of every unit at the output size (RequestError when a preprocessor cannot run)."""
    import pipelines.control_preprocess as prep

    from .modalities.image import image_sha256

    maps = []
    for i, (unit, src) in enumerate(zip(request.controls, sources)):
        try:
            image = prep.preprocess(unit.preprocessor, src.image, (width, height), seed=request.seed or 0,
                                    annotators_dir=annotators_dir())
        except prep.PreprocessError as exc:
            raise RequestError(f"control {i}: {exc}") from None
        maps.append(ControlMap(i, image, src, unit.preprocessor, unit.model or "", image_sha256(image)))
    return maps


def record_hashes(maps: list[ControlMap]) -> dict[str, str]:
    out = {}
    for m in maps:
        out[f"control_{m.index}"] = m.sha256
        out[f"control_{m.index}_source"] = hashlib.sha256(m.source.data).hexdigest()
    return out


def load_units(model, request, maps: list[ControlMap]) -> list:
    """`pipelines.controlnet.ControlSpec`s for the run: each unit's ControlNet loaded (offline, cached) on the
    model's device and dtype."""
    import pipelines.controlnet as cn

    specs = []
    for unit, m in zip(request.controls, maps):
        try:
            net = cn.load_controlnet(controlnet_source(unit.model), family=model.family, device=model.device,
                                     dtype=model.dtype)
            cn.check_fits(model.family, model.pipe, net)  # another base's ControlNet: one line, not a shape error
        except (ValueError, RuntimeError) as exc:
            raise RequestError(f"control {m.index}: {exc}") from None
        specs.append(cn.ControlSpec(net, m.image, unit.weight, unit.start, unit.end))
    return specs


def net_hashes(specs: list) -> dict[str, str]:
    """The ControlNets' content hashes for the record (`input_hashes["controlnet_<i>"]`): which weights steered."""
    return {f"controlnet_{i}": spec.net.content_hash for i, spec in enumerate(specs)}


def seal_maps(maps: list[ControlMap], *, model_name: str) -> list:
    """Each control map sealed (its source image its parentOf ingredient): what the user is shown and what
    the outputs name as componentOf ingredients."""
    from .writer import seal_derived

    sealed = []
    for m in maps:
        sealed.append(seal_derived(m.image, model_name=model_name, params={
            "kind": "control map", "control": m.index, "preprocessor": m.preprocessor, "controlnet": m.model,
            "map_sha256": m.sha256}, source=m.source.data, source_format=m.source.fmt,
            description=f"control map ({m.preprocessor}) for a ControlNet"))
    return sealed


def _check_map_size(width: Optional[int], height: Optional[int]) -> None:
    from .schema import MAX_SIDE

    for side, v in (("width", width), ("height", height)):
        if v is not None and not 8 <= v <= MAX_SIDE:
            raise RequestError(f"control map {side} {v} is out of range (8 to {MAX_SIDE} pixels)")


def preprocess_file(name: str, image, out: Optional[Path] = None, *, width: Optional[int] = None,
                    height: Optional[int] = None, seed: int = 0, overwrite: bool = False):
    """One control map made from an image file (`studio preprocess`), sealed with the image as its parentOf
    ingredient and written to `out` when given: the sealed `Output`."""
    import pipelines.control_preprocess as prep

    from .inputs import read_image
    from .modalities.image import image_sha256
    from .writer import seal_derived, write_atomic

    _check_map_size(width, height)  # a browser or CLI size, before the source is read
    src = read_image(image, "image", "RGB")
    w0, h0 = src.image.size
    if width and not height:  # one side given: the other keeps the image's aspect
        height = max(8, round(h0 * width / w0))
    elif height and not width:
        width = max(8, round(w0 * height / h0))
    size = (width or w0, height or h0)
    _check_map_size(*size)
    try:
        prep.weights_folder(name, annotators_dir())
        made = prep.preprocess(name, src.image, size, seed=seed, annotators_dir=annotators_dir())
    except prep.PreprocessError as exc:
        raise RequestError(str(exc)) from None
    sealed = seal_derived(made, model_name=f"preprocessor {name}", params={
        "kind": "control map", "preprocessor": name, "map_sha256": image_sha256(made), "seed": seed},
        source=src.data, source_format=src.fmt, description=f"control map ({name}) for a ControlNet")
    if out is not None:
        write_atomic(Path(out), sealed.data, overwrite=overwrite)
        sealed.record.path = str(out)
    return sealed


__all__ = ["ANNOTATORS_ENV", "CONTROLNETS", "CONTROL_FAMILIES", "ControlMap", "DEFAULT_EDIT_MODEL",
           "EDIT_MODEL_FOR_FAMILY", "IMAGE_GUIDANCE_FAMILIES", "INSTRUCT_FAMILIES", "annotators_dir",
           "check_request", "controlnet_source", "decide", "default_controlnet", "load_units", "make_maps", "net_hashes",
           "read_sources", "preprocess_file", "record_hashes", "seal_maps"]
