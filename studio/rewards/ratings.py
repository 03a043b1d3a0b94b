"""The ratings store: what a creator liked, disliked or picked as the best of a group, in one SQLite file
(`ratings.db` in the studio's config folder; stdlib sqlite3, WAL, a schema version in `PRAGMA user_version`).
The web app, the CLI (`studio rate`) and scripts rate through `RatingStore` / `rate`, so a server with
several requests, a CLI run and a script can write at once: each rating is one `BEGIN IMMEDIATE`
transaction (a pick and its N-1 pairs land together or not at all), readers never block writers (WAL), and a
busy writer waits up to `BUSY_TIMEOUT_S` instead of failing.

A rated item is an engine `Output`, a path to a sealed file, or a dict with at least `sha256` and `prompt`
(a script or a simulated rater that vouches for its own items). A path is verified first (C2PA signature
and hashes): an unsealed, tampered or foreign file is refused in one line, and the item keeps what the
seal says: prompt, seed, model hash, modality, format and the output's whole sealed record (`record`), so
the learned reward can re-read the media later (and refuse a file that changed since) and `studio tune`
can replay the request.

Tables: `items` (one row per sealed file, by sha256), `ratings` (one row per like / dislike / pick, in the
order given), `pairs` (a pick of the best of N is N-1 rows: winner, loser). `export()` writes the ratings
as JSONL, one whole line each, in the line format of the studio's first, JSONL-only store (`v: 1`), which
`import_jsonl()` reads back; an old `ratings.jsonl` next to the database is imported when the store
opens (again only when it changed; rating ids make that idempotent), and is left in place."""
from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from ..config import config_dir
from ..errors import RequestError

KINDS = ("like", "dislike", "pick")
FILE_NAME = "ratings.db"
JSONL_NAME = "ratings.jsonl"  # the first store's file: imported, never written any more
SCHEMA_VERSION = 1
LINE_VERSION = 1  # the JSONL line format (`v`) of export() / import_jsonl()
BUSY_TIMEOUT_S = 30.0
ITEM_FIELDS = ("sha256", "path", "prompt", "seed", "model_hash", "modality", "format")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    sha256 TEXT PRIMARY KEY, path TEXT, prompt TEXT, seed INTEGER, model_hash TEXT, modality TEXT,
    format TEXT, record TEXT);
CREATE TABLE IF NOT EXISTS ratings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('like', 'dislike', 'pick')), time TEXT NOT NULL,
    item TEXT NOT NULL REFERENCES items(sha256), prompt TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS pairs (
    rating TEXT NOT NULL REFERENCES ratings(id) ON DELETE CASCADE, pos INTEGER NOT NULL,
    winner TEXT NOT NULL REFERENCES items(sha256), loser TEXT NOT NULL REFERENCES items(sha256),
    PRIMARY KEY (rating, pos));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE INDEX IF NOT EXISTS ratings_item ON ratings(item);
