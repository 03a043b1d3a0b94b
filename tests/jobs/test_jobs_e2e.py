"""Batch jobs end to end on a tiny random-weight SD model saved to disk (`--model <folder>`): real pipeline,
real seal, files written by the writer. Images are 64x64 (fast; below the watermark's minimum size, so the
delivered pixels are deterministic too)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from studio.cli import main
from studio.jobs import read_manifest
from studio.jobs.manifest import MANIFEST

pipelines = pytest.importorskip("pipelines")
safety = pytest.importorskip("safety")
if not hasattr(safety, "seal_image") or not hasattr(pipelines, "run_image"):  # pragma: no cover
    pytest.skip("pipelines/safety not ready", allow_module_level=True)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from pipelines.tiny import save_tiny, tiny_sd

    return str(save_tiny(tiny_sd(), tmp_path_factory.mktemp("tiny-sd") / "model"))


def _png(path, color="red", size=(64, 64)):
    from PIL import Image

    Image.new("RGB", size, color).save(path)


def _entries(out):
    return [json.loads(l) for l in (out / MANIFEST).read_text().splitlines() if '"type": "item"' in l]


def test_render_yaml_job_resume_and_replay(tmp_path, tiny_model, capsys):
    jobdir = tmp_path / "job"
    (jobdir / "inputs").mkdir(parents=True)
    _png(jobdir / "inputs" / "init.png")
    (jobdir / "inputs" / "broken.png").write_bytes(b"\x89PNG not really")
    (jobdir / "job.yaml").write_text(
        "defaults: {width: 64, height: 64, steps: 2}\n"
        "items:\n"
        "  - id: ../../escape\n    prompt: a red circle\n"
        "  - prompt: a blue square\n    init_image: inputs/init.png\n    strength: 0.5\n"
        "  - prompt: bad init\n    init_image: inputs/broken.png\n")
    out = tmp_path / "out"
    args = ["render", str(jobdir / "job.yaml"), "--out", str(out), "--model", tiny_model, "--seed", "21"]
    assert main(args) == 2  # the unreadable init image is caught before anything renders
    assert "job.yaml:8: init_image 'inputs/broken.png' is not a readable image" in capsys.readouterr().err
    assert not out.exists()
    args.append("--skip-invalid")
    assert main(args) == 0  # the valid items render
    captured = capsys.readouterr()
    assert "2 succeeded, 0 failed, 0 skipped (already done), 1 invalid" in captured.out
    assert "skipped invalid" in captured.err and "not a readable image" in captured.err
    entries = {e["request"]["prompt"]: e for e in _entries(out)}
    assert "bad init" not in entries
    edit = entries["a blue square"]
    assert edit["status"] == "ok" and edit["mode"] == "img2img" and edit["input_hashes"]["init_image"]
    assert entries["a red circle"]["id"] == "../../escape"
    assert {p.parent for p in tmp_path.rglob("*.png") if "job" not in p.parts} == {out}
    for e in entries.values():
        for o in e.get("outputs", []):
            assert len(e["model_hash"]) == 64 and o["pixel_sha256"] and o["generated_sha256"]
            report = safety.verify(out / o["path"], config=__import__("studio.writer").writer.safety_config())
            assert report.exit_code == 0, report.to_dict()  # sealed and signed by the engine's writer
    assert main(args) == 0  # resume: the finished items are skipped
    assert "0 succeeded, 0 failed, 2 skipped" in capsys.readouterr().out
    assert main(["replay", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["identical"] == 2 and report["differs"] == 0


@pytest.mark.slow
def test_kill_9_of_cli_render_then_resume(tmp_path, tiny_model):
    job = tmp_path / "p.txt"
    n = 24  # enough work that the job is still running when killed, even on an idle machine
    # 2 steps: the kill lands between or inside items whatever the step count; 6 tripled the sampling
    job.write_text("".join(f"prompt {i} | steps=2 | width=64 | height=64\n" for i in range(n)))
    out = tmp_path / "out"
    args = ["render", str(job), "--out", str(out), "--model", tiny_model, "--seed", "3"]
    proc = subprocess.Popen([sys.executable, "-m", "studio", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline:
        m = out / MANIFEST
        if m.exists() and m.read_text().count('"type": "item"') >= 2:
            break
        if proc.poll() is not None:
            pytest.fail(proc.stderr.read().decode()[-3000:])
        time.sleep(0.1)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_manifest(out / MANIFEST).done())
    assert 2 <= done_before < n
    # the resume reads only what the killed process left on disk, so it runs in this process (the CLI's own
    # main, as `python -m studio` calls it): one interpreter start and model load less
    assert main(args) == 0
    ids = [e["id"] for e in _entries(out)]
    assert len(ids) == len(set(ids)) == n
    from studio.writer import pixel_sha256

    for e in _entries(out):
        data = (out / e["outputs"][0]["path"]).read_bytes()
        assert pixel_sha256(data) == e["outputs"][0]["pixel_sha256"]
    assert not list(out.glob("*.tmp"))


@pytest.mark.slow
def test_local_and_ray_two_workers_identical_pixels(tmp_path, tiny_model):
    pytest.importorskip("ray")
    from studio.jobs import render

    items = [{"prompt": f"shape {i}", "steps": 2, "width": 64, "height": 64} for i in range(4)]
    render(items, tmp_path / "local", model=tiny_model, seed=8)
    s = render(items, tmp_path / "ray", model=tiny_model, seed=8, executor="ray", workers=2)
    assert s.succeeded == 4

    def hashes(out):
        return {k: [(o["path"], o["pixel_sha256"], o["generated_sha256"]) for o in e["outputs"]]
                for k, e in read_manifest(out / MANIFEST).done().items()}

    assert hashes(tmp_path / "local") == hashes(tmp_path / "ray")
    assert len({e["worker"] for e in read_manifest(tmp_path / "ray" / MANIFEST).done().values()}) == 2
