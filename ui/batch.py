"""The Batch tab over the `studio.jobs` engine: validate a prompt file before starting, render it with live
progress and cancel, and hand back the outputs + manifest.jsonl as one zip."""
from __future__ import annotations

import ast
import json
import re
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Optional

from studio import RequestError
from studio.control import CONTROLNETS

from .browser_paths import PathRefused, browser_roots, checked_model, checked_path
from .errors import hide_paths, sanitize

MAX_ITEMS = 1000
ProgressFn = Callable[[int, int, str], None]


def _jobs():
    """`studio.jobs.render` / `load_job` (the public names), or the modules that define them."""
    import studio.jobs as jobs

    render = getattr(jobs, "render", None)
    load_job = getattr(jobs, "load_job", None)
    if render is None or load_job is None:
        from studio.jobs.runner import render
        from studio.jobs.spec import load_job
    return render, load_job


def validate_upload(path: Optional[str], registry, out_dir: Path) -> tuple[list[list], list[str]]:
    """`validate` for a file sent by a browser: the file itself must be an upload (or an output) too."""
    if path:
        try:
            checked_path(path, "prompt file", browser_roots(out_dir))
        except PathRefused as exc:
            return [], [str(exc)]
    return validate(path, registry, out_dir)


def validate(path: Optional[str], registry, out_dir: Path) -> tuple[list[list], list[str]]:
    """(rows for the preview table, one line per problem). Nothing is rendered. Every path an item names comes
    from a browser: it must lie in the uploads or the outputs, and models must be registry names."""
    if not path:
        return [], []
    roots = browser_roots(out_dir)
    job = Path(path).resolve()
    _, load_job = _jobs()

    def check_model(name):
        if name is not None:
            checked_model(name, "model", registry)
        registry.resolve(name)

    try:
        spec = load_job(job, check_model=check_model)
    except RequestError as exc:
        return [], [sanitize(str(exc), out_dir)]
    refused: dict[int, str] = {}
    for item in spec.items:
        if item.line not in refused:
            try:
                item_paths_allowed(item.request, roots, item.line)
            except PathRefused as exc:
                refused[item.line] = str(exc)
    rows = []
    for item in spec.items:
        if item.line in refused:
            continue
        r = item.request
        rows.append([item.line, item.key, r.prompt[:120], r.model or "default", r.mode,
                     f"{r.width or 'auto'}×{r.height or 'auto'}", r.steps or "default", r.batch])
    problems = [(i.line, _missing_or_refused(i.message, job.parent, roots, i.line)) for i in spec.invalid]
    problems += list(refused.items())
    errors = [m if m.startswith(f"line {n}:") else f"line {n}: {sanitize(m, out_dir)}"
              for n, m in sorted(problems, key=lambda p: p[0])]
    if not spec.items and not errors:
        errors.append("the file has no items")
    if len(spec.items) > MAX_ITEMS:
        errors.append(f"{len(spec.items)} items: the web app runs at most {MAX_ITEMS} per job "
                      f"(use `studio render` for more)")
    return rows, errors


def item_paths_allowed(request, roots, line: int) -> None:
    """PathRefused unless the item's init image, mask and LoRAs are uploads or outputs (already resolved
    relative to the job file by `load_job`)."""
    checked_path(request.init_image, "init_image", roots, line=line)
    checked_path(request.mask, "mask", roots, line=line)
    for lora in request.loras:
        checked_path(lora.path, "loras", roots, line=line)
    for i, unit in enumerate(getattr(request, "controls", None) or []):
        checked_path(unit.image, f"control {i} image", roots, line=line)
        if unit.model and unit.model not in CONTROLNETS:  # a folder or hub id: the server would load it
            raise PathRefused(f"line {line}: control {i} ControlNet {Path(unit.model).name[:80]!r} is not a known "
                              f"ControlNet name (web jobs name ControlNets as {', '.join(list(CONTROLNETS)[:3])}, "
                              "...; or leave it out for the model's default)")
    upscaler = request.hires.upscaler if getattr(request, "hires", None) is not None else ""
    if upscaler.startswith((".", "~")) or any(c in upscaler for c in "/\\"):
        # a path or hub id would make the server load what a visitor names: upscalers are names here
        raise PathRefused(f"line {line}: hires upscaler {Path(upscaler).name[:80]!r} is not one of this "
                          "server's upscalers (latent, pixel-lanczos or a registry upscaler name)")


_MISSING = re.compile(r"^(init_image|mask|LoRA) (?P<repr>'.*'|\".*\") does not exist")


def _missing_or_refused(message: str, base: Path, roots, line: int) -> str:
    """`load_job` reports a missing file before this module sees the item; for a path outside the allowed
    folders say "refused" instead, so a visitor cannot probe which server files exist."""
    m = _MISSING.match(message)
    if not m:
        return message
    try:
        written = ast.literal_eval(m.group("repr"))
    except (ValueError, SyntaxError):
        return message
    field = "loras" if m.group(1) == "LoRA" else m.group(1)
    try:
        checked_path(written, field, roots, line=line, base=base)
    except PathRefused as exc:
        return str(exc)
    return message