"""
_opened: set = set()  # databases whose schema this process has checked (and whose old JSONL it imported)
_open_lock = threading.RLock()  # re-entered by the JSONL import below
_local = threading.local()


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


_REFUSED = {"none": "it carries no content credentials (not a sealed studio output)",
            "invalid": "its seal does not verify (changed since it was sealed, or a bad signature)"}


def sealed_record(path: os.PathLike | str) -> tuple[dict, str]:
    """(the studio's generation record, format) of a sealed output file, read from its verified C2PA
    manifest; RequestError, one line, for a missing, unsealed, tampered or foreign file."""
    import safety

    from ..writer import safety_config

    path = Path(path).expanduser()
    if not path.is_file():
        raise RequestError(f"cannot rate {path}: no such file")
    rep = safety.verify(path, config=safety_config())
    if not rep.ok:
        why = _REFUSED.get(rep.state) or (rep.error or rep.state)
        raise RequestError(f"cannot rate {path.name}: {why}")
    params = (rep.manifest or {}).get("params")
    if not isinstance(params, dict) or not isinstance(params.get("request"), dict):
        raise RequestError(f"cannot rate {path.name}: its seal holds no studio generation record")
    return params, rep.fmt


def describe(item: Any, prompt: Optional[str] = None) -> dict:
    """The stored description of one rated item (see the module docstring for what an item may be)."""
    params: Optional[dict] = None
    if isinstance(item, dict):
        ref = {k: item.get(k) for k in ITEM_FIELDS}
        if isinstance(item.get("record"), dict):
            ref["record"] = item["record"]
        if not ref["sha256"]:
            raise RequestError("a rated item needs its sha256 (of the sealed file)")
    elif hasattr(item, "record") and hasattr(item, "data"):  # writer.Output: sealed by the engine itself
        rec = item.record
        params = _find_params(getattr(item, "manifest", None)) or {}
        ref = {"sha256": rec.sha256, "path": rec.path, "seed": rec.seed, "format": rec.format}
    elif isinstance(item, (str, Path)):
        import hashlib

        path = Path(item).expanduser()
        params, fmt = sealed_record(path)
        # hashed after the verify: a file swapped in between would be rated as what it now is
        ref = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "path": str(path.resolve()), "format": fmt}
    else:
        raise RequestError(f"cannot rate a {type(item).__name__}: give an output, a file path or a dict")
    if params:
        req = params.get("request") or {}
        if ref.get("seed") is None:
            ref["seed"] = params.get("seed")
        ref["prompt"] = req.get("prompt")
        ref["model_hash"] = params.get("model_hash")
        ref["modality"] = req.get("modality")
        ref["record"] = {k: v for k, v in params.items() if not k.startswith("_")}
    if prompt is not None:
        ref["prompt"] = prompt
    if ref.get("path"):
        ref["path"] = str(Path(ref["path"]).expanduser().resolve())
    return {k: v for k, v in ref.items() if v is not None}


def _losers(winner: dict, others: list[dict]) -> list[dict]:
    """The others of a pick without the winner and repeats: one pair per distinct loser."""
    seen, out = {winner["sha256"]}, []
    for o in others:
        if o["sha256"] not in seen:
            seen.add(o["sha256"])
            out.append(o)
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RatingStore:
    """`path`: the SQLite file (default `<config dir>/ratings.db`). A path ending in `.jsonl` names a store
    of the first, JSONL-only format: the database is the `.db` beside it and that file is imported."""

    def __init__(self, path: Optional[os.PathLike | str] = None):
        path = Path(path).expanduser() if path else config_dir() / FILE_NAME
        if path.suffix == ".jsonl":
            path = path.with_suffix(".db")
        self.path = path
        self.legacy_path = path.with_suffix(".jsonl")

    # -- the database ------------------------------------------------------------------------------------
    def _connect(self, fresh: bool = False) -> sqlite3.Connection:
        """This thread's connection to the file. Kept open, per thread and process: sqlite3 connections must
        not cross threads (nor a fork), and closing the last connection to a WAL database checkpoints and
        fsyncs it, which made every rating cost ~150 ms instead of well under one."""
        if fresh:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA foreign_keys = ON")
            # WAL + NORMAL: a commit survives the process crashing at any point; a power cut may lose the
            # last commits but never corrupts the file (FULL would fsync every rating: ~20 ms each here)
            con.execute("PRAGMA synchronous = NORMAL")
            return con
        if getattr(_local, "pid", None) != os.getpid():
            _local.pid, _local.cons = os.getpid(), {}  # a forked child must not use its parent's connections
        key = str(self.path)
        con = _local.cons.get(key)
        if con is None:
            con = _local.cons[key] = self._connect(fresh=True)
        return con

    def _forget(self) -> None:
        cons = getattr(_local, "cons", None) if getattr(_local, "pid", None) == os.getpid() else None
        con = cons.pop(str(self.path), None) if cons else None
        if con is not None:
            con.close()

    def _open(self) -> None:
        """Create or check the schema, once per process and file; then import an old JSONL beside it."""
        key = str(self.path.resolve())
        with _open_lock:
            if key in _opened and self.path.is_file():
                return
            self._forget()  # a cached connection to a file deleted since would write into nothing
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = None
            try:
                con = self._connect(fresh=True)
                con.execute("PRAGMA journal_mode = WAL")  # persistent: readers never block the writer
                con.execute("BEGIN IMMEDIATE")
                version = con.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    con.execute("ROLLBACK")
                    raise RequestError(f"ratings store {self.path.name} has schema {version}, newer than this "
                                       f"studio's {SCHEMA_VERSION}: upgrade the studio")
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    con.execute(stmt)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                con.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if con is not None and con.in_transaction:
                    con.execute("ROLLBACK")
                raise RequestError(f"cannot open the ratings store {self.path.name}: {exc}") from None
            finally:
                if con is not None:
                    con.close()
            _opened.add(key)
            if self.legacy_path.is_file():  # under the lock: no thread reads the store before it is in
                self._import_legacy()

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        self._open()
        con = self._connect()
        con.execute(begin)
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _read(self):
        return self._transaction("BEGIN")  # one snapshot for the whole read

    def _write(self):
        return self._transaction("BEGIN IMMEDIATE")  # the write lock now, not halfway through

    @staticmethod
    def _put_item(con: sqlite3.Connection, ref: dict) -> None:
        record = json.dumps(ref["record"], sort_keys=True) if isinstance(ref.get("record"), dict) else None
        # the newest description wins field by field (a file rated again after a move keeps its new path)
        con.execute(
            "INSERT INTO items (sha256, path, prompt, seed, model_hash, modality, format, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET "
            "path = COALESCE(excluded.path, path), prompt = COALESCE(excluded.prompt, prompt), "
            "seed = COALESCE(excluded.seed, seed), model_hash = COALESCE(excluded.model_hash, model_hash), "
            "modality = COALESCE(excluded.modality, modality), format = COALESCE(excluded.format, format), "
            "record = COALESCE(excluded.record, record)",
            (*(ref.get(k) for k in ITEM_FIELDS), record))

    def _insert(self, con: sqlite3.Connection, entry: dict) -> bool:
        """Store one rating line (already checked); False when its id is already there."""
        if con.execute("SELECT 1 FROM ratings WHERE id = ?", (entry["id"],)).fetchone():
            return False
        item = entry["item"]
        self._put_item(con, item)
        for o in entry.get("others", []):
            self._put_item(con, o)
        con.execute("INSERT INTO ratings (id, kind, time, item, prompt, note) VALUES (?, ?, ?, ?, ?, ?)",
                    (entry["id"], entry["kind"], entry["time"], item["sha256"], item.get("prompt"),
                     entry.get("note")))
        con.executemany("INSERT INTO pairs (rating, pos, winner, loser) VALUES (?, ?, ?, ?)",
                        [(entry["id"], i, item["sha256"], o["sha256"]) for i, o in enumerate(entry.get("others", []))])
        return True

    # -- writing -----------------------------------------------------------------------------------------
    def add(self, kind: str, item: Any, *, others: Iterable[Any] = (), prompt: Optional[str] = None,
            note: Optional[str] = None) -> dict:
        """Record one rating and return it (as `ratings()` lists it). `kind` like/dislike rates `item`; pick
        says `item` is the best of the group `item` + `others` (len(others) pairs for the learned reward)."""
        if kind not in KINDS:
            raise RequestError(f"unknown rating {kind!r}: use {', '.join(KINDS)}")
        entry: dict = {"v": LINE_VERSION, "id": uuid.uuid4().hex, "kind": kind, "time": _now(),
                       "item": describe(item, prompt)}
        others = [describe(o, prompt) for o in others]
        if kind == "pick":
            entry["others"] = _losers(entry["item"], others)
            if not entry["others"]:
                raise RequestError("a pick needs the other candidates it was picked from")
        elif others:
            raise RequestError(f"{kind} rates one item; others apply to a pick")
        if not entry["item"].get("prompt"):
            raise RequestError("the rated item's prompt is unknown (not a studio output?): pass prompt=")
        if note:
            entry["note"] = str(note)[:500]
        with self._write() as con:
            self._insert(con, entry)
        return entry

    def like(self, item, **kw) -> dict:
        return self.add("like", item, **kw)

    def dislike(self, item, **kw) -> dict:
        return self.add("dislike", item, **kw)

    def pick(self, best, others, **kw) -> dict:
        return self.add("pick", best, others=others, **kw)

    # -- reading -----------------------------------------------------------------------------------------
    @staticmethod
    def _item(row: sqlite3.Row, prompt: Optional[str] = None) -> dict:
        ref = {k: row[k] for k in ITEM_FIELDS}
        if prompt is not None:
            ref["prompt"] = prompt  # as it was rated (a --prompt given for that rating)
        if row["record"]:
            ref["record"] = json.loads(row["record"])
        return {k: v for k, v in ref.items() if v is not None}

    def ratings(self, limit: Optional[int] = None) -> list[dict]:
        """Every rating, oldest first (the `limit` newest with a limit), each as one JSONL line of
        `export()`: {v, id, kind, time, item, others (picks), note}."""
        with self._read() as con:
            items = {r["sha256"]: r for r in con.execute("SELECT * FROM items")}
            sql = "SELECT * FROM ratings ORDER BY seq"
            rows = con.execute(sql).fetchall()
            if limit is not None:
                rows = rows[-int(limit):] if limit > 0 else []
            losers: dict[str, list[str]] = {}
            for p in con.execute("SELECT rating, loser FROM pairs ORDER BY rating, pos"):
                losers.setdefault(p["rating"], []).append(p["loser"])
        out = []
        for r in rows:
            entry = {"v": LINE_VERSION, "id": r["id"], "kind": r["kind"], "time": r["time"],
                     "item": self._item(items[r["item"]], r["prompt"])}
            if r["kind"] == "pick":
                entry["others"] = [self._item(items[s]) for s in losers.get(r["id"], [])]
            if r["note"]:
                entry["note"] = r["note"]
            out.append(entry)
        return out

    def pairs(self) -> list[tuple[dict, dict, str, str]]:
        """(preferred, other, prompt, rating id) for every pick: N-1 pairs per pick of N."""
        return [(r["item"], o, r["item"].get("prompt", ""), r["id"])
                for r in self.ratings() if r["kind"] == "pick" for o in r.get("others", [])]

    def likes(self) -> list[tuple[dict, str, bool]]:
        return [(r["item"], r["item"].get("prompt", ""), r["kind"] == "like")
                for r in self.ratings() if r["kind"] in ("like", "dislike")]

    def count(self) -> dict:
        """{"like", "dislike", "pick": ratings of each kind, "pairs": preference pairs, "items": rated files,
        "total": ratings}, counted in the database (cheap enough for a page that shows it after each click)."""
        with self._read() as con:
            got = dict(con.execute("SELECT kind, COUNT(*) FROM ratings GROUP BY kind").fetchall())
            n_pairs = con.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
            n_items = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        counts = {k: int(got.get(k, 0)) for k in KINDS}
        return {**counts, "pairs": int(n_pairs), "items": int(n_items), "total": sum(counts.values())}

    def export(self, path: os.PathLike | str) -> Path:
        """The ratings as JSONL (one whole line each, oldest first), written atomically."""
        from ..writer import write_atomic

        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.ratings()).encode()
        write_atomic(Path(path), data)
        return Path(path)

    # -- importing ---------------------------------------------------------------------------------------
    @staticmethod
    def _checked_line(entry: Any) -> Optional[dict]:
        """A JSONL rating line as stored, or None for one that is not a whole rating (a torn last line of
        the old store, a foreign line)."""
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS or not isinstance(entry.get("item"), dict):
            return None
        if not entry.get("id") or not entry["item"].get("sha256"):
            return None
        others = entry.get("others") or []
        if entry["kind"] == "pick" and (not others or not all(isinstance(o, dict) and o.get("sha256")
                                                               for o in others)):
            return None
        line = {"v": LINE_VERSION, "id": str(entry["id"]), "kind": entry["kind"],
                "time": str(entry.get("time") or _now()), "item": describe(entry["item"])}
        if entry["kind"] == "pick":
            line["others"] = _losers(line["item"], [describe(o) for o in others])
            if not line["others"]:
                return None
        if entry.get("note"):
            line["note"] = str(entry["note"])[:500]
        return line

    def import_jsonl(self, path: os.PathLike | str) -> dict:
        """Add the ratings of a JSONL file (an `export()`, or the first store's `ratings.jsonl`); a rating
        already here (same id) is not added twice. Returns {"added", "present", "skipped"} (skipped: lines
        that are not whole ratings)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise RequestError(f"cannot import {path}: no such file")
        counts = {"added": 0, "present": 0, "skipped": 0}
        lines = []
        for raw in path.read_bytes().split(b"\n"):
            if not raw.strip():
                continue
            try:
                line = self._checked_line(json.loads(raw))
            except (ValueError, RequestError):
                line = None
            if line is None:
                counts["skipped"] += 1
            else:
                lines.append(line)
        with self._write() as con:
            for line in lines:
                counts["added" if self._insert(con, line) else "present"] += 1
        return counts

    def _import_legacy(self) -> None:
        st = self.legacy_path.stat()
        mark = f"{st.st_size}:{st.st_mtime_ns}"
        with self._read() as con:
            row = con.execute("SELECT value FROM meta WHERE key = 'legacy_jsonl'").fetchone()
        if row is not None and row[0] == mark:
            return
        self.import_jsonl(self.legacy_path)
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('legacy_jsonl', ?)", (mark,))


def rate(item: Any, kind: str, *, others: Iterable[Any] = (), prompt: Optional[str] = None,
         store: Optional[RatingStore] = None) -> dict:
    """`rate(result.outputs[0], "like")`, `rate(best, "pick", others=rest)`: into the default store."""
    return (store or RatingStore()).add(kind, item, others=others, prompt=prompt)
