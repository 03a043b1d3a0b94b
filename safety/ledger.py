"""Local provenance ledger: every issued manifest, keyed by watermark ID (SQLite in config_dir)."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Optional

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


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        con.executescript(_SCHEMA)
        return con

    def record(self, *, watermark_id: Optional[str], watermark_status: str, watermark_alg: Optional[str],
               instance_id: Optional[str], fmt: str, sha256: str, manifest: dict) -> None:
        con = self._connect()
        try:
            with con:
                con.execute("INSERT INTO manifests (watermark_id, watermark_status, watermark_alg, instance_id, fmt,"
                            " sha256, created_at, manifest_json) VALUES (?,?,?,?,?,?,?,?)",
                            (watermark_id, watermark_status, watermark_alg, instance_id, fmt, sha256, time.time(),
                             json.dumps(manifest, sort_keys=True, default=str)))
        finally:
            con.close()

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
