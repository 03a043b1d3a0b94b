"""Video items in batch files: rendered by the same runner into sealed clips, resumed and replayed like
images (a tiny random-weight AnimateDiff saved to disk; 64x64, 8 frames, 2 steps)."""
import json

import numpy as np
import pytest

from studio.cli import main
from studio.jobs.manifest import MANIFEST

pipelines = pytest.importorskip("pipelines")
if not hasattr(pipelines, "run_video"):  # pragma: no cover
    pytest.skip("pipelines.run_video not available", allow_module_level=True)
import safety  # noqa: E402


@pytest.fixture(scope="module")
def tiny_video_model(tmp_path_factory):
    from pipelines.tiny_video import save_tiny_video, tiny_animatediff

    return str(save_tiny_video(tiny_animatediff(), tmp_path_factory.mktemp("tiny-ad") / "model"))


def test_video_job_renders_resumes_and_replays(tmp_path, tiny_video_model, capsys):
    from safety.media import encode_mp4

    jobdir = tmp_path / "job"
    jobdir.mkdir()
    frames = np.zeros((8, 64, 64, 3), np.uint8) + (np.arange(8)[:, None, None, None] * 25).astype(np.uint8)
    (jobdir / "source.mp4").write_bytes(encode_mp4(frames, 8.0, None))
    rows = [{"id": "t2v", "prompt": "a red circle moving to the right", "frames": 8, "fps": 6},
            {"id": "v2v", "prompt": "a blue square", "init_video": "source.mp4", "strength": 0.5},
            {"id": "gif", "prompt": "a green star", "frames": 8, "output_format": "gif"},
            {"id": "missing", "prompt": "x", "init_video": "nope.mp4"}]
    header = {"defaults": {"width": 64, "height": 64, "steps": 2}}
    (jobdir / "job.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [header] + rows))
    out = tmp_path / "out"
    args = ["render", str(jobdir / "job.jsonl"), "--out", str(out), "--model", tiny_video_model, "--seed", "5"]
    assert main(args) == 2
    assert "init_video 'nope.mp4' does not exist" in capsys.readouterr().err
    assert main(args + ["--skip-invalid"]) == 0
    assert "3 succeeded" in capsys.readouterr().out
    entries = {e["id"]: e for e in map(json.loads, (out / MANIFEST).read_text().splitlines())
               if e.get("type") == "item"}
    assert entries["t2v"]["mode"] == "txt2vid" and entries["v2v"]["mode"] == "vid2vid"
    assert entries["v2v"]["input_hashes"]["init_video"] and entries["v2v"]["request"]["frames"] == 8
    for key, ext in (("t2v", ".mp4"), ("v2v", ".mp4"), ("gif", ".gif")):
        o = entries[key]["outputs"][0]
        assert o["path"].endswith(ext) and o["frames"] == 8
        assert safety.verify(out / o["path"]).exit_code == 0
    assert main(args + ["--skip-invalid"]) == 0
    assert "0 succeeded, 0 failed, 3 skipped" in capsys.readouterr().out
    assert main(["replay", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["identical"] == 3 and report["differs"] == 0


def test_a_clip_given_to_an_image_model_that_cannot_edit_it_is_refused_when_the_job_is_read(tmp_path, capsys):
    """mini makes images and has no instruct mode: a clip item is named invalid before anything renders (the
    registry knows the family, so the table's deferred refusal is decided at read time)."""
    from safety.media import encode_mp4

    jobdir = tmp_path / "job"
    jobdir.mkdir()
    (jobdir / "source.mp4").write_bytes(encode_mp4(np.zeros((2, 64, 64, 3), np.uint8), 8.0, None))
    (jobdir / "job.jsonl").write_text(json.dumps({"id": "clip", "prompt": "make the circle blue",
                                                  "init_video": "source.mp4"}) + "\n")
    out = tmp_path / "out"
    assert main(["render", str(jobdir / "job.jsonl"), "--out", str(out), "--model", "mini"]) == 2
    err = capsys.readouterr().err
    assert "1 invalid item" in err and "job.jsonl:1:" in err and "makes image" in err
    assert not (out / MANIFEST).exists() or "item" not in (out / MANIFEST).read_text()
