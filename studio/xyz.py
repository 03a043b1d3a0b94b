"""X/Y/Z plot: sweep up to three parameters over one request and lay the outputs out as a labelled grid.

    import studio, studio.xyz
    plot = studio.xyz.plot(studio.Studio(), studio.GenerationRequest(prompt="a red fox", seed=1),
                           ["seed=1,2,3", "guidance=3,7"], out="grid.png")
    plot.grid.path, [c.path for c in plot.cells]

Every cell is an ordinary request run through the engine and sealed like any output (written next to the
grid in `<grid>-cells/` when `out` is given, so each replays on its own); the grid is a derived picture, sealed
by the writer with every cell as a C2PA `componentOf` ingredient. Axes: seed, guidance (cfg), steps, sampler,
lora (the weight of the request's first LoRA, or `lora:NAME=` of the one named), prompt (A1111's prompt S/R:
the first value is the text searched for, each value replaces it in turn). Z values become side-by-side panels.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from .errors import RequestError
from .schema import GenerationRequest

MAX_CELLS = 64
MAX_AXES = 3
MAX_GRID_SIDE = 8192  # px; bigger grids have their cells scaled down (the cells themselves stay full size)
AXIS_NAMES = {"seed": "seed", "guidance": "guidance", "cfg": "guidance", "steps": "steps", "sampler": "sampler",
              "lora": "lora", "prompt": "prompt", "sr": "prompt", "prompt_sr": "prompt"}
LABELS = {"seed": "Seed", "guidance": "CFG", "steps": "Steps", "sampler": "Sampler", "lora": "LoRA weight",
          "prompt": "Prompt S/R"}


@dataclass(frozen=True)
class Axis:
    """One swept parameter: `name` (seed, guidance, steps, sampler, lora, prompt), its `values`, and for a
    LoRA axis the LoRA it weighs (`target`, a name; None: the request's first)."""

    name: str
    values: tuple
    target: Optional[str] = None

    def label(self, value) -> str:
        what = LABELS[self.name] + (f" {self.target}" if self.target else "")
        if self.name == "prompt":
            return str(value)
        return f"{what}: {value:g}" if isinstance(value, float) else f"{what}: {value}"

    def describe(self) -> dict:
        return {"name": self.name, "values": list(self.values), **({"target": self.target} if self.target else {})}


@dataclass
class XYZResult:
    """`grid`: the sealed grid; `cells`: the sealed cell outputs, x fastest, then y, then z; `shape`:
    (len x, len y, len z); `requests`: each cell's request."""

    grid: Any  # writer.Output
    cells: list
    axes: list[Axis]
    shape: tuple[int, int, int]
    requests: list[GenerationRequest] = field(default_factory=list)
    results: list = field(default_factory=list, repr=False)  # each cell's engine Result (its full record)


def _ints(name: str, text: str) -> list[int]:
    out = []
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            a, b = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise RequestError(f"{name} values must be whole numbers (or A-B ranges), got {part!r}") from None
        if b < a or b - a >= MAX_CELLS:
            raise RequestError(f"{name} range {part!r} must run upwards over at most {MAX_CELLS} values")
        out.extend(range(a, b + 1))
    return out


def parse_axis(text: str) -> Axis:
    """`NAME=V1,V2,...` (e.g. `seed=1,2,3`, `seed=1-4`, `cfg=3,7`, `sampler=Euler,DDIM`, `lora=0,0.5,1`,
    `lora:style=0,1`, `prompt=red,blue,green`)."""
    key, sep, values = str(text).partition("=")
    key, target = key.strip().lower(), None
    if key.startswith("lora:"):
        key, target = "lora", key.split(":", 1)[1].strip() or None
    if not sep or key not in AXIS_NAMES:
        raise RequestError(f"axis {text!r} must be NAME=V1,V2,... with NAME one of seed, guidance (cfg), steps, "
                           "sampler, lora, prompt")
    name = AXIS_NAMES[key]
    if not values.strip():
        raise RequestError(f"axis {name} has no values")
    if name in ("seed", "steps"):
        parsed: list = _ints(name, values)
    elif name in ("guidance", "lora"):
        try:
            parsed = [float(v) for v in values.split(",")]
        except ValueError:
            raise RequestError(f"{name} values must be numbers, got {values!r}") from None
    elif name == "sampler":
        from schedulers import UnknownSampler, resolve_sampler

        try:
            parsed = [resolve_sampler(v.strip()) for v in values.split(",")]
        except UnknownSampler as exc:
            raise RequestError(str(exc)) from None
    else:
        parsed = [v.strip() for v in values.split(",")]
        if not parsed[0]:
            raise RequestError("prompt S/R: the first value is the text to search for and cannot be empty")
    if len(parsed) > MAX_CELLS:
        raise RequestError(f"axis {name} has {len(parsed)} values; a plot has at most {MAX_CELLS} cells")
    return Axis(name, tuple(parsed), target)


def _cell_fields(base_fields: dict, base: GenerationRequest, axis: Axis, value) -> dict:
    f = dict(base_fields)
    if axis.name == "prompt":
        search = axis.values[0]
        f["prompt"] = base.prompt.replace(search, value)
        if base.negative_prompt:
            f["negative_prompt"] = base.negative_prompt.replace(search, value)
    elif axis.name == "lora":
        loras = [dict(l) for l in f.get("loras") or []]
        names = [Path(l["path"]).stem for l in loras]
        index = 0 if axis.target is None else (names.index(axis.target) if axis.target in names else -1)
        loras[index] = {**loras[index], "weight": value}
        f["loras"] = loras
    else:
        f[axis.name] = value
    return f


def plan(base: GenerationRequest, axes: Sequence[Axis | str]) -> tuple[list[Axis], list[GenerationRequest]]:
    """The axes and every cell's validated request (x fastest), refusing a plot that cannot run before any
    model loads: too many axes or cells, an axis twice, a batch, a LoRA or S/R axis with nothing to act on."""
    axes = [a if isinstance(a, Axis) else parse_axis(a) for a in axes]
    if not axes:
        raise RequestError("an X/Y/Z plot needs at least one axis (e.g. --x seed=1,2,3)")
    if len(axes) > MAX_AXES:
        raise RequestError(f"an X/Y/Z plot has at most {MAX_AXES} axes, got {len(axes)}")
    keys = [(a.name, a.target) for a in axes]
    if len(set(keys)) != len(keys):
        raise RequestError("an axis is given twice: sweep each parameter on one axis")
    count = 1
    for a in axes:
        count *= len(a.values)
    if count > MAX_CELLS:
        raise RequestError(f"this plot has {count} cells; at most {MAX_CELLS} (fewer values per axis)")
    if base.batch != 1:
        raise RequestError("each cell of an X/Y/Z plot is one image: drop batch")
    if base.modality not in (None, "image"):
        raise RequestError(f"an X/Y/Z plot is a grid of images; this is {base.modality} request")
    for a in axes:
        if a.name == "lora":
            names = [Path(l.path).stem for l in base.loras]
            if not base.loras:
                raise RequestError("a lora axis sweeps the weight of a LoRA of the request: add one (--lora PATH)")
            if a.target is not None and a.target not in names:
                raise RequestError(f"lora axis names {a.target!r}, which is not among the request's LoRAs "
                                   f"({', '.join(names)})")
        if a.name == "prompt" and a.values[0] not in base.prompt:
            raise RequestError(f"prompt S/R: {a.values[0]!r} (the first value) does not occur in the prompt")
    base_fields = base.model_dump(exclude_unset=True)
    base_fields["loras"] = [l.model_dump() for l in base.loras]
    if base.seed is None and not any(a.name == "seed" for a in axes):
        base_fields["seed"] = secrets.randbelow(2**32)  # one seed for every cell: only the axes differ
    padded = list(axes) + [Axis("_", (None,))] * (MAX_AXES - len(axes))
    requests = []
    for z in padded[2].values:
        for y in padded[1].values:
            for x in padded[0].values:
                f = base_fields
                for a, v in zip(axes, (x, y, z)):
                    f = _cell_fields(f, base, a, v)
                requests.append(GenerationRequest.build(**f))
    return axes, requests


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def draw_grid(images: list, axes: list[Axis], shape: tuple[int, int, int]):
    """The labelled grid (PIL): X values over the columns, Y values down the rows, one panel per Z value."""
    from PIL import Image, ImageDraw

    nx, ny, nz = shape
    cw, ch = max(im.width for im in images), max(im.height for im in images)
    font_px = max(12, min(28, cw // 14))
    font = _font(font_px)
    line = font_px + 10
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = 0 if len(axes) < 2 else int(min(max(measure.textlength(axes[1].label(v), font=font)
                                                      for v in axes[1].values) + 16, 320))
    top = line
    title = line if len(axes) >= 3 else 0
    panel_w, panel_h = label_w + nx * cw, title + top + ny * ch
    gap = 24 if nz > 1 else 0
    width, height = nz * panel_w + (nz - 1) * gap, panel_h
    scale = min(1.0, MAX_GRID_SIDE / max(width, height))
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    ink = (30, 30, 40)
    for k in range(nz):
        ox = k * (panel_w + gap)
        if title:
            draw.text((ox + label_w + 4, 4), _fit(draw, axes[2].label(axes[2].values[k]), font, nx * cw), fill=ink,
                      font=font)
        for i in range(nx):
            text = _fit(draw, axes[0].label(axes[0].values[i]), font, cw - 8)
            tw = draw.textlength(text, font=font)
            draw.text((ox + label_w + i * cw + (cw - tw) / 2, title + 4), text, fill=ink, font=font)
        for j in range(ny):
            if label_w:
                text = _fit(draw, axes[1].label(axes[1].values[j]), font, label_w - 10)
                draw.text((ox + 6, title + top + j * ch + ch / 2 - font_px / 2), text, fill=ink, font=font)
            for i in range(nx):
                im = images[(k * ny + j) * nx + i]
                grid.paste(im.convert("RGB"), (ox + label_w + i * cw + (cw - im.width) // 2,
                                               title + top + j * ch + (ch - im.height) // 2))
    if scale < 1.0:
        grid = grid.resize((max(1, int(width * scale)), max(1, int(height * scale))), Image.LANCZOS)
    return grid


def cell_paths(out: Path, shape: tuple[int, int, int], fmt: str) -> list[Path]:
    from .modalities import EXTENSIONS

    folder = out.with_name(out.stem + "-cells")
    nx, ny, nz = shape
    return [folder / f"x{i}-y{j}-z{k}{EXTENSIONS[fmt]}" for k in range(nz) for j in range(ny) for i in range(nx)]


def plot(studio, base: GenerationRequest, axes: Sequence[Axis | str], *, out: Optional[str | Path] = None,
         overwrite: bool = False, progress: Optional[Callable[[int, int, str], None]] = None,
         **generate_kwargs) -> XYZResult:
    """Render every cell through `studio.generate` (sealed; written to `<out>-cells/` when `out` is a .png
    file), then seal the labelled grid with the cells as ingredients (written to `out`). `progress(done, total,
    what)` counts steps over all cells. Refuses a bad plot with one `RequestError` line before any load."""
    from .writer import check_output_targets, seal_derived

    axes, requests = plan(base, axes)
    shape = tuple(len(a.values) for a in axes) + (1,) * (MAX_AXES - len(axes))
    out_path = Path(out).expanduser() if out is not None else None
    paths: list[Optional[Path]] = [None] * len(requests)
    if out_path is not None:
        if out_path.suffix.lower() != ".png":
            raise RequestError(f"the grid is written as a PNG: name it {out_path.stem}.png")
        check_output_targets(out_path, "png", overwrite=overwrite)
        fmt = requests[0].output_format or "png"
        paths = cell_paths(out_path, shape, fmt)
        check_output_targets(paths[0].parent, fmt, names=[p.name for p in paths], overwrite=overwrite)
    n = len(requests)
    cells = []
    for index, (request, path) in enumerate(zip(requests, paths)):
        what = f"cell {index + 1}/{n}"

        def on_step(step: int, total: int, _i=index, _what=what) -> None:
            if progress is not None:
                progress(_i * total + step, n * total, _what)

        result = studio.generate(request, out=path, progress=on_step, overwrite=overwrite, **generate_kwargs)
        (output,) = result.outputs[:1]
        if output.record.format not in ("png", "jpeg", "webp"):
            raise RequestError(f"an X/Y/Z plot is a grid of images; {result.record.model_name} made "
                               f"{output.record.format}")
        cells.append((result, output))
    grid = draw_grid([o.image for _, o in cells], axes, shape)
    first = cells[0][0].record
    params = {"xyz": {"axes": [a.describe() for a in axes], "shape": list(shape),
                      "request": base.model_dump(mode="json", exclude_unset=True),
                      "cells": [{"index": i, "seed": o.record.seed, "sha256": o.record.sha256,
                                 "path": Path(o.record.path).name if o.record.path else None,
                                 "request": r.model_dump(mode="json", exclude_unset=True)}
                                for i, ((_, o), r) in enumerate(zip(cells, requests))]},
              "model_name": first.model_name, "model_hash": first.model_hash}
    sealed = seal_derived(grid, out_path, model_name=first.model_name, params=params,
                          components=[(o.data, o.record.format) for _, o in cells],
                          description=f"X/Y/Z plot of {n} sealed outputs")
    return XYZResult(grid=sealed, cells=[o for _, o in cells], axes=axes, shape=shape,
                     requests=[r.record.request for r, _ in cells], results=[r for r, _ in cells])


__all__ = ["Axis", "MAX_CELLS", "XYZResult", "draw_grid", "parse_axis", "plan", "plot"]


def register(app) -> None:
    """`studio xyz PROMPT --x seed=1,2,3 [--y guidance=3,7] [--z sampler=Euler,DDIM] -o grid.png`."""

    import typer

    @app.command()
    def xyz(
        prompt: str = typer.Argument(..., help="What to draw (every cell's prompt, S/R aside)."),
        out: str = typer.Option(..., "-o", "--out", help="The grid (.png); the cells go to <name>-cells/."),
        x: str = typer.Option(..., "--x", help="NAME=V1,V2,...: seed, guidance|cfg, steps, sampler, lora[:NAME], "
                                               "prompt (S/R: the first value is searched for)."),
        y: Optional[str] = typer.Option(None, "--y", help="Second axis, same form."),
        z: Optional[str] = typer.Option(None, "--z", help="Third axis: one panel per value."),
        model: Optional[str] = typer.Option(None, "--model", "-m"),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every cell (unless an axis sweeps it)."),
        steps: Optional[int] = typer.Option(None, "--steps"),
        width: Optional[int] = typer.Option(None, "--width", "-W"),
        height: Optional[int] = typer.Option(None, "--height", "-H"),
        sampler: Optional[str] = typer.Option(None, "--sampler"),
        guidance: Optional[float] = typer.Option(None, "--guidance", "--cfg"),
        negative: str = typer.Option("", "--negative"),
        lora: List[str] = typer.Option([], "--lora", help="PATH[:WEIGHT], repeatable."),
        device: Optional[str] = typer.Option(None, "--device"),
        dtype: Optional[str] = typer.Option(None, "--dtype"),
        overwrite: bool = typer.Option(False, "--overwrite"),
    ) -> None:
        """X/Y/Z plot: sweep up to three parameters into a labelled grid; every cell is a sealed output and the
        grid is sealed with the cells as its C2PA ingredients."""
        from .cli import EXIT_FAILED, _fail, _one_line
        from .errors import StudioError
        from .schema import LoraRef

        try:
            base = GenerationRequest.build(
                prompt=prompt, negative_prompt=negative, model=model, seed=seed, steps=steps, width=width,
                height=height, sampler=sampler, guidance=guidance, loras=[LoraRef.parse(i) for i in lora],
                device=device, dtype=dtype)
            axes, _ = plan(base, [a for a in (x, y, z) if a])
        except (RequestError, ValueError) as exc:
            _fail(str(exc))
        from .engine import default_studio

        default_studio().quiet = True
        try:
            result = plot(default_studio(), base, axes, out=out, overwrite=overwrite)
        except RequestError as exc:
            _fail(str(exc))
        except StudioError as exc:
            _fail(str(exc), EXIT_FAILED)
        for cell in result.cells:
            typer.echo(f"{cell.path}  seed={cell.record.seed}  sha256={cell.record.sha256[:16]}")
        nx, ny, nz = result.shape
        typer.echo(_one_line(f"{result.grid.path}  grid {nx}x{ny}" + (f"x{nz}" if nz > 1 else "") +
                             f"  {len(result.cells)} cells as C2PA ingredients  "
                             f"sha256={result.grid.record.sha256[:16]}"))
