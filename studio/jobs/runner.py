"""The job engine behind `studio render`, the UI's batch tab and `studio.jobs.render(...)`.

The driver (this process) validates the whole job, owns the output folder and its manifest, and is the only
writer: executors return sealed bytes + records, the driver writes every file with the studio writer's
`write_atomic` (temp + fsync + rename) and then appends the item's manifest line (flush + fsync). So a
`kill -9` at any moment leaves finished items intact and listed once; an item whose file was written but whose
manifest line was not is simply rendered again on resume (its file is atomically replaced). With the local
executor the driver's seal threads do this for item i while item i+1 generates (see `LocalExecutor`); the
order per item -- seal, files durable, then its manifest line -- is the same.
"""
from __future__ import annotations

import gc
import logging
import os
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from ..errors import RequestError, StudioError
from ..modalities import EXTENSIONS, modality
from ..schema import GenerationRequest
from .manifest import MANIFEST, JobLock, ManifestState, ManifestWriter, WriteIntents, _fsync_dir, read_manifest
from .spec import Invalid, JobItem, JobSpec, assign_seeds, load_job

log = logging.getLogger(__name__)
_TMP_RE = re.compile(r"^\..+\.(png|jpg|webp|mp4|gif|wav|flac|mp3)\.[A-Za-z0-9_]+\.tmp$")
ItemCallback = Callable[["ItemOutcome", int, int], None]
StepCallback = Callable[[str, int, int], None]


class InvalidJob(RequestError):
    """The job file has invalid items and `skip_invalid` was not given."""

    def __init__(self, source, invalid: list[Invalid]):
        self.invalid = invalid
        where = str(source) if source is not None else "job"
        lines = "\n".join(f"  {where}:{i.line}: {i.message}" for i in invalid)
        super().__init__(f"{len(invalid)} invalid item(s) in {where}; nothing was rendered "
                         f"(fix them, or pass --skip-invalid):\n{lines}")


class JobCancelled(Exception):
    """Raised inside a worker's progress callback to stop the current item when the job is cancelled."""


@dataclass
class ItemOutcome:
    key: str
    line: int
    status: str  # ok | failed | skipped | cancelled
    prompt: str = ""
    outputs: list[str] = field(default_factory=list)
    error: Optional[str] = None
    elapsed_s: float = 0.0
    worker: Optional[str] = None


@dataclass
class JobSummary:
    out_dir: Path
    manifest: Path
    job_seed: int
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    invalid: list[Invalid] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    items: list[ItemOutcome] = field(default_factory=list)
    executor: str = "local"

    @property
    def exit_code(self) -> int:
        if self.failed:
            return 1
        if self.cancelled:
            return 130
        return 0

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "manifest": str(self.manifest), "job_seed": self.job_seed,
                "total": self.total, "succeeded": self.succeeded, "failed": self.failed, "skipped": self.skipped,
                "cancelled": self.cancelled, "invalid": [str(i) for i in self.invalid],
                "warnings": list(self.warnings), "elapsed_s": round(self.elapsed_s, 3), "executor": self.executor}


# -- the worker side (shared by the local threads and the Ray actors) -----------------------------------------
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def execute(studio, task: dict, *, cancel: Optional[threading.Event] = None,
            on_step: Optional[StepCallback] = None, worker: str = "local") -> dict:
    """Render one task with a `Studio`-like engine and return a plain, picklable result. Never raises for a
    failed item: the failure is the result (so one bad item never stops the job)."""
    return start(studio, task, cancel=cancel, on_step=on_step, worker=worker, deferred=False)


