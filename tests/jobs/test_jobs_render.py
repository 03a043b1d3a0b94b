"""The job engine with a fake `Studio`: manifest, resume, failure isolation, cancel, crash safety, CLI."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fakes import FakeStudio, pixel_hash
from studio.jobs import InvalidJob, read_manifest, render, replay
from studio.jobs.manifest import MANIFEST, ManifestWriter

HERE = Path(__file__).parent


def _items(manifest: Path):
    return [json.loads(l) for l in manifest.read_text().splitlines() if l.strip() and '"type": "item"' in l]


def _check_outputs(out: Path):
    """Every manifest output exists, decodes, and matches its recorded hashes."""
    import hashlib

    for e in _items(out / MANIFEST):
        for o in e.get("outputs", []):
            data = (out / o["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == o["sha256"]
            assert pixel_hash(data) == o["pixel_sha256"]


def test_render_writes_sealed_outputs_and_manifest(tmp_path, fake):
    job = tmp_path / "p.txt"
    job.write_text("a cat\na dog | batch=2 | steps=3\n")
    out = tmp_path / "out"
    s = render(job, out, studio=fake, seed=1)
    assert (s.succeeded, s.failed, s.skipped, s.exit_code) == (2, 0, 0, 0)
    lines = [json.loads(l) for l in (out / MANIFEST).read_text().splitlines()]
    assert [l["type"] for l in lines] == ["job", "item", "item", "summary"]
    assert lines[0]["file_sha256"] and lines[0]["job_seed"] == 1
    dog = next(l for l in lines if l.get("line") == 2)
    assert dog["request"]["steps"] == 3 and dog["request"]["seed"] is not None and dog["model_hash"]
    assert len(dog["outputs"]) == 2 and {"path", "sha256", "pixel_sha256", "seed"} <= set(dog["outputs"][0])
    assert dog["timings"]["render_s"] is not None and dog["status"] == "ok"
    _check_outputs(out)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(o["path"] for l in lines[1:3] for o in l["outputs"])


def test_resume_skips_done_and_detects_changed_file(tmp_path, fake):
    job = tmp_path / "p.txt"
    job.write_text("one\ntwo\n")
    out = tmp_path / "out"
    render(job, out, studio=fake, seed=4)
    assert fake.calls == ["one", "two"]
    s = render(job, out, studio=fake)  # same command, no --seed: the manifest's job seed is reused
    assert (s.skipped, s.succeeded, s.warnings) == (2, 0, [])
    job.write_text("one\ntwo\nthree\n")
    s = render(job, out, studio=fake)
    assert (s.skipped, s.succeeded) == (2, 1) and fake.calls == ["one", "two", "three"]
    assert any("job file changed" in w for w in s.warnings)
    assert len(read_manifest(out / MANIFEST).done()) == 3


def test_changed_model_and_seed_are_refused_or_reported(tmp_path, fake):
    from studio.errors import StudioError

    job = tmp_path / "p.txt"
    job.write_text("one\n")
    out = tmp_path / "out"
    render(job, out, studio=fake, seed=4, model="fake")
    with pytest.raises(StudioError, match="job seed 4"):
        render(job, out, studio=fake, seed=5, model="fake")
    with pytest.raises(StudioError, match="rendered with model fake but the job now asks for fake2"):
        render(job, out, studio=fake, model="fake2")
    job.write_text("one\ntwo\n")
    s = render(job, out, studio=FakeStudio(model_hash="cd" * 32), model="fake")  # weights changed in place
    assert any("model fake changed" in w for w in s.warnings)


def test_failure_isolation_and_retry_on_resume(tmp_path, fake):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "broken.png")  # readable when validated...
    job = tmp_path / "j.jsonl"
    job.write_text("\n".join(json.dumps(x) for x in [
        {"prompt": "fine"}, {"prompt": "FAIL oom"}, {"prompt": "edit", "init_image": "broken.png"},
        {"prompt": "also fine"}]))
    out = tmp_path / "out"
    s = render(job, out, studio=fake, seed=2,  # ...and broken before it renders: a render-time RequestError
               on_start=lambda *_: (tmp_path / "broken.png").write_bytes(b"not an image"))
    assert (s.succeeded, s.failed, s.exit_code) == (2, 2, 1)
    items = {e["request"]["prompt"]: e for e in _items(out / MANIFEST)}
    assert items["FAIL oom"]["status"] == "failed" and "out of memory" in items["FAIL oom"]["error"]
    assert items["edit"]["error_type"] == "RequestError" and "not a readable image" in items["edit"]["error"]
    assert items["FAIL oom"]["line"] == 2
    s = render(job, out, studio=fake, skip_invalid=True)  # failed items are retried, done ones skipped
    assert (s.skipped, s.failed) == (2, 1) and "not a readable image" in s.invalid[0].message


def test_invalid_job_refused_unless_skip_invalid(tmp_path, fake):
    job = tmp_path / "p.txt"
    job.write_text("good\nbad | width=250\n# c\nbad too | steps=0\n")
    out = tmp_path / "out"
    with pytest.raises(InvalidJob) as err:
        render(job, out, studio=fake, seed=1)
    assert [i.line for i in err.value.invalid] == [2, 4]
    assert "p.txt:2:" in str(err.value) and "p.txt:4:" in str(err.value)
    assert not out.exists() and fake.calls == []
    s = render(job, out, studio=fake, seed=1, skip_invalid=True)
    assert s.succeeded == 1 and [i.line for i in s.invalid] == [2, 4]


def test_same_files_on_one_or_two_local_workers(tmp_path):
    items = [{"prompt": f"item {i}", "steps": 2} for i in range(6)] + [{"prompt": "rep", "repeats": 2}]
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        render(items, out, seed=99, workers=workers, studio_factory=lambda: FakeStudio(delay=0.01))
        runs[workers] = {e["id"]: (e["outputs"][0]["path"], e["outputs"][0]["pixel_sha256"])
                         for e in _items(out / MANIFEST)}
    assert runs[1] == runs[2] and len(runs[1]) == 8


def test_path_traversal_in_ids_and_prompts_stays_inside(tmp_path, fake):
    out = tmp_path / "deep" / "out"
    items = [{"id": "../../escape", "prompt": "x"}, {"prompt": "../../../etc/passwd"},
             {"id": "/abs/path", "prompt": "y"}, {"id": "..", "prompt": "z"}]
    s = render(items, out, studio=fake, seed=0)
    assert s.succeeded == 4
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.parent == out for p in files), files
    for e in _items(out / MANIFEST):
        assert "/" not in e["outputs"][0]["path"] and not e["outputs"][0]["path"].startswith(".")


def test_cancel_hook_and_callbacks(tmp_path):
    cancel = threading.Event()
    events = []

    def on_item(outcome, done, total):
        events.append((outcome.status, done, total))
        if done == 2:
            cancel.set()

    steps = []
    out = tmp_path / "out"
    items = [f"p{i}" for i in range(6)]
    s = render(items, out, studio=FakeStudio(delay=0.05), seed=1, cancel=cancel, on_item=on_item,
               on_step=lambda k, st, tot: steps.append((k, st, tot)))
    assert s.succeeded == 2 and s.cancelled == 4 and s.exit_code == 130
    assert events[:2] == [("ok", 1, 6), ("ok", 2, 6)] and steps
    assert len(read_manifest(out / MANIFEST).done()) == 2
    s = render(items, out, studio=FakeStudio(), seed=1)
    assert (s.skipped, s.succeeded) == (2, 4)


def test_torn_manifest_tail_is_ignored_and_repaired(tmp_path, fake):
    out = tmp_path / "out"
    render(["a", "b"], out, studio=fake, seed=1)
    with open(out / MANIFEST, "ab") as fh:
        fh.write(b'{"type": "item", "id": "h-torn", "stat')
    (out / ".a-1234.png.abc123.tmp").write_bytes(b"partial")
    state = read_manifest(out / MANIFEST)
    assert state.torn == 1 and len(state.done()) == 2
    s = render(["a", "b", "c"], out, studio=fake)
    assert s.succeeded == 1 and s.skipped == 2
    for line in (out / MANIFEST).read_text().splitlines():
        json.loads(line)  # every line parses again
    assert not list(out.glob("*.tmp"))


def test_manifest_writer_truncates_fragment(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"a": 1}\n{"b":')
    with ManifestWriter(p) as w:
        w.append({"c": 2})
    assert p.read_text() == '{"a": 1}\n{"c": 2}\n'


_CRASH_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from fakes import FakeStudio
    from studio.jobs import render
    render({job!r}, {out!r}, studio=FakeStudio(delay=0.12), seed=8)
""")


