"""`studio edit IMAGE INSTRUCTION` (instruction editing) and `studio preprocess NAME IMAGE` (a ControlNet map),
plus the control-map files `studio generate --control` writes next to its outputs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from .errors import RequestError, StudioError


def control_map_paths(result_or_out, count: int, seed: Optional[int] = None) -> list[Path]:
    """Where the control maps of a generation written to ``out`` go: ``NAME.control<i>.png`` next to the first
    output (``studio-<seed>.control<i>.png`` in a folder)."""
    out = Path(result_or_out)
    if out.is_dir() or str(result_or_out).endswith(("/", os.sep)):
        stem = out / f"studio-{seed if seed is not None else 0}"
    else:
        stem = out.with_suffix("") if out.suffix else out
    return [stem.with_name(f"{stem.name}.control{i}.png") for i in range(count)]


def check_control_targets(out: Path, request, overwrite: bool) -> None:
    """Before rendering: a control map must not replace a file unless --overwrite (RequestError)."""
    if not request.controls or request.seed is None and (out.is_dir() or str(out).endswith(("/", os.sep))):
        return
    for path in control_map_paths(out, len(request.controls), request.seed):
        if path.exists() and not overwrite:
            raise RequestError(f"{path} already exists (the control map of this output): pass --overwrite "
                               "to replace it")


def write_control_maps(result, overwrite: bool) -> list[Path]:
    """Write each sealed control map of ``result`` next to its first output (byte-identical sealed files)."""
    if not result.controls or not result.paths:
        return []
    paths = control_map_paths(result.paths[0], len(result.controls))
    for sealed, path in zip(result.controls, paths):
        sealed.save(path, overwrite=overwrite)
    return paths


def _print_result(result) -> None:
    from .modalities import modality

    for o in result.outputs:
        typer.echo(f"{o.path}  seed={o.record.seed}  sha256={o.record.sha256[:16]}  "
                   f"watermark={o.record.watermark_id or o.record.watermark_status}")
    req = result.record.request
    typer.echo(f"{len(result.outputs)} {modality(req.modality, req.mode).noun}(s) in "
               f"{result.record.elapsed_s:.1f}s ({result.record.model_name}, "
               f"{result.record.sampler}, {req.steps} steps)")


def edit_model_for(image: Path, registry=None) -> str:
    """The instruct model matching the model recorded in ``image``: its registered ``<name>-instruct`` (the
    counterparts convention: `mini` -> `mini-instruct`), else the one for its family; the default without one."""
    from .control import DEFAULT_EDIT_MODEL
    from .counterparts import instruct_name_for

    try:
        from .metadata import read_info

        info = read_info(image) or {}
    except Exception:  # noqa: BLE001 - no record, not a studio output, unreadable: the default
        info = {}
    if not info.get("model_name") and not info.get("model_family"):
        return DEFAULT_EDIT_MODEL
    from .registry import Registry

    return instruct_name_for(registry or Registry(), info.get("model_name"), info.get("model_family")) \
        or DEFAULT_EDIT_MODEL


def is_clip_file(path: Path) -> bool:
    """Whether ``path`` holds a clip (MP4, MOV, WebM, an animated GIF), judged from its first bytes as the decoder
    does; a one-frame GIF is a still image."""
    from safety.media import sniff_video

    try:
        with open(path, "rb") as fh:
            kind = sniff_video(fh.read(16))
        if kind != "gif":
            return kind is not None
        from PIL import Image

        with Image.open(path) as im:
            return getattr(im, "n_frames", 1) > 1
    except (OSError, ValueError):
        return False


def register(app: typer.Typer) -> None:
    @app.command()
    def edit(
        image: Path = typer.Argument(..., help="The image or clip (.mp4/.gif/.mov/.webm) to edit."),
        instruction: str = typer.Argument(..., help='What to change, e.g. "make the circle blue".'),
        out: str = typer.Option(..., "-o", "--out", help="Output file (.png/.jpg/.webp; a clip: .mp4/.gif) or "
                                                         "folder."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Instruct model (default: the one for the "
                                                                        "model recorded in IMAGE)."),
        image_guidance: Optional[float] = typer.Option(None, "--image-guidance",
                                                       help="How closely to keep IMAGE (InstructPix2Pix; 1.5)."),
        guidance: Optional[float] = typer.Option(None, "--guidance", "--cfg"),
        steps: Optional[int] = typer.Option(None, "--steps"),
        seed: Optional[int] = typer.Option(None, "--seed"),
        batch: int = typer.Option(1, "--batch"),
        frames: Optional[int] = typer.Option(None, "--frames", help="A clip: edit its first N frames (default all)."),
        negative: str = typer.Option("", "--negative"),
        sampler: Optional[str] = typer.Option(None, "--sampler"),
        device: Optional[str] = typer.Option(None, "--device"),
        dtype: Optional[str] = typer.Option(None, "--dtype"),
        overwrite: bool = typer.Option(False, "--overwrite"),
    ) -> None:
        """Edit IMAGE as INSTRUCTION says (InstructPix2Pix, Flux Kontext, Qwen-Image-Edit); sealed, IMAGE is its
        C2PA ingredient. A clip is edited frame by frame (InstructPix2Pix models), every frame seeded alike."""
        from .cli import EXIT_FAILED, _fail
        from .modalities import WRITABLE_SUFFIXES
        from .schema import GenerationRequest

        if not image.is_file():
            _fail(f"image {str(image)!r} does not exist or is not a file")
        out_path = Path(out).expanduser()
        try:
            request = GenerationRequest.build(
                prompt=instruction, negative_prompt=negative, model=model or edit_model_for(image), seed=seed,
                steps=steps, guidance=guidance, batch=batch, sampler=sampler, frames=frames,
                **{"init_video" if is_clip_file(image) else "init_image": str(image)}, instruct=True,
                image_guidance=image_guidance, device=device, dtype=dtype,
                output_format=WRITABLE_SUFFIXES.get(out_path.suffix.lower()))
        except (RequestError, ValueError) as exc:
            _fail(str(exc))
        from .engine import default_studio

        default_studio().quiet = True
        try:
            result = default_studio().generate(request, out=out if out.endswith(("/", os.sep)) else out_path,
                                               overwrite=overwrite)
        except RequestError as exc:
            _fail(str(exc))
        except StudioError as exc:
            _fail(str(exc), EXIT_FAILED)
        _print_result(result)

    @app.command()
    def preprocess(
        preprocessor: str = typer.Argument(..., help="canny | shuffle | lineart_standard | hed | pidinet | mlsd | "
                                                     "lineart | depth | openpose | ... (none: resize only)"),
        image: Path = typer.Argument(..., help="The source image."),
        out: Path = typer.Option(..., "-o", "--out", help="The control map (.png)."),
        width: Optional[int] = typer.Option(None, "--width", "-W", help="Map width (default: the image's)."),
        height: Optional[int] = typer.Option(None, "--height", "-H", help="Map height (default: the image's)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the random preprocessors (shuffle)."),
        annotators: Optional[Path] = typer.Option(None, "--annotators",
                                                  help="Folder with the learned preprocessors' weights."),
        overwrite: bool = typer.Option(False, "--overwrite"),
    ) -> None:
        """Turn IMAGE into a ControlNet control map (edges, lines, depth, pose...), sealed with IMAGE as its
        ingredient: see it before generating with `--control none:MAP` or `--control PREPROCESSOR:IMAGE`."""
        from .cli import EXIT_FAILED, _fail
        from .control import ANNOTATORS_ENV
        from .schema import CONTROL_PREPROCESSORS

        if annotators is not None:
            os.environ[ANNOTATORS_ENV] = str(annotators)
        name = preprocessor.strip().lower()
        if name not in CONTROL_PREPROCESSORS:
            _fail(f"unknown preprocessor {preprocessor!r} (one of {', '.join(CONTROL_PREPROCESSORS)})")
        if out.suffix.lower() != ".png":
            _fail(f"cannot write {out.name!r}: a control map is a .png file")
        if out.exists() and not overwrite:
            _fail(f"{out} already exists: pass --overwrite to replace it")
        try:
            from .control import preprocess_file

            sealed = preprocess_file(name, image, out, width=width, height=height, seed=seed, overwrite=overwrite)
        except RequestError as exc:
            _fail(str(exc))
        except StudioError as exc:
            _fail(str(exc), EXIT_FAILED)
        typer.echo(f"{out}  {sealed.record.width}x{sealed.record.height}  sha256={sealed.record.sha256[:16]}")


def control_options(control: List[str]) -> list:
    from .schema import ControlUnit

    return [ControlUnit.parse(c) for c in control]