class PendingItem:
    """An item whose pixels are made and whose seal is not: `finish()` seals it (the engine's
    `Generated.finish`, i.e. `writer.seal_outputs`) and returns `execute`'s result. Never raises."""

    def __init__(self, key: str, generated, t0: float, render_s: float, worker: str, threads):
        self.key, self.worker = key, worker
        self._generated, self._t0, self._render_s, self._threads = generated, t0, render_s, threads

    def finish(self) -> dict:
        t1 = time.perf_counter()
        generated, self._generated = self._generated, None
        try:
            result = generated.finish()
            return _ok(self.key, result, self._render_s, self.worker, self._threads,
                       seal_s=round(time.perf_counter() - t1, 3))
        except (Exception, MemoryError) as exc:
            _free_memory()
            return _failed(self.key, exc, round(self._render_s + time.perf_counter() - t1, 3), self.worker)


def _ok(key, result, render_s, worker, threads, seal_s=None) -> dict:
    outputs = [{"data": bytes(o.data), "record": o.record.model_dump(mode="json")} for o in result.outputs]
    out = {"key": key, "status": "ok", "record": result.record.model_dump(mode="json"), "outputs": outputs,
           "render_s": render_s, "worker": worker, "cpu_threads": threads}
    if seal_s is not None:
        out["seal_s"] = seal_s
    return out


def _failed(key, exc, render_s, worker) -> dict:
    return {"key": key, "status": "failed", "error": _one_line(exc), "error_type": type(exc).__name__,
            "render_s": render_s, "worker": worker}


