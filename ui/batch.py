"""The Batch tab over the `studio.jobs` engine: validate a prompt file before starting, render it with live
progress and cancel, and hand back the outputs + manifest.jsonl as one zip."""
from __future__ import annotations

import json
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Optional

from studio import RequestError

from .errors import sanitize

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


def validate(path: Optional[str], registry, out_dir: Path) -> tuple[list[list], list[str]]:
    """(rows for the preview table, one line per problem). Nothing is rendered."""
    if not path:
        return [], []
    _, load_job = _jobs()
    try:
        spec = load_job(Path(path), check_model=registry.resolve)
    except RequestError as exc:
        return [], [sanitize(str(exc), out_dir)]
    rows = []
    for item in spec.items:
        r = item.request
        rows.append([item.line, item.key, r.prompt[:120], r.model or "default", r.mode,
                     f"{r.width or 'auto'}×{r.height or 'auto'}", r.steps or "default", r.batch])
    errors = [f"line {i.line}: {sanitize(i.message, out_dir)}" for i in spec.invalid]
    if not spec.items and not errors:
        errors.append("the file has no items")
    if len(spec.items) > MAX_ITEMS:
        errors.append(f"{len(spec.items)} items: the web app runs at most {MAX_ITEMS} per job "
                      f"(use `studio render` for more)")
    return rows, errors


def run(handlers, path: Optional[str], *, progress: Optional[ProgressFn] = None,
        cancel: Optional[threading.Event] = None) -> tuple[str, str, list[dict]]:
    """Render the job into a new folder under `batches/` and zip it. Returns (zip path, summary markdown,
    history entries of the outputs)."""
    if not path:
        raise RequestError("upload a prompt file first")
    rows, errors = validate(path, handlers.registry, handlers.out_dir)
    if errors:
        raise RequestError(f"{len(errors)} problem(s) in the prompt file; first: {errors[0]}")
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
        req = dict(obj.get("request") or {})
        for key in ("init_image", "mask"):
            if req.get(key):
                req[key] = Path(req[key]).name
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


def _zip(job_dir: Path, zip_path: Path) -> None:
    """The sealed files byte for byte (stored, not recompressed) plus manifest.jsonl."""
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for f in sorted(job_dir.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                zf.write(f, arcname=f"{job_dir.name}/{f.name}")
    tmp.replace(zip_path)
