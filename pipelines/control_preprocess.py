"""ControlNet preprocessors ("annotators") from controlnet-aux: an image in, a control map of the output size out.

The weightless ones (canny, shuffle, lineart_standard) run offline out of the box. The learned ones load their
weights from a local folder the user names (``annotators_dir=``, ``DIFFUSION_STUDIO_ANNOTATORS``, or
``<config dir>/annotators`` passed by the studio); a missing file is a :class:`MissingAnnotatorWeights` that
names the file and where to put it. Nothing is downloaded.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

ANNOTATORS_ENV = "DIFFUSION_STUDIO_ANNOTATORS"
ANNOTATORS_HUB = "lllyasviel/Annotators"  # where every weights file below is published


@dataclass(frozen=True)
class Preprocessor:
    name: str
    module: str  # controlnet_aux submodule
    cls: str
    files: tuple[str, ...] = ()  # weight files the detector's from_pretrained reads from the folder; () = none
    call: tuple[tuple[str, object], ...] = ()  # extra keyword arguments of the detector call
    needs_torchvision: bool = False

    @property
    def learned(self) -> bool:
        return bool(self.files)


PREPROCESSORS: dict[str, Preprocessor] = {p.name: p for p in (
    Preprocessor("none", "", ""),
    Preprocessor("layout", "", ""),  # hand-written below (`layout_map`): no annotator makes this flat map
    Preprocessor("canny", "canny", "CannyDetector", call=(("low_threshold", 100), ("high_threshold", 200))),
    Preprocessor("shuffle", "shuffle", "ContentShuffleDetector"),
    Preprocessor("lineart_standard", "lineart_standard", "LineartStandardDetector"),
    Preprocessor("hed", "hed", "HEDdetector", ("ControlNetHED.pth",)),
    Preprocessor("scribble", "hed", "HEDdetector", ("ControlNetHED.pth",), call=(("scribble", True),)),
    Preprocessor("pidinet", "pidi", "PidiNetDetector", ("table5_pidinet.pth",)),
    Preprocessor("mlsd", "mlsd", "MLSDdetector", ("mlsd_large_512_fp32.pth",)),
    Preprocessor("lineart", "lineart", "LineartDetector", ("sk_model.pth", "sk_model2.pth")),
    Preprocessor("lineart_anime", "lineart_anime", "LineartAnimeDetector", ("netG.pth",)),
    Preprocessor("depth", "midas", "MidasDetector", ("dpt_hybrid-midas-501f0c75.pt",), needs_torchvision=True),
    Preprocessor("normal", "normalbae", "NormalBaeDetector", ("scannet.pt",), needs_torchvision=True),
    Preprocessor("openpose", "open_pose", "OpenposeDetector",
                 ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"), needs_torchvision=True),
)}
# detect at the output's own resolution: the map is then resized to exactly the output size
_DETECT_MAX = 1024


class PreprocessError(ValueError):
    """A preprocessor cannot run (unknown name, controlnet-aux missing)."""


class MissingAnnotatorWeights(PreprocessError):
    """A learned preprocessor's weights are not in the annotators folder."""


def check_preprocessor(name: str) -> Preprocessor:
    spec = PREPROCESSORS.get(name)
    if spec is None:
        raise PreprocessError(f"unknown preprocessor {name!r}; expected one of {', '.join(PREPROCESSORS)}")
    return spec


def annotator_dirs(annotators_dir=None) -> list[Path]:
    """Folders searched for learned weights: the one given, then ``$DIFFUSION_STUDIO_ANNOTATORS`` (os.pathsep
    separated)."""
    dirs = []
    items = annotators_dir if isinstance(annotators_dir, (list, tuple)) else [annotators_dir]
    dirs += [Path(os.path.expanduser(os.fspath(d))) for d in items if d]
    env = os.environ.get(ANNOTATORS_ENV)
    if env:
        dirs += [Path(os.path.expanduser(d)) for d in env.split(os.pathsep) if d]
    return dirs


def weights_folder(name: str, annotators_dir=None) -> Optional[Path]:
    """The folder holding every weight file of preprocessor ``name`` (None for weightless ones), or
    :class:`MissingAnnotatorWeights` naming the files and where they go. Cheap: only stats files."""
    spec = check_preprocessor(name)
    if not spec.learned:
        return None
    dirs = annotator_dirs(annotators_dir)
    for d in dirs:
        if all((d / f).is_file() for f in spec.files):
            return d
    where = (f"into {dirs[0]}" if dirs else
             f"into a folder and pass it (annotators_dir=DIR, CLI --annotators DIR, or {ANNOTATORS_ENV}=DIR)")
    missing = [f for f in spec.files if not any((d / f).is_file() for d in dirs)] or list(spec.files)
    raise MissingAnnotatorWeights(
        f"preprocessor {name!r} needs its weights {', '.join(missing)} (from the hub repo {ANNOTATORS_HUB}); "
        f"copy {'them' if len(missing) > 1 else 'it'} {where}, or use a weightless preprocessor "
        f"(canny, shuffle, lineart_standard)")


_import_lock = threading.Lock()


