"""An item's manifest line is written only after its files and the folder entries naming them are on disk
(issue 19): file bytes fsynced by write_atomic, the renames made durable by one folder fsync per item."""
from __future__ import annotations

import os

from fakes import FakeStudio

from studio.jobs import manifest as JM
from studio.jobs import render
from studio.jobs import runner as R


def test_folder_fsynced_after_the_renames_and_before_the_manifest_line(tmp_path, monkeypatch):
    out = tmp_path / "o"
    events: list[tuple] = []
    real_dir_sync, real_append = R._fsync_dir, JM.ManifestWriter.append

    def dir_sync(path):
        events.append(("dir", str(path), sorted(p.name for p in out.glob("*.png"))))
        real_dir_sync(path)

    def append(self, obj):
        if obj.get("type") == "item":
            events.append(("line", obj["id"], [o["path"] for o in obj["outputs"]]))
        real_append(self, obj)

    monkeypatch.setattr(R, "_fsync_dir", dir_sync)
    monkeypatch.setattr(JM.ManifestWriter, "append", append)
    s = render([{"prompt": f"p{i}", "id": f"i{i}", "batch": 1 + i % 2} for i in range(4)], out,
               studio=FakeStudio(), seed=1)
    assert s.succeeded == 4
    lines = [i for i, e in enumerate(events) if e[0] == "line"]
    assert len(lines) == 4
    for i in lines:
        before = events[i - 1]
        assert before[0] == "dir" and os.path.samefile(before[1], out)  # the folder, just before the line
        assert set(events[i][2]) <= set(before[2])  # ... after every file of the item was renamed into it


def test_failed_items_need_no_folder_sync(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(R, "_fsync_dir", lambda p: calls.append(p))
    s = render(["FAIL one", "FAIL two"], tmp_path / "o", studio=FakeStudio(), seed=1)
    assert s.failed == 2 and calls == []
