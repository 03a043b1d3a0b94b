"""Every output this server delivered, with its parameters: `history.jsonl` in the output folder, so the
gallery survives a restart (and travels with the folder)."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Optional

FILE = "history.jsonl"


class History:
    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.file = self.out_dir / FILE
        self._lock = threading.Lock()

    def add(self, entry: dict) -> dict:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry}
        line = json.dumps(entry, sort_keys=True, default=str)
        with self._lock:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.file, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
        return entry

    def entries(self, limit: Optional[int] = None) -> list[dict]:
        """Newest first; entries whose file is gone (deleted by hand) are left out; a torn last line is skipped."""
        if not self.file.exists():
            return []
        out = []
        with self._lock:
            lines = self.file.read_text(encoding="utf-8", errors="replace").splitlines()
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(entry, dict) or not entry.get("path"):
                continue
            if not self.abspath(entry).is_file():
                continue
            out.append(entry)
            if limit and len(out) >= limit:
                break
        return out

    def get(self, entry_id: str) -> Optional[dict]:
        for e in self.entries():
            if e.get("id") == entry_id:
                return e
        return None

    def abspath(self, entry: dict) -> Path:
        return self.out_dir / entry["path"]