def test_kill_9_then_resume_every_item_exactly_once(tmp_path):
    job = tmp_path / "p.txt"
    job.write_text("".join(f"prompt number {i} | batch={1 + i % 2}\n" for i in range(14)))
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(_CRASH_SCRIPT.format(here=str(HERE), job=str(job), out=str(out)))
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 240  # the loop leaves at the 4th item; start-up alone took > 60 s on a loaded box
    while time.time() < deadline:
        m = out / MANIFEST
        if m.exists() and m.read_text().count('"type": "item"') >= 4:
            break
        if proc.poll() is not None:
            pytest.fail(f"job ended early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    time.sleep(0.05)  # land somewhere inside the next item (render, file write or manifest append)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_manifest(out / MANIFEST)
    assert 4 <= len(before.done()) < 14
    _check_outputs(out)
    s = render(job, out, studio=FakeStudio())
    assert s.skipped == len(before.done()) and s.succeeded == 14 - len(before.done()) and s.failed == 0
    ids = [e["id"] for e in _items(out / MANIFEST)]
    assert len(ids) == len(set(ids)) == 14
    _check_outputs(out)
    listed = {o["path"] for e in _items(out / MANIFEST) for o in e["outputs"]}
    assert {p.name for p in out.glob("*.png")} == listed and not list(out.glob("*.tmp"))


def test_replay_reports_identical_and_explains_differences(tmp_path, fake):
    out = tmp_path / "out"
    render(["a", "b", {"prompt": "c", "batch": 2}], out, studio=fake, seed=3)
    rep = replay(out, studio=FakeStudio(), render_dir=tmp_path / "re")
    assert (rep.count("identical"), rep.count("differs"), rep.exit_code) == (3, 0, 0)
    assert "signing time" in rep.note and len(list((tmp_path / "re").glob("*.png"))) == 4
    rep = replay(out, studio=FakeStudio(model_hash="ee" * 32), sample=2)
    assert len(rep.items) == 2 and all(i.status == "identical" for i in rep.items)
    assert all(any("model hash" in r for r in i.reasons) for i in rep.items)

    out2 = tmp_path / "wm"
    render(["a", "b"], out2, studio=FakeStudio(watermark=True), seed=3)
    rep = replay(out2, studio=FakeStudio(watermark=True))
    assert rep.count("identical") == 2 and all("watermark" in i.reasons[0] for i in rep.items)
    assert all(i.original != i.replayed for i in rep.items)  # delivered pixels differ by the random mark

    class Drifting(FakeStudio):
        def generate(self, request, **kw):
            return super().generate(request.model_copy(update={"steps": 9}), **kw)

    rep = replay(out, studio=Drifting())
    assert rep.count("differs") == 3 and rep.exit_code == 1


# -- the CLI (the engine is swapped for the fake one) -----------------------------------------------------------
@pytest.fixture
def cli_fake(monkeypatch):
    import studio.engine

    fake = FakeStudio()
    monkeypatch.setattr(studio.engine, "default_studio", lambda: fake)
    return fake


def test_cli_render_resume_and_replay(tmp_path, cli_fake, capsys):
    from studio.cli import main

    job = tmp_path / "j.yaml"
    job.write_text("defaults: {steps: 2}\nitems:\n  - one\n  - prompt: FAIL two\n  - three\n")
    out = tmp_path / "out"
    assert main(["render", str(job), "--out", str(out), "--seed", "3"]) == 1
    captured = capsys.readouterr()
    assert "2 succeeded, 1 failed, 0 skipped" in captured.out
    assert main(["render", str(job), "--out", str(out), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["skipped"], summary["failed"], summary["job_seed"]) == (2, 1, 3)
    assert main(["replay", str(out)]) == 0
    captured = capsys.readouterr().out
    assert "2 identical, 0 differ" in captured and "signing time" in captured


def test_cli_refuses_invalid_file_with_line_numbers(tmp_path, cli_fake, capsys):
    from studio.cli import main

    job = tmp_path / "p.txt"
    job.write_text("ok\nbad | width=250\n")
    assert main(["render", str(job), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 invalid item") and "p.txt:2: invalid request: width" in err
    assert main(["render", str(job), "--out", str(tmp_path / "o"), "--skip-invalid"]) == 0
    assert main(["render", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")]) == 2
    assert main(["render", str(job), "--out", str(tmp_path / "o"), "--executor", "spark"]) == 2


def test_cpu_threads_pinned_per_job_recorded_and_restored(tmp_path, fake):
    import torch

    before = torch.get_num_threads()
    out = tmp_path / "out"
    render(["a"], out, studio=fake, seed=1, cpu_threads=1)
    assert torch.get_num_threads() == before
    state = read_manifest(out / MANIFEST)
    assert state.last_job["cpu_threads"] == 1 and all(e["cpu_threads"] == 1 for e in state.done().values())
    s = render(["a", "b"], out, studio=fake)  # resume reuses the folder's thread count
    assert read_manifest(out / MANIFEST).last_job["cpu_threads"] == 1
    assert not any("CPU thread" in w for w in s.warnings)


def test_replay_explains_cpu_thread_and_version_differences():
    from studio.jobs.replay import explain

    old = {"model_hash": "a", "versions": {"torch": "2.1"}, "device": "cpu", "dtype": "float32", "cpu_threads": 2}
    new = {"model_hash": "a", "versions": {"torch": "2.2"}, "device": "cpu", "dtype": "float32", "cpu_threads": 1}
    reasons = explain(old, new)
    assert "versions: torch 2.1 -> 2.2" in reasons and "CPU threads 2 -> 1" in reasons
    assert explain({**old, "device": "cuda:0"}, {**old, "device": "cuda:1"}) == []
    assert explain(old, {**old, "device": "cuda:0"}) == ["device class cpu -> cuda"]


def test_one_job_per_folder(tmp_path, fake):
    from studio.errors import StudioError
    from studio.jobs.manifest import JobLock

    out = tmp_path / "out"
    with JobLock(out):
        with pytest.raises(StudioError, match="another job is writing"):
            render(["a"], out, studio=fake, seed=1)
    assert render(["a"], out, studio=fake, seed=1).succeeded == 1


def test_cli_set_defaults_and_model(tmp_path, cli_fake, capsys):
    from studio.cli import main

    job = tmp_path / "p.txt"
    job.write_text("a\nb | steps=5\n")
    out = tmp_path / "o"
    assert main(["render", str(job), "--out", str(out), "--set", "steps=3", "--set", "negative=ugly",
                 "--model", "mini", "--seed", "1"]) == 0
    reqs = {e["request"]["prompt"]: e for e in read_manifest(out / MANIFEST).done().values()}
    assert reqs["a"]["request"]["steps"] == 3 and reqs["b"]["request"]["steps"] == 5
    assert reqs["a"]["request"]["negative_prompt"] == "ugly" and reqs["a"]["model"] == "mini"
    assert main(["render", str(job), "--out", str(out), "--set", "nokey"]) == 2
