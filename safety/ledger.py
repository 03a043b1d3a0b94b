"""Local provenance ledger: every issued manifest, keyed by watermark ID (SQLite in config_dir)."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional, Tuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    watermark_id TEXT,
    watermark_status TEXT NOT NULL,
    watermark_alg TEXT,
    instance_id TEXT,
    fmt TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    manifest_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS manifests_wm ON manifests(watermark_id);
CREATE INDEX IF NOT EXISTS manifests_sha ON manifests(sha256);
"""


_writers = threading.local()     # per thread: {path: (pid, (st_dev, st_ino), connection)}


def _file_id(path: Path) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Ledger:
    """Writes go through one connection per thread and ledger file, kept open (a seal records one row; opening
    the database and running the schema script each time was most of the ledger's cost, bench/seal_bench.py
    --delivery). Journal mode WAL with synchronous=FULL: every committed row is on disk when ``record`` returns
    (one fsync of the log instead of the rollback journal's several), readers in other processes see it."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        con.executescript(_SCHEMA)
        return con

    def _writer(self) -> sqlite3.Connection:
        cache = getattr(_writers, "cache", None)
        if cache is None:
            cache = _writers.cache = {}
        key = str(self.path)
        hit = cache.get(key)
        # A connection is reused only in the process that opened it (sqlite handles do not survive a fork) and
        # while the path still names the file it opened (a deleted or replaced ledger gets a new connection:
        # rows written to an unlinked file would be lost to every later lookup).
        if hit is not None and hit[0] == os.getpid() and hit[1] == _file_id(self.path):
            return hit[2]
        if hit is not None:
            cache.pop(key)
            if hit[0] == os.getpid():
                hit[2].close()
        con = self._connect()
        try:
            con.execute("PRAGMA journal_mode=WAL")     # needs a local file system (docs/safety.md, known gaps)
            con.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error:
            pass
        if len(cache) >= 8:
            for old in cache.values():
                if old[0] == os.getpid():
                    old[2].close()
            cache.clear()
        cache[key] = (os.getpid(), _file_id(self.path), con)
        return con

    def record(self, *, watermark_id: Optional[str], watermark_status: str, watermark_alg: Optional[str],
               instance_id: Optional[str], fmt: str, sha256: str, manifest: dict) -> None:
        row = (watermark_id, watermark_status, watermark_alg, instance_id, fmt, sha256, time.time(),
               json.dumps(manifest, sort_keys=True, default=str))
        con = self._writer()
        try:
            with con:
                con.execute("INSERT INTO manifests (watermark_id, watermark_status, watermark_alg, instance_id, fmt,"
                            " sha256, created_at, manifest_json) VALUES (?,?,?,?,?,?,?,?)", row)
        except sqlite3.Error:
            getattr(_writers, "cache", {}).pop(str(self.path), None)    # a broken connection is not reused
            con.close()
            raise

    def _one(self, where: str, arg: str) -> Optional[dict]:
        if not self.path.exists():
            return None
        con = self._connect()
        try:
            row = con.execute(f"SELECT watermark_id, watermark_status, watermark_alg, instance_id, fmt, sha256, "
                              f"created_at, manifest_json FROM manifests WHERE {where} = ? ORDER BY id DESC LIMIT 1",
                              (arg,)).fetchone()
        finally:
            con.close()
        if row is None:
            return None
        keys = ("watermark_id", "watermark_status", "watermark_alg", "instance_id", "fmt", "sha256", "created_at")
        out = dict(zip(keys, row[:7]))
        out["manifest"] = json.loads(row[7])
        return out

    def lookup(self, watermark_id: str) -> Optional[dict]:
        return self._one("watermark_id", watermark_id)

    def lookup_sha256(self, sha256: str) -> Optional[dict]:
        return self._one("sha256", sha256)