def _aux_module(module: str):
    """``controlnet_aux.<module>`` imported without running the package's ``__init__``: that imports every
    detector, and a few (depth, normal, openpose) need torchvision, which would pin torch and change
    transformers' image processors for the whole studio. Each detector module stands alone."""
    name = f"controlnet_aux.{module}"
    with _import_lock:
        if name in sys.modules:
            return sys.modules[name]
        if "controlnet_aux" not in sys.modules:
            spec = importlib.util.find_spec("controlnet_aux")
            if spec is None or not spec.submodule_search_locations:
                raise PreprocessError("preprocessors need controlnet-aux: pip install --no-deps controlnet-aux einops "
                                      "opencv-python-headless (its own requirements pull a torchvision that "
                                      "replaces torch)")
            pkg = types.ModuleType("controlnet_aux")
            pkg.__path__ = list(spec.submodule_search_locations)
            pkg.__spec__ = spec
            sys.modules["controlnet_aux"] = pkg
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            hint = (" (depth, normal and openpose need a torchvision built for this torch)"
                    if exc.name == "torchvision" else "")
            raise PreprocessError(f"preprocessor module {name} needs the package {exc.name!r}: pip install "
                                  f"{exc.name}{hint}") from None


_detectors: dict[tuple[str, str], object] = {}


def _detector(spec: Preprocessor, folder: Optional[Path]):
    key = (spec.cls, str(folder))
    if key not in _detectors:
        cls = getattr(_aux_module(spec.module), spec.cls)
        if folder is None:
            _detectors[key] = cls()
        else:
            try:
                # torch.load inside controlnet-aux: torch >= 2.6 defaults to weights_only=True (no code runs)
                _detectors[key] = cls.from_pretrained(str(folder))
            except Exception as exc:  # noqa: BLE001 - torch/pickle raise many kinds
                raise PreprocessError(f"preprocessor {spec.name!r}: weights in {folder} could not be loaded "
                                      f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
                                      ) from None
    return _detectors[key]


def preprocess(name: str, image: Image.Image, size: Sequence[int], *, seed: int = 0,
               annotators_dir=None) -> Image.Image:
    """The control map of ``image`` by preprocessor ``name``, as an RGB image of exactly ``size`` (w, h).
    ``none`` only resizes (the image already is a control map). ``shuffle`` is random: seeded by ``seed``."""
    spec = check_preprocessor(name)
    w, h = int(size[0]), int(size[1])
    src = image.convert("RGB")
    if spec.name == "none":
        return src if src.size == (w, h) else src.resize((w, h), Image.LANCZOS)
    if spec.name == "layout":
        return layout_map(src if src.size == (w, h) else src.resize((w, h), Image.NEAREST))
    folder = weights_folder(name, annotators_dir)
    detector = _detector(spec, folder)
    # the detector sees the source at the output's aspect and size (capped), so edges land where they will
    src = src.resize((w, h), Image.LANCZOS) if src.size != (w, h) else src
    # controlnet-aux scales the shorter side to this and rounds both to multiples of 64 (so at least 64)
    res = max(64, min(min(w, h), _DETECT_MAX))
    kwargs = dict(spec.call)
    if spec.name == "lineart_standard":
        kwargs.update(detect_resolution=res)  # it returns the input size itself
    else:
        kwargs.update(detect_resolution=res, image_resolution=res)
    state = np.random.get_state()
    np.random.seed(int(seed) % (2**32))  # shuffle draws from numpy's global generator
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # lineart_standard's median of a blank image
            out = detector(src, output_type="pil", **kwargs)
    finally:
        np.random.set_state(state)
    if not isinstance(out, Image.Image):
        out = Image.fromarray(np.asarray(out))
    out = out.convert("RGB")
    return out if out.size == (w, h) else out.resize((w, h), Image.BILINEAR)


LAYOUT_TOLERANCE = 40  # per-channel distance from the background colour that makes a pixel foreground
_OUTLINE_SHARE = 0.35  # a shape whose strokes cover less of its filled area than this is an outline


def layout_map(image: Image.Image) -> Image.Image:
    """A flat layout map: where each object goes, filled black on white (what a sketch pad drawing is).

    Foreground is whatever differs from the image's background (the median colour of its border); a shape drawn
    as an outline (thin strokes around an empty inside) is filled, a solid shape keeps its holes (a ring stays a
    ring). controlnet-aux has no such detector (its segmentors need learned weights), hence this one."""
    from scipy import ndimage

    arr = np.asarray(image.convert("RGB"), dtype=np.int16)
    border = np.concatenate([arr[:2].reshape(-1, 3), arr[-2:].reshape(-1, 3), arr[:, :2].reshape(-1, 3),
                             arr[:, -2:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    fg = (np.abs(arr - bg) > LAYOUT_TOLERANCE).any(-1)
    labels, n = ndimage.label(fg)
    out = fg.copy()
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[sl] == i
        filled = ndimage.binary_fill_holes(part)
        if part.sum() < _OUTLINE_SHARE * filled.sum():
            out[sl] |= filled
    return Image.fromarray(np.where(out, 0, 255).astype(np.uint8)).convert("RGB")


__all__ = ["ANNOTATORS_ENV", "MissingAnnotatorWeights", "PREPROCESSORS", "PreprocessError", "Preprocessor",
           "annotator_dirs", "check_preprocessor", "layout_map", "preprocess", "weights_folder"]
