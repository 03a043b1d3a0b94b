"""The ratings store: what a creator liked, disliked or picked as the best of a group, one JSON line per
rating in `ratings.jsonl` in the studio's config folder, appended and fsynced under a file lock, so a crash
or a second process never leaves a half line behind a good one (a torn last line is skipped on read and
sealed off by the next append). The UI, the CLI and scripts rate through `RatingStore` / `rate`.

A rated item is an engine `Output`, a path to a sealed file, or a dict with at least `sha256` and `prompt`.
Each line keeps the item's sha256, path, prompt, seed, model hash and modality, so the learned reward can
re-read the media later (and refuse a file that changed since)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional

from ..config import config_dir
from ..errors import RequestError

KINDS = ("like", "dislike", "pick")
FILE_NAME = "ratings.jsonl"
_lock = threading.Lock()


def _find_params(manifest: Any) -> Optional[dict]:
    """The studio's generation params inside a sealed output's manifest (the assertion with a request)."""
    if isinstance(manifest, dict):
        p = manifest.get("params")
        if isinstance(p, dict) and "request" in p:
            return p
        manifest = list(manifest.values())
    if isinstance(manifest, list):
        for v in manifest:
            found = _find_params(v)
            if found is not None:
                return found
    return None


def describe(item: Any, prompt: Optional[str] = None) -> dict:
    """The stored description of one rated item (see the module docstring for what an item may be)."""
    params: Optional[dict] = None
    if isinstance(item, dict):
        ref = {k: item.get(k) for k in ("sha256", "path", "prompt", "seed", "model_hash", "modality", "format")}
        if not ref["sha256"]:
            raise RequestError("a rated item needs its sha256 (of the sealed file)")
    elif hasattr(item, "record") and hasattr(item, "data"):  # writer.Output
        rec = item.record
        params = _find_params(getattr(item, "manifest", None)) or {}
        ref = {"sha256": rec.sha256, "path": rec.path, "seed": rec.seed, "format": rec.format}
    elif isinstance(item, (str, Path)):
        path = Path(item).expanduser()
        if not path.is_file():
            raise RequestError(f"cannot rate {path}: no such file")
        from ..metadata import read_info

        ref = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "path": str(path.resolve())}
        params = read_info(path) or {}
    else:
        raise RequestError(f"cannot rate a {type(item).__name__}: give an output, a file path or a dict")
    if params:
        req = params.get("request") or {}
        if ref.get("seed") is None:
            ref["seed"] = params.get("seed")
        ref["prompt"] = req.get("prompt")
        ref["model_hash"] = params.get("model_hash")
        ref["modality"] = req.get("modality")
    if prompt is not None:
        ref["prompt"] = prompt
    if ref.get("path"):
        ref["path"] = str(Path(ref["path"]).expanduser().resolve())
    return {k: v for k, v in ref.items() if v is not None}


class RatingStore:
    def __init__(self, path: Optional[os.PathLike | str] = None):
        self.path = Path(path) if path else config_dir() / FILE_NAME

    # -- writing -----------------------------------------------------------------------------------------
    def _append(self, entry: dict) -> dict:
        line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                try:
                    import fcntl

                    fcntl.flock(fd, fcntl.LOCK_EX)  # another process (CLI while the app runs) appends too
                except ImportError:  # pragma: no cover - Windows: the thread lock only
                    pass
                size = os.fstat(fd).st_size
                if size:
                    with open(self.path, "rb") as fh:
                        fh.seek(size - 1)
                        if fh.read(1) != b"\n":
                            line = b"\n" + line  # a crash tore the last line: keep ours whole on its own line
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def add(self, kind: str, item: Any, *, others: Iterable[Any] = (), prompt: Optional[str] = None,
            note: Optional[str] = None) -> dict:
        """Record one rating and return its line. `kind` like/dislike rates `item`; pick says `item` is the
        best of the group `item` + `others` (len(others) pairs for the learned reward)."""
        if kind not in KINDS:
            raise RequestError(f"unknown rating {kind!r}: use {', '.join(KINDS)}")
        entry: dict = {"v": 1, "id": uuid.uuid4().hex, "kind": kind,
                       "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                       "item": describe(item, prompt)}
        others = [describe(o, prompt) for o in others]
        if kind == "pick":
            others = [o for o in others if o["sha256"] != entry["item"]["sha256"]]
            if not others:
                raise RequestError("a pick needs the other candidates it was picked from")
            entry["others"] = others
        elif others:
            raise RequestError(f"{kind} rates one item; others apply to a pick")
        if not entry["item"].get("prompt"):
            raise RequestError("the rated item's prompt is unknown (not a studio output?): pass prompt=")
        if note:
            entry["note"] = str(note)[:500]
        return self._append(entry)

    def like(self, item, **kw) -> dict:
        return self.add("like", item, **kw)

    def dislike(self, item, **kw) -> dict:
        return self.add("dislike", item, **kw)

    def pick(self, best, others, **kw) -> dict:
        return self.add("pick", best, others=others, **kw)

    # -- reading -----------------------------------------------------------------------------------------
    def ratings(self) -> list[dict]:
        """Every whole rating line, oldest first (a torn or foreign line is skipped)."""
        if not self.path.is_file():
            return []
        out = []
        for raw in self.path.read_bytes().split(b"\n"):
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("kind") in KINDS and isinstance(entry.get("item"), dict):
                out.append(entry)
        return out

    def pairs(self) -> list[tuple[dict, dict, str, str]]:
        """(preferred, other, prompt, rating id) for every pick: N-1 pairs per pick of N."""
        return [(r["item"], o, r["item"].get("prompt", ""), r["id"])
                for r in self.ratings() if r["kind"] == "pick" for o in r.get("others", [])]

    def likes(self) -> list[tuple[dict, str, bool]]:
        return [(r["item"], r["item"].get("prompt", ""), r["kind"] == "like")
                for r in self.ratings() if r["kind"] in ("like", "dislike")]

    def export(self, path: os.PathLike | str) -> Path:
        """The ratings as JSONL (one whole line each), written atomically."""
        from ..writer import write_atomic

        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.ratings()).encode()
        write_atomic(Path(path), data)
        return Path(path)


def rate(item: Any, kind: str, *, others: Iterable[Any] = (), prompt: Optional[str] = None,
         store: Optional[RatingStore] = None) -> dict:
    """`rate(result.outputs[0], "like")`, `rate(best, "pick", others=rest)`: into the default store."""
    return (store or RatingStore()).add(kind, item, others=others, prompt=prompt)