def run(handlers, path: Optional[str], *, progress: Optional[ProgressFn] = None,
        cancel: Optional[threading.Event] = None) -> tuple[str, str, list[dict]]:
    """Render the job into a new folder under `batches/` and zip it. Returns (zip path, summary markdown,
    history entries of the outputs)."""
    if not path:
        raise RequestError("upload a prompt file first")
    rows, errors = validate_upload(path, handlers.registry, handlers.out_dir)
    if errors:
        raise RequestError(f"{len(errors)} problem(s) in the prompt file; first: {errors[0]}")
    path = checked_path(path, "prompt file", browser_roots(handlers.out_dir))
    render, _ = _jobs()
    job_dir = handlers.out_dir / "batches" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    total_items = max(1, len(rows))
    state = {"done": 0}

    def on_item(outcome, done, total):
        state["done"] = done
        if progress is not None:
            progress(done, total, f"{done}/{total} items")

    def on_step(key, step, total):
        if progress is not None:
            frac = state["done"] + (step / total if total else 0)
            progress(round(frac * 1000), total_items * 1000,
                     f"item {state['done'] + 1}/{total_items}: step {step}/{total}")

    if progress is not None:
        progress(0, total_items, "starting")
    summary = render(Path(path), job_dir, studio=handlers.studio, cancel=cancel, on_item=on_item,
                     on_step=on_step)
    entries = _record_outputs(handlers, job_dir)
    zip_path = job_dir.with_suffix(".zip")
    _zip(job_dir, zip_path)
    lines = [f"**{summary.succeeded}** of {summary.total} item(s) rendered in {summary.elapsed_s:.1f}s "
             f"(job seed {summary.job_seed})"]
    if summary.failed:
        lines.append(f"**{summary.failed} failed:** " + "; ".join(
            f"line {o.line}: {sanitize(o.error or '', handlers.out_dir)}" for o in summary.items
            if o.status == "failed")[:800])
    if summary.cancelled:
        lines.append(f"**{summary.cancelled} cancelled**")
    for w in summary.warnings:
        lines.append("warning: " + sanitize(w, handlers.out_dir))
    return str(zip_path), "  \n".join(lines), entries


def _record_outputs(handlers, job_dir: Path) -> list[dict]:
    """Add the job's sealed outputs to the server's history (the gallery)."""
    manifest = job_dir / "manifest.jsonl"
    entries = []
    if not manifest.exists():
        return entries
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if obj.get("type") != "item" or obj.get("status") != "ok":
            continue
        req = public_request(obj.get("request") or {})
        for out in obj.get("outputs", []):
            file = (job_dir / out["path"]).resolve()
            entry = {
                "id": out.get("sha256", "")[:16], "path": str(file.relative_to(handlers.out_dir)),
                "source": "batch", "mode": obj.get("mode"), "model": obj.get("model_name"),
                "family": obj.get("model_family"), "sampler": obj.get("sampler"), "seed": out.get("seed"),
                "width": out.get("width"), "height": out.get("height"),
                "elapsed_s": (obj.get("timings") or {}).get("engine_s"), "sha256": out.get("sha256"),
                "watermark_id": out.get("watermark_id"), "watermark_status": out.get("watermark_status"),
                "request": {**req, "seed": out.get("seed"), "batch": 1}, "batch_item": obj.get("id"),
            }
            if handlers.verify_on_write:
                entry.update(handlers._quick_verify(file))
            entries.append({**handlers.history.add(entry), "file": str(file)})
    return entries


def public_request(req: dict) -> dict:
    """A request as the browser may see it: its input files by name only."""
    req = dict(req)
    for key in ("init_image", "mask"):
        if req.get(key):
            req[key] = Path(req[key]).name
    req["loras"] = [{**l, "path": Path(l["path"]).name} if isinstance(l, dict) and l.get("path") else l
                    for l in req.get("loras") or []]
    req["controls"] = [{**u, "image": Path(u["image"]).name} if isinstance(u, dict) and u.get("image") else u
                       for u in req.get("controls") or []]
    return req


# Free text a user typed: left as written (it is theirs, and not a server path even when it looks like one).
_USER_TEXT = {"prompt", "negative_prompt"}


def public_manifest(text: str, job_dir: Path) -> str:
    """manifest.jsonl for the download: every server path (job file, inputs, LoRAs, model folders, the job
    folder itself, paths inside error messages) relative to the job folder, or just a file name."""
    root = str(Path(job_dir).resolve())

    def clean(v, key=None):
        if isinstance(v, dict):
            return {clean(k): clean(x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x, key) for x in v]
        if isinstance(v, str) and key not in _USER_TEXT:
            return "." if v == root else hide_paths(v, job_dir)
        return v

    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.dumps(clean(json.loads(line)), ensure_ascii=False))
        except json.JSONDecodeError:
            lines.append(hide_paths(line, job_dir))
    return "\n".join(lines) + ("\n" if lines else "")


def _zip(job_dir: Path, zip_path: Path) -> None:
    """The sealed files byte for byte (stored, not recompressed) plus manifest.jsonl without server paths."""
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for f in sorted(job_dir.iterdir()):
            if not f.is_file() or f.name.startswith("."):
                continue
            if f.name == "manifest.jsonl":
                zf.writestr(f"{job_dir.name}/{f.name}", public_manifest(f.read_text(encoding="utf-8"), job_dir))
            else:
                zf.write(f, arcname=f"{job_dir.name}/{f.name}")
    tmp.replace(zip_path)
