"""`manifest.jsonl`: one JSON object a line, appended, flushed and fsynced per item by the driver only
(one line at a time; in completion order, so readers key on `id` and never assume order).

Line types:
* `{"type": "job", ...}`    -- written at the start of every run (first run and each resume): job file and its
                              sha256, job seed, defaults, executor, item count.
* `{"type": "item", ...}`   -- one per finished item: `id`, `status` ("ok" | "failed"), `model` (as asked),
                              `model_hash`, the full resolved `request`, `outputs` (path relative to the folder,
                              sha256 of the sealed file, pixel_sha256, seed...), `timings`, `error`.
* `{"type": "summary", ...}` -- written when a run ends (absent after a crash).

A crash can at worst leave a torn last line; readers ignore it and the next writer truncates it away.
For an item id that appears more than once (a failed item retried on resume) the last line wins.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

MANIFEST = "manifest.jsonl"
LOCK = ".studio-job.lock"
WRITING = ".studio-job.writing"


@dataclass
class ManifestState:
    jobs: list[dict] = field(default_factory=list)
    items: dict[str, dict] = field(default_factory=dict)  # last entry per item id
    lines: int = 0
    torn: int = 0  # unreadable lines ignored

    @property
    def last_job(self) -> Optional[dict]:
        return self.jobs[-1] if self.jobs else None

    def done(self) -> dict[str, dict]:
        return {k: v for k, v in self.items.items() if v.get("status") == "ok"}


def read_manifest(path: Path) -> ManifestState:
    state = ManifestState()
    if not path.exists():
        return state
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                state.torn += 1
                continue
            if not isinstance(obj, dict):
                state.torn += 1
                continue
            state.lines += 1
            kind = obj.get("type")
            if kind == "job":
                state.jobs.append(obj)
            elif kind == "item" and isinstance(obj.get("id"), str):
                state.items[obj["id"]] = obj
    return state


def _fsync_dir(path: Path) -> None:
    """Make the folder's entries (creates, renames) durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ManifestWriter:
    """Append-only writer. Opening it repairs a torn tail (a partial last line from a crash)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        self._fh = open(path, "ab+")
        self._repair()
        if created:
            _fsync_dir(path.parent)

    def _repair(self) -> None:
        fh = self._fh
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # Find the end of the last complete line and cut the fragment after it.
        pos, chunk = size, 65536
        keep = 0
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            data = fh.read(pos - start)
            idx = data.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())

    def append(self, obj: dict) -> None:
        line = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str) + "\n"
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WriteIntents:
    """`.studio-job.writing`: the names of an item's files, fsynced just before they are renamed into place.

    Between that rename and the item's manifest line a crash leaves files the manifest does not list; this
    record lets the next run tell them (this job's own, replaceable) from files someone else put there
    (refused without --overwrite). Removed once every item it names is recorded done."""

    def __init__(self, folder: Path):
        self.path = folder / WRITING

    def read(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        try:
            lines = self.path.read_bytes().splitlines()
        except OSError:
            return out
        for raw in lines:
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a torn last line: its rename never happened
            if isinstance(obj, dict) and isinstance(obj.get("id"), str) and isinstance(obj.get("paths"), list):
                out.setdefault(obj["id"], []).extend(str(p) for p in obj["paths"])
        return out

    def record(self, key: str, names: list[str]) -> None:
        with open(self.path, "ab") as fh:
            fh.write((json.dumps({"id": key, "paths": names}) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())

    def settle(self, done: set[str]) -> None:
        """Forget the items recorded done (their files are listed in the manifest now)."""
        left = {k: v for k, v in self.read().items() if k not in done}
        if not left:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".new")
        tmp.write_text("".join(json.dumps({"id": k, "paths": v}) + "\n" for k, v in left.items()))
        os.replace(tmp, self.path)


class JobLock:
    """An exclusive advisory lock on the output folder: two jobs never write one manifest."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self._fh = None

    def acquire(self) -> None:
        from ..errors import StudioError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            return
        except OSError:
            self._fh.close()
            self._fh = None
            raise StudioError(f"another job is writing to {self.path.parent} (lock {self.path.name} is held)")

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "JobLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
