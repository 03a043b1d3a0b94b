"""`studio render` / `studio replay` commands (batch prompt-file jobs, issue 5).

Imports of the job engine happen inside the commands, so `studio --help` stays fast and Ray stays optional.
"""
from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import List, Optional

import typer

EXIT_FAILED = 1
EXIT_BAD_REQUEST = 2
EXIT_CANCELLED = 130


def _parse_sets(pairs: List[str]) -> dict:
    from ..errors import RequestError
    from .spec import ALIASES, _coerce_text_value

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if not sep or not key:
            raise RequestError(f"--set takes KEY=VALUE, got {pair!r}")
        out[key] = _coerce_text_value(key, value)
    return out


def _summary_table(summary):
    from rich.table import Table

    table = Table(title=f"job summary ({summary.executor}, job seed {summary.job_seed})")
    for col in ("item", "line", "status", "time", "output / error"):
        table.add_column(col, overflow="fold")
    shown = [o for o in summary.items if o.status != "skipped"][:200]
    for o in shown:
        detail = o.error if o.status == "failed" else (", ".join(Path(p).name for p in o.outputs) or "")
        style = {"ok": "green", "failed": "red", "cancelled": "yellow"}.get(o.status, "")
        table.add_row(o.key, str(o.line), f"[{style}]{o.status}[/]" if style else o.status,
                      f"{o.elapsed_s:.1f}s" if o.elapsed_s else "", detail)
    return table


def render_command(
    file: Path = typer.Argument(..., help="Job file: .txt, .jsonl, .csv, .yaml/.yml or .json."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (holds the sealed files and manifest.jsonl)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Default model for items that name none."),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    workers: int = typer.Option(0, "--workers", help="Workers (local: threads, default 1; ray: actors, default "
                                                     "one per GPU or CPU slot)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray: join this cluster (e.g. auto, ray://h:10001)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Render the valid items even if some are invalid."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Job seed: item seeds derive from it and the item's id."),
    set_: List[str] = typer.Option([], "--set", help="Job default KEY=VALUE for any request field, repeatable."),
    cpu_threads: Optional[int] = typer.Option(None, "--cpu-threads", min=1,
                                              help="torch CPU threads per worker (CPU pixels depend on it; "
                                                   "default: this machine's, or the folder's recorded value)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files that this folder's manifest "
                                                              "does not record as finished."),
    seal_workers: int = typer.Option(1, "--seal-workers", min=0,
                                     help="Local executor: threads sealing and writing finished items while the "
                                          "next ones generate (0: seal inside each generation)."),
    batch_items: int = typer.Option(1, "--batch-items", min=1,
                                    help="Local executor: render up to N compatible txt2img items (same model, "
                                         "size, steps, sampler, guidance, LoRAs; own prompt and seed) in one "
                                         "pipeline call (1: each alone; replay reruns the recorded batch)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Render every item of a prompt file into sealed files + manifest.jsonl; re-run to resume."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from ..errors import RequestError, StudioError
    from .runner import InvalidJob, render

    err = Console(stderr=True)
    if executor not in ("local", "ray"):
        _fail(f"--executor must be local or ray, not {executor!r}")
    if workers < 0:
        _fail("--workers must be >= 0")
    if address and executor != "ray":
        _fail("--address needs --executor ray")
    if not file.is_file():
        _fail(f"{file} does not exist or is not a file")
    try:
        defaults = _parse_sets(set_)
    except (RequestError, ValueError) as exc:
        _fail(str(exc))
    cancel = threading.Event()
    interrupted = {"n": 0}

    def on_sigint(signum, frame):  # first Ctrl-C: finish cleanly (manifest stays consistent); second: abort
        interrupted["n"] += 1
        cancel.set()
        if interrupted["n"] > 1:
            raise KeyboardInterrupt

    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGINT, on_sigint)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("eta"), TimeRemainingColumn(), console=err, transient=False)
    state = {"task": None, "failed": 0}

    def on_start(spec, pending, skipped):
        if skipped:
            err.print(f"resuming: {skipped} item(s) already done in {out}, {pending} to render")
        state["task"] = progress.add_task("rendering", total=pending)
        progress.start()
        state["started"] = True

    def on_item(outcome, done, total):
        if outcome.status == "skipped" or state["task"] is None:
            return
        if outcome.status == "failed":
            state["failed"] += 1
            progress.console.print(f"[red]failed[/] {outcome.key} (line {outcome.line}): {outcome.error}")
        progress.update(state["task"], advance=1,
                        description=f"rendering ({state['failed']} failed)" if state["failed"] else "rendering")

    try:
        summary = render(file, out, model=model, defaults=defaults, seed=seed, executor=executor,
                         workers=workers or (1 if executor == "local" else 0), address=address,
                         skip_invalid=skip_invalid, cancel=cancel, on_item=on_item, on_start=on_start,
                         warn=lambda m: err.print(f"[yellow]warning:[/] {m}"), cpu_threads=cpu_threads,
                         overwrite=overwrite, seal_workers=seal_workers, batch_items=batch_items)
    except InvalidJob as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_REQUEST)
    except RequestError as exc:
        _fail(str(exc))
    except StudioError as exc:
        _fail(str(exc), EXIT_FAILED)
    finally:
        if state.get("started"):
            progress.stop()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    if summary.invalid:
        for i in summary.invalid:
            err.print(f"[yellow]skipped invalid[/] {file}:{i.line}: {i.message}")
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        console = Console()
        if any(o.status != "skipped" for o in summary.items):
            console.print(_summary_table(summary))
        console.print(f"{summary.succeeded} succeeded, {summary.failed} failed, {summary.skipped} skipped "
                      f"(already done), {len(summary.invalid)} invalid, {summary.cancelled} cancelled "
                      f"in {summary.elapsed_s:.1f}s -> {summary.manifest}")
    raise typer.Exit(summary.exit_code)


def replay_command(
    folder: Path = typer.Argument(..., help="A job output folder (with manifest.jsonl) or the manifest itself."),
    sample: Optional[int] = typer.Option(None, "--sample", help="Replay a random sample of N items (reproducible)."),
    keep: Optional[Path] = typer.Option(None, "--keep", help="Render into this folder (default: a temp dir)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-render a job's items and report which outputs are pixel-identical, which differ and why."""
    from rich.console import Console
    from rich.table import Table

    from ..errors import StudioError
    from .replay import replay

    if sample is not None and sample < 1:
        _fail("--sample must be >= 1")
    err = Console(stderr=True)
    try:
        report = replay(folder, sample=sample, render_dir=keep,
                        on_item=lambda it, n, total: err.print(f"[{n}/{total}] {it.key}: {it.status}"))
    except StudioError as exc:
        _fail(str(exc), EXIT_FAILED)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"replay of {report.manifest}")
        for col in ("item", "result", "why"):
            table.add_column(col, overflow="fold")
        for it in report.items:
            why = it.error if it.status == "failed" else "; ".join(it.reasons)
            table.add_row(it.key, it.status, why)
        console = Console()
        console.print(table)
        console.print(f"{report.count('identical')} identical, {report.count('differs')} differ, "
                      f"{report.count('failed')} failed (renders in {report.render_dir})")
        console.print(f"note: {report.note}")
    raise typer.Exit(report.exit_code)


def _fail(message: str, code: int = EXIT_BAD_REQUEST) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def register(app) -> None:
    app.command("render")(render_command)
    app.command("replay")(replay_command)
