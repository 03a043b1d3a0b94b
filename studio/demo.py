"""`studio demo`: render the bundled prompt file with the bundled `mini` model, offline, on CPU.

Prompt-file lines are prompts; `#` starts a comment; a line may end with ` | key=value | key=value`
overrides of request fields. `init=@N` uses the output of item N (1-based) as the init image, so the demo
also shows an edit whose C2PA manifest names the earlier output as its ingredient. Then two clips with the
mini video model: one from text, and one that animates the demo's first image (its ingredient). Then two
tunes with the mini music model: one from text, and a continuation of its first half (its ingredient).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Optional

from .errors import RequestError
from .jobs.spec import READERS, RawItem

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "prompts.txt"
# (file name, prompt in mini-video's caption language, animate the demo's first image?); the second prompt
# describes samples/prompts.txt's first image ("a large red circle in the center on a white background")
CLIPS = (("clip-text-to-video.mp4", "a red circle moving to the right on a white background", False),
         ("clip-image-to-video.mp4", "a large red circle moving to the left on a white background", True))


# (file name, prompt in mini-music's caption language); the second continues the first tune's first half
TUNES = (("tune-text-to-music.wav", "a fast square melody rising in a high register, major"),
         ("tune-continuation.wav", "a fast square melody rising in a high register, major"))


def parse_prompt_file(path: Path) -> list[RawItem]:
    """The batch engine's `.txt` reader (one syntax for prompt files everywhere); the first bad line raises."""
    _, items, bad = READERS["txt"](path.read_text(encoding="utf-8"))
    if bad:
        raise RequestError(f"{path}:{bad[0].line}: {bad[0].message}")
    if not items:
        raise RequestError(f"{path}: no prompts")
    return items


def _slug(text: str, limit: int = 40) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(filter(None, keep.split("-")))[:limit].strip("-") or "item"


def contact_sheet(images: list, captions: list[str], cell: int = 192):
    from PIL import Image, ImageDraw

    cols = min(4, len(images))
    rows = math.ceil(len(images) / cols)
    pad = 18
    sheet = Image.new("RGB", (cols * cell, rows * (cell + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, cap) in enumerate(zip(images, captions)):
        x, y = (i % cols) * cell, (i // cols) * (cell + pad)
        sheet.paste(img.convert("RGB").resize((cell, cell)), (x, y))
        draw.text((x + 3, y + cell + 3), cap[:34], fill="black")
    return sheet


def render_clips(studio, out_dir: Path, first_image: Path, *, model: str, seed: int,
                 log: Callable[[str], None]) -> list:
    """The demo's two clips: text-to-video, and image-to-video from the demo's first image."""
    results = []
    for n, (name, prompt, animate) in enumerate(CLIPS, start=1):
        fields = {"model": model, "seed": seed + 100 + n, "prompt": prompt}
        if animate:
            fields["init_image"] = str(first_image)
        started = time.perf_counter()
        result = studio.generate(out=out_dir / name, overwrite=True, **fields)
        results.append(result)
        log(f"[clip {n}/{len(CLIPS)}] {result.paths[0]} ({result.record.mode}, {result.record.request.frames} "
            f"frames, {time.perf_counter() - started:.1f}s)")
    return results


def render_tunes(studio, out_dir: Path, *, model: str, seed: int, log: Callable[[str], None]) -> list:
    """The demo's two tunes: text-to-music over the model's whole window, then its first half continued by the
    other half (the window bounds what the model hears and writes at once)."""
    entry = studio.registry.resolve(model)
    window = float(entry.duration or 8.0)
    (first, prompt), (second, prompt2) = TUNES
    plans = ((first, {"prompt": prompt, "duration": window}),
             (second, {"prompt": prompt2, "duration": window / 2, "extend": window / 2}))
    results = []
    for n, (name, fields) in enumerate(plans, start=1):
        if "extend" in fields:
            fields["init_audio"] = str(results[0].paths[0])
        started = time.perf_counter()
        result = studio.generate(model=model, seed=seed + 200 + n, out=out_dir / name, overwrite=True, **fields)
        results.append(result)
        log(f"[tune {n}/{len(plans)}] {result.paths[0]} ({result.record.mode}, "
            f"{time.perf_counter() - started:.1f}s)")
    return results


def run_demo(out_dir: Path, prompts: Path = SAMPLES, model: str = "mini", seed: int = 1234,
             log: Callable[[str], None] = print, video_model: Optional[str] = "mini-video",
             music_model: Optional[str] = "mini-music") -> dict:
    from .engine import default_studio
    from .writer import seal_derived

    out_dir.mkdir(parents=True, exist_ok=True)
    items = parse_prompt_file(prompts)
    studio = default_studio()
    started = time.perf_counter()
    results: list = []
    records = []
    replaced = 0
    for n, item in enumerate(items, start=1):
        fields = {"model": model, "seed": seed + n, **item.fields}
        init = fields.pop("init_image", None)
        if init and init.startswith("@"):
            ref = int(init[1:])
            if not 1 <= ref < n:
                raise RequestError(f"{prompts}:{item.line}: init=@{ref} must name an earlier item")
            init = results[ref - 1].outputs[0].path
        if init:
            fields["init_image"] = str(init)
        target = out_dir / f"{n:02d}-{_slug(fields['prompt'])}.png"
        # The demo's folder holds the demo's own fixed names: running it again re-renders them, and says so.
        if target.exists():
            replaced += 1
        result = studio.generate(out=target, overwrite=True, **fields)
        results.append(result)
        records.append(json.loads(result.record.model_dump_json()))
        log(f"[{n}/{len(items)}] {result.paths[0]}")
    sheet = contact_sheet([r.images[0] for r in results],
                          [f"{i}. {it.fields['prompt']}" for i, it in enumerate(items, 1)])
    sheet_path = out_dir / "contact-sheet.png"
    seal_derived(sheet, sheet_path, model_name=model,
                 params={"kind": "contact-sheet", "items": [r.outputs[0].record.sha256 for r in results]})
    clips = []
    if video_model:
        clips = render_clips(studio, out_dir, results[0].paths[0], model=video_model, seed=seed, log=log)
        records += [json.loads(c.record.model_dump_json()) for c in clips]
    tunes = []
    if music_model:
        tunes = render_tunes(studio, out_dir, model=music_model, seed=seed, log=log)
        records += [json.loads(t.record.model_dump_json()) for t in tunes]
    (out_dir / "records.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    elapsed = time.perf_counter() - started
    if replaced:
        log(f"replaced {replaced} image(s) of an earlier demo run in {out_dir}")
    log(f"{len(results)} sealed images, contact sheet {sheet_path}, records {out_dir / 'records.jsonl'} "
        f"({elapsed:.1f}s)")
    if clips:
        log(f"{len(clips)} sealed clips: {', '.join(str(c.paths[0]) for c in clips)}")
    if tunes:
        log(f"{len(tunes)} sealed tunes: {', '.join(str(t.paths[0]) for t in tunes)}")
    return {"outputs": [str(r.paths[0]) for r in results], "clips": [str(c.paths[0]) for c in clips],
            "tunes": [str(t.paths[0]) for t in tunes],
            "contact_sheet": str(sheet_path), "elapsed_s": elapsed}