def supports_deferred_seal(studio) -> bool:
    """Whether `studio.generate` takes `deliver=False` (the engine does; a test double may not)."""
    import inspect

    try:
        return "deliver" in inspect.signature(studio.generate).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def start(studio, task: dict, *, cancel=None, on_step: Optional[StepCallback] = None, worker: str = "local",
          deferred: bool = False) -> Union[dict, PendingItem]:
    """Generate one task's pixels. `deferred` (a studio that `supports_deferred_seal`): return a
    `PendingItem` to seal later, else seal now and return `execute`'s result; a failed or cancelled item is
    always the result dict. Never raises for a failed item."""
    key = task["key"]
    t0 = time.perf_counter()

    def progress(step: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise JobCancelled()
        if on_step is not None:
            on_step(key, step, total)

    try:
        threads = set_cpu_threads(task.get("cpu_threads"))
        request = GenerationRequest.model_validate(task["request"])
        if deferred:
            generated = studio.generate(request, progress=progress, deliver=False)
            return PendingItem(key, generated, t0, round(time.perf_counter() - t0, 3), worker, threads)
        result = studio.generate(request, progress=progress)
        return _ok(key, result, round(time.perf_counter() - t0, 3), worker, threads)
    except JobCancelled:
        return {"key": key, "status": "cancelled", "worker": worker}
    except (Exception, MemoryError) as exc:  # RequestError, StudioError, torch OOM (a RuntimeError), ...
        if cancel is not None and cancel.is_set():
            return {"key": key, "status": "cancelled", "worker": worker}
        _free_memory()
        return _failed(key, exc, round(time.perf_counter() - t0, 3), worker)


def supports_batch(studio) -> bool:
    """Whether `studio` renders several requests in one call (`Studio.generate_batch`; a test double may not)."""
    return callable(getattr(studio, "generate_batch", None))


def start_batch(studio, task: dict, *, cancel=None, on_step: Optional[StepCallback] = None, worker: str = "local",
                deferred: bool = False, fallback: bool = True) -> Iterable[Union[dict, PendingItem]]:
    """Yield `start`'s result for each member of a batched task (`task["batch"]`: tasks of items that
    `studio.batching` found compatible), all generated in one `generate_batch` call. When that call fails,
    `fallback` renders the members one by one (each then succeeds or fails alone, with its own one-line
    error), else each member fails with the call's error. Never raises for a failed item."""
    members = task["batch"]
    keys = [m["key"] for m in members]
    t0 = time.perf_counter()

    def progress(step: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise JobCancelled()
        if on_step is not None:
            for key in keys:
                on_step(key, step, total)

    try:
        threads = set_cpu_threads(task.get("cpu_threads"))
        requests = [GenerationRequest.model_validate(m["request"]) for m in members]
        generated = studio.generate_batch(requests, keys=keys, progress=progress, deliver=False)
        render_s = round(time.perf_counter() - t0, 3)
        pending = [PendingItem(k, g, t0, render_s, worker, threads) for k, g in zip(keys, generated)]
    except JobCancelled:
        yield from ({"key": k, "status": "cancelled", "worker": worker} for k in keys)
        return
    except (Exception, MemoryError) as exc:
        if cancel is not None and cancel.is_set():
            yield from ({"key": k, "status": "cancelled", "worker": worker} for k in keys)
            return
        _free_memory()
        if not fallback:
            yield from (_failed(k, exc, round(time.perf_counter() - t0, 3), worker) for k in keys)
            return
        log.warning("a batched call of %d items failed (%s): rendering them one by one", len(keys), _one_line(exc))
        for m in members:
            yield start(studio, m, cancel=cancel, on_step=on_step, worker=worker, deferred=deferred)
        return
    for item in pending:
        yield item if deferred else item.finish()


def current_cpu_threads() -> Optional[int]:
    """torch's intra-op CPU thread count in this process (None without torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    return torch.get_num_threads()


def set_cpu_threads(n: Optional[int]) -> Optional[int]:
    """Pin torch's intra-op CPU threads: on CPU the pixels depend on it (reduction order), so every worker of
    a job (local thread or Ray actor, which Ray starts with 1 thread) renders with the job's count."""
    if not n:
        return current_cpu_threads()
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(int(n))
    return torch.get_num_threads()


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass


# -- executors ------------------------------------------------------------------------------------------------
SEAL_QUEUE = 2  # generated items waiting for a seal worker: the back-pressure bound (memory stays flat)


class LocalExecutor:
    """In-process worker threads. With an injected `studio` all threads share it (the studio serialises
    requests); otherwise each thread gets its own `studio_factory()` (default `studio.Studio`), i.e. its own
    loaded model, loaded once and reused for every item of that model.

    Generation and delivery overlap: a generation thread hands each item, pixels made but unsealed, to a
    queue of at most `SEAL_QUEUE` items (it blocks when the queue is full); `seal_workers` threads seal each
    one (`Generated.finish`), then, one at a time under a lock, write its files (temp + fsync + rename) and
    append its manifest line (fsync) -- so an item is listed only once its files are durable, in completion
    order. `seal_workers=0` seals inside the generation call (no overlap), as Ray actors do."""

    name = "local"

    def __init__(self, workers: int = 1, studio=None, studio_factory: Optional[Callable[[], Any]] = None,
                 seal_workers: int = 1):
        self.workers = max(1, int(workers))
        self.studio = studio
        self.studio_factory = studio_factory
        self.seal_workers = max(0, int(seal_workers))

    def _studios(self, n: int) -> list:
        if self.studio is not None:
            return [self.studio] * n
        if self.studio_factory is not None:
            return [self.studio_factory() for _ in range(n)]
        from ..engine import Studio, default_studio

        return [default_studio()] + [Studio() for _ in range(n - 1)]

    def run(self, tasks: list[dict], emit: Callable[[dict], None], cancel: threading.Event,
            on_step: Optional[StepCallback] = None) -> None:
        if not tasks:
            return
        n = min(self.workers, len(tasks))
        studios = self._studios(n)
        deferred = self.seal_workers > 0 and all(supports_deferred_seal(s) for s in studios)
        before = current_cpu_threads()
        work: "queue.Queue[dict]" = queue.Queue()
        for t in tasks:
            work.put(t)
        handoff: "queue.Queue[Any]" = queue.Queue(maxsize=SEAL_QUEUE)
        stop = threading.Event()  # set when the driver fails; cancels in-flight items too
        errors: list[BaseException] = []
        emit_lock = threading.Lock()

        class _Either:  # cancel or stop, as one event-like object for `execute`
            @staticmethod
            def is_set() -> bool:
                return cancel.is_set() or stop.is_set()

        def fail(exc: BaseException) -> None:
            errors.append(exc)
            stop.set()

        def hand_off(obj) -> bool:  # blocks while SEAL_QUEUE items wait: back-pressure on generation
            while not stop.is_set():
                try:
                    handoff.put(obj, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def generator(i: int) -> None:
            try:
                while not _Either.is_set():
                    try:
                        task = work.get_nowait()
                    except queue.Empty:
                        break
                    if "batch" in task and supports_batch(studios[i]):
                        results = start_batch(studios[i], task, cancel=_Either, on_step=on_step,
                                              worker=f"local-{i}", deferred=deferred)
                    else:  # one task, or a batch this studio cannot take as one call: one by one
                        results = (start(studios[i], t, cancel=_Either, on_step=on_step, worker=f"local-{i}",
                                         deferred=deferred) for t in task.get("batch", [task]))
                    if not all(hand_off(r) for r in results):
                        break
            except BaseException as exc:  # pragma: no cover - `start` reports failures as results
                fail(exc)

        def deliverer() -> None:
            try:
                while True:
                    try:
                        obj = handoff.get(timeout=0.05)
                    except queue.Empty:
                        if stop.is_set():
                            return
                        continue
                    if obj is None or stop.is_set():
                        return
                    if isinstance(obj, PendingItem):
                        # cancelled while it waited: abandoned unrecorded, like an item cut mid-steps
                        r = ({"key": obj.key, "status": "cancelled", "worker": obj.worker} if cancel.is_set()
                             else obj.finish())
                    else:
                        r = obj
                    with emit_lock:  # files, then the manifest line: one item at a time
                        if stop.is_set():
                            return
                        emit(r)
            except BaseException as exc:
                fail(exc)

        gens = [threading.Thread(target=generator, args=(i,), name=f"studio-job-{i}", daemon=True)
                for i in range(n)]
        sealers = [threading.Thread(target=deliverer, name=f"studio-job-seal-{i}", daemon=True)
                   for i in range(max(1, self.seal_workers))]
        for t in sealers + gens:
            t.start()
        try:
            for t in gens:
                t.join()
            for _ in sealers:
                hand_off(None)
            for t in sealers:
                t.join()
        except BaseException:
            stop.set()
            raise
        finally:
            for t in gens + sealers:
                t.join(timeout=None if not stop.is_set() else 60)
            set_cpu_threads(before)  # the thread count is process-wide: give the host (e.g. the UI) its own back
        if errors:
            raise errors[0]


def make_executor(kind: str, *, workers: int = 1, address: Optional[str] = None, studio=None,
                  studio_factory=None, seal_workers: int = 1):
    if kind == "local":
        return LocalExecutor(workers, studio=studio, studio_factory=studio_factory, seal_workers=seal_workers)
    if kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(workers=workers, address=address, studio_factory=studio_factory)
    raise RequestError(f"unknown executor {kind!r} (use local or ray)")


# -- the driver -----------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _clean_temp_files(out_dir: Path) -> int:
    """Remove the writer's temp files left by a killed run (`.NAME.EXT.XXXX.tmp`): never a finished output."""
    n = 0
    for p in out_dir.iterdir():
        if p.is_file() and _TMP_RE.match(p.name):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _inside(out_dir: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(out_dir.resolve())
        return True
    except ValueError:
        return False


def _model_checker(studio):
    registry = getattr(studio, "registry", None) if studio is not None else None
    if registry is None and studio is None:
        from ..registry import Registry

        registry = Registry()
    return registry.resolve if registry is not None else None


def _sort_key(item: JobItem):
    r = item.request
    return (r.model or "", r.width or 0, r.height or 0, r.mode, r.steps or 0, r.batch)


def render(
    source: Union[str, Path, Iterable],
    out_dir: Union[str, Path],
    *,
    model: Optional[str] = None,
    defaults: Optional[dict] = None,
    seed: Optional[int] = None,
    executor: str = "local",
    workers: int = 1,
    address: Optional[str] = None,
    skip_invalid: bool = False,
    studio=None,
    studio_factory: Optional[Callable[[], Any]] = None,
    cancel: Optional[threading.Event] = None,
    on_item: Optional[ItemCallback] = None,
    on_step: Optional[StepCallback] = None,
    on_start: Optional[Callable[[JobSpec, int, int], None]] = None,
    warn: Optional[Callable[[str], None]] = None,
    cpu_threads: Optional[int] = None,
    overwrite: bool = False,
    seal_workers: int = 1,
    batch_items: int = 1,
) -> JobSummary:
    """Render a job file (or a list of items: dicts, prompts or `GenerationRequest`s) into `out_dir`.

    `studio` (a `Studio`-like engine) is used by the local executor; Ray actors build their own with
    `studio_factory` (default `studio.Studio`). Resumes when `out_dir/manifest.jsonl` exists: finished items are skipped. `cancel` (a `threading.Event`)
    stops the job: the current item is abandoned between denoising steps and not recorded. `on_item(outcome,
    done, total)` is called after each finished or skipped item, `on_step(item_key, step, total)` per denoising
    step (local executor), `on_start(spec, pending, skipped)` once the job is validated. Raises `InvalidJob`
    (listing every invalid line) unless `skip_invalid`, and `StudioError` when the folder's manifest belongs
    to an incompatible job (another job seed or other models). `cpu_threads`: torch CPU threads per worker
    (default: this process's count, or the one recorded in the folder's manifest); CPU pixels depend on it, so
    it is fixed per job and applied by every worker, whatever the executor or worker count. An item whose
    output file already exists but is not recorded done in the folder's manifest is invalid unless
    `overwrite` (files of this job's own interrupted writes excepted). `seal_workers` (local executor): threads
    that seal and write item i while item i+1 generates (0: seal inside the generation, no overlap).
    `batch_items` (local executor): up to this many compatible items (`studio.batching`: same settings, own
    prompt and seed) render in one pipeline call; 1 renders each alone. Batched pixels can differ from lone
    ones in the last bits, so each record carries its call's composition and `studio replay` reruns it."""
    from ..writer import OutputExists  # here: the writer pulls in the safety stack, workers need none of it

    started = time.perf_counter()
    if isinstance(batch_items, bool) or not isinstance(batch_items, int) or batch_items < 1:
        raise RequestError(f"batch_items must be an integer >= 1, got {batch_items!r}")
    out_dir = Path(out_dir)
    cancel = cancel or threading.Event()
    warnings: list[str] = []

    def _warn(msg: str) -> None:
        warnings.append(msg)
        if warn is not None:
            warn(msg)

    job_defaults = dict(defaults or {})
    check_model = _model_checker(studio)
    if model is not None:
        registry = getattr(check_model, "__self__", None)
        if model not in (getattr(registry, "entries", None) or {}) and Path(model).expanduser().exists():
            model = str(Path(model).expanduser().resolve())  # a folder/file: the same job from any cwd
        job_defaults["model"] = model
    if isinstance(source, (str, Path)):
        spec = load_job(Path(source), defaults=job_defaults, check_model=check_model)
    else:
        spec = load_job(list(source), defaults=job_defaults, check_model=check_model)
    problems, refused = _output_problems(spec, out_dir, overwrite)
    if problems:
        spec.invalid = sorted(spec.invalid + problems, key=lambda i: i.line)
        spec.items = [item for item in spec.items if item.key not in refused]
    if spec.invalid and not skip_invalid:
        raise InvalidJob(spec.source, spec.invalid)
    if not spec.items:
        raise RequestError(f"{spec.source or 'job'}: no valid items to render")

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RequestError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
    manifest_path = out_dir / MANIFEST
    with JobLock(out_dir):
        state = read_manifest(manifest_path)
        previous = state.last_job
        job_seed = seed if seed is not None else spec.job_seed
        if previous is not None and previous.get("job_seed") is not None:
            if job_seed is None:
                job_seed = int(previous["job_seed"])
            elif int(previous["job_seed"]) != job_seed:
                raise StudioError(
                    f"{manifest_path} was started with job seed {previous['job_seed']}, not {job_seed}: "
                    f"resume with --seed {previous['job_seed']} or render into a new folder")
        if job_seed is None:
            job_seed = secrets.randbelow(2**32)
        threads = cpu_threads or (previous or {}).get("cpu_threads") or current_cpu_threads()
        if previous is not None and previous.get("cpu_threads") and previous["cpu_threads"] != threads:
            _warn(f"this folder was rendered with {previous['cpu_threads']} CPU thread(s) per worker, now {threads}: "
                  f"CPU renders can differ in the last bits")
        assign_seeds(spec, job_seed)

        done = state.done()
        intents = WriteIntents(out_dir)
        own_files = {name for names in intents.read().values() for name in names}
        keys = {item.key for item in spec.items}
        mismatched = [(item, done[item.key]) for item in spec.items
                      if item.key in done and done[item.key].get("model") != item.model]
        if mismatched:
            item, entry = mismatched[0]
            raise StudioError(
                f"{len(mismatched)} item(s) in {out_dir} were rendered with model {entry.get('model') or 'default'!s} "
                f"but the job now asks for {item.model or 'default'} (e.g. {item.key!r}): render into a new folder")
        if previous is not None and previous.get("file_sha256") != spec.file_sha256:
            kept = sum(1 for k in keys if k in done)
            orphans = sum(1 for k in done if k not in keys)
            _warn(f"job file changed since this folder's last run: {kept} finished item(s) still match and are "
                  f"skipped, {len(keys) - kept} will render, {orphans} finished item(s) are no longer in the file")
        if state.torn:
            _warn(f"ignored {state.torn} unreadable manifest line(s) (an interrupted write)")
        _clean_temp_files(out_dir)

        summary = JobSummary(out_dir=out_dir, manifest=manifest_path, job_seed=job_seed, total=len(spec.items),
                             invalid=list(spec.invalid), warnings=warnings, executor=executor)
        pending: list[JobItem] = []
        for item in spec.items:
            if item.key in done:
                summary.skipped += 1
                entry = done[item.key]
                summary.items.append(ItemOutcome(item.key, item.line, "skipped", item.request.prompt,
                                                 [str(out_dir / o["path"]) for o in entry.get("outputs", [])
                                                  if o.get("path")]))
            else:
                pending.append(item)
        pending.sort(key=_sort_key)  # one model (and shape) after another: each worker loads a model once
        by_key = {item.key: item for item in pending}
        prior_hash = {e.get("model"): e.get("model_hash") for e in done.values() if e.get("model_hash")}
        warned_models: set = set()
        total = len(spec.items)
        counter = {"done": summary.skipped}

        if on_start is not None:
            on_start(spec, len(pending), summary.skipped)
        for o in summary.items:
            if on_item is not None:
                on_item(o, counter["done"], total)

        with ManifestWriter(manifest_path) as manifest:
            manifest.append({"type": "job", "started_at": _now(), "file": str(spec.source) if spec.source else None,
                             "file_sha256": spec.file_sha256, "job_seed": job_seed, "defaults": spec.defaults,
                             "executor": executor, "workers": workers, "seal_workers": seal_workers,
                             "batch_items": batch_items,
                             "cpu_threads": threads, "items": len(spec.items),
                             "pending": len(pending), "skipped": summary.skipped,
                             "invalid": [{"line": i.line, "error": i.message} for i in spec.invalid]})
            written: set[str] = set()

            def emit(result: dict) -> None:
                key = result["key"]
                item = by_key.get(key)
                if item is None or key in written:
                    return  # a duplicate result (a retried task whose first attempt also came back): drop it
                status = result["status"]
                if status == "cancelled":
                    summary.cancelled += 1
                    outcome = ItemOutcome(key, item.line, "cancelled", item.request.prompt, worker=result.get("worker"))
                    summary.items.append(outcome)
                    if on_item is not None:
                        on_item(outcome, counter["done"], total)
                    return
                written.add(key)
                names = _result_names(item, result) if status == "ok" else []
                clash = next((n for n in names if not overwrite and n not in own_files
                              and os.path.lexists(out_dir / n)), None)
                if clash is not None:  # appeared since validation: someone else's file
                    status, result = "failed", {**result, "error_type": "OutputExists",
                                                "error": f"{out_dir / clash} appeared while the job ran; not replaced"}
                if status == "ok":
                    replace = {n for n in names if overwrite or n in own_files}
                    intents.record(key, names)
                    own_files.update(names)
                    try:
                        entry, outcome = _write_ok(out_dir, item, result, names, replace)
                    except OutputExists as exc:
                        status, result = "failed", {**result, "error_type": "OutputExists", "error": str(exc)}
                if status == "ok":
                    mh = entry.get("model_hash")
                    old = prior_hash.get(item.model)
                    if old and mh and old != mh and item.model not in warned_models:
                        warned_models.add(item.model)
                        _warn(f"model {item.model or 'default'} changed since earlier items in this folder were "
                              f"rendered (hash {old[:12]} -> {mh[:12]}); those outputs were kept")
                    summary.succeeded += 1
                else:
                    entry = {"type": "item", "id": key, "line": item.line, "status": "failed",
                             "model": item.model, "request": item.request.model_dump(mode="json"),
                             "error": result.get("error"), "error_type": result.get("error_type"),
                             "worker": result.get("worker"), "attempts": result.get("attempts", 1),
                             "timings": {"render_s": result.get("render_s"), "finished_at": _now()}}
                    outcome = ItemOutcome(key, item.line, "failed", item.request.prompt, error=result.get("error"),
                                          elapsed_s=result.get("render_s") or 0.0, worker=result.get("worker"))
                    summary.failed += 1
                manifest.append(entry)
                summary.items.append(outcome)
                counter["done"] += 1
                if on_item is not None:
                    on_item(outcome, counter["done"], total)

            tasks = [{"key": item.key, "request": item.request.model_dump(mode="json"), "cpu_threads": threads}
                     for item in pending]
            if batch_items > 1 and executor != "local":
                _warn(f"--batch-items applies to the local executor; {executor} renders items one by one")
            elif batch_items > 1:
                tasks = _batched(tasks, by_key, batch_items)
            runner = make_executor(executor, workers=workers, address=address, studio=studio,
                                   studio_factory=studio_factory, seal_workers=seal_workers)
            try:
                runner.run(tasks, emit, cancel, on_step)
            finally:
                unfinished = [k for k in by_key if k not in written
                              and not any(o.key == k and o.status == "cancelled" for o in summary.items)]
                if unfinished and cancel.is_set():
                    summary.cancelled += len(unfinished)
                summary.elapsed_s = time.perf_counter() - started
                manifest.append({"type": "summary", "finished_at": _now(), **summary.to_dict()})
                intents.settle(set(read_manifest(manifest_path).done()))
    return summary


def _batched(tasks: list[dict], by_key: dict, size: int) -> list[dict]:
    """Tasks of compatible items merged into batched tasks of at most `size` (the engine re-checks them)."""
    from ..batching import batch_key, group

    groups = group(tasks, size, key=lambda t: batch_key(by_key[t["key"]].request))
    return [g[0] if len(g) == 1 else {"key": g[0]["key"], "batch": g, "cpu_threads": g[0]["cpu_threads"]}
            for g in groups]


def item_output_names(item: JobItem, count: Optional[int] = None, fmt: Optional[str] = None) -> list[str]:
    """The file names an item's outputs get in the job folder (`count`/`fmt`: what the render returned)."""
    n = item.request.batch if count is None else count
    ext = EXTENSIONS[fmt or item.request.output_format or modality(item.request.modality).formats[0]]
    return [item.name + ("" if n == 1 else f"-{i}") + ext for i in range(n)]


def _result_names(item: JobItem, result: dict) -> list[str]:
    outputs = result.get("outputs") or []
    fmt = outputs[0]["record"].get("format") if outputs else None  # one request, one output format
    return item_output_names(item, len(outputs), fmt)


def _output_problems(spec: JobSpec, out_dir: Path, overwrite: bool) -> tuple[list[Invalid], set[str]]:
    """The writer's output check for every item that will render, with the rules of the other front doors;
    files named in the folder's `writing` lines are this job's own (a run killed mid-write) and replaceable."""
    from ..writer import check_output_targets

    check_output_targets(out_dir, names=[], create=False)  # the folder: one error for the job, not one per item
    manifest = out_dir / MANIFEST
    state = read_manifest(manifest) if manifest.is_file() else ManifestState()
    done = state.done()
    own = [out_dir / name for names in WriteIntents(out_dir).read().values() for name in names]
    problems, refused = [], set()
    for item in spec.items:
        if item.key in done:
            continue  # resumed: skipped, its files are the job's
        try:
            check_output_targets(out_dir, names=item_output_names(item), overwrite=overwrite, replaceable=own,
                                 inputs={"init image": item.request.init_image, "mask": item.request.mask,
                                         "init video": item.request.init_video,
                                         "init audio": item.request.init_audio},
                                 create=False)
        except RequestError as exc:
            problems.append(Invalid(item.line, str(exc)))
            refused.add(item.key)
    return problems, refused


def _write_ok(out_dir: Path, item: JobItem, result: dict, names: list[str],
              replace: set[str]) -> tuple[dict, ItemOutcome]:
    from ..writer import write_atomic

    t0 = time.perf_counter()
    record = result["record"]
    outputs = result["outputs"]
    out_records = []
    paths = []
    for out, name in zip(outputs, names):
        rec = dict(out["record"])
        path = out_dir / name
        if not _inside(out_dir, path):  # names are [a-z0-9-] + hash, so this cannot happen; belt and braces
            raise StudioError(f"refusing to write outside {out_dir}: {name!r}")
        write_atomic(path, out["data"], overwrite=name in replace)
        rec["path"] = name
        out_records.append(rec)
        paths.append(str(path))
    # write_atomic fsyncs each file's bytes; its rename is durable only once the folder is: one folder fsync for
    # the item, before its manifest line says the files exist (an OS crash or power cut, not only kill -9)
    _fsync_dir(out_dir)
    entry = {
        "type": "item", "id": item.key, "line": item.line, "status": "ok", "model": item.model,
        "model_name": record.get("model_name"), "model_source": record.get("model_source"),
        "model_family": record.get("model_family"), "model_hash": record.get("model_hash"),
        "lora_hashes": record.get("lora_hashes", []), "input_hashes": record.get("input_hashes", {}),
        "mode": record.get("mode"), "sampler": record.get("sampler"), "device": record.get("device"),
        "dtype": record.get("dtype"), "versions": record.get("versions", {}),
        "request": record.get("request"), "outputs": out_records, "worker": result.get("worker"),
        **({"batch": record["batch"]} if record.get("batch") else {}),  # the call it shared: replay reruns it
        "attempts": result.get("attempts", 1), "cpu_threads": result.get("cpu_threads"),
        "timings": {"render_s": result.get("render_s"), "seal_s": result.get("seal_s"),
                    "engine_s": record.get("elapsed_s"),
                    "write_s": round(time.perf_counter() - t0, 3), "finished_at": _now()},
    }
    return entry, ItemOutcome(item.key, item.line, "ok", item.request.prompt, paths,
                              elapsed_s=result.get("render_s") or 0.0, worker=result.get("worker"))
