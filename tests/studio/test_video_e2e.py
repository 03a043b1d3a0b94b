"""Video through the Python API and the CLI on a tiny random-weight AnimateDiff saved to disk: every mode
(txt2vid, img2vid, vid2vid) comes back as a sealed clip that verifies, records what made it and replays."""
import hashlib

import numpy as np
import pytest

import studio
from studio.cli import main
from studio.errors import RequestError

pipelines = pytest.importorskip("pipelines")
if not hasattr(pipelines, "run_video"):  # pragma: no cover
    pytest.skip("pipelines.run_video not available", allow_module_level=True)
import safety  # noqa: E402

SMALL = dict(width=64, height=64, frames=8, steps=2)


@pytest.fixture(scope="module")
def tiny_video_model(tmp_path_factory):
    from pipelines.tiny_video import save_tiny_video, tiny_animatediff

    return str(save_tiny_video(tiny_animatediff(), tmp_path_factory.mktemp("tiny-ad") / "model"))


@pytest.fixture(scope="module")
def source_clip(tmp_path_factory):
    from safety.media import encode_mp4

    t = np.arange(8)[:, None, None, None]
    frames = np.zeros((8, 64, 64, 3), np.uint8) + (t * 20).astype(np.uint8)
    path = tmp_path_factory.mktemp("clip") / "source.mp4"
    path.write_bytes(encode_mp4(frames, 8.0, None))
    return path


def _still(path):
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 30, 30)).save(path)
    return path


def test_text_to_video_is_a_sealed_clip_that_replays(tmp_path, tiny_video_model):
    out = tmp_path / "clip.mp4"
    r = studio.generate("a red circle moving to the right", model=tiny_video_model, seed=7, fps=6, out=out,
                        **SMALL)
    rec, o = r.record, r.outputs[0]
    assert rec.mode == "txt2vid" and rec.request.modality == "video" and rec.request.output_format == "mp4"
    assert (o.record.frames, o.record.fps, o.record.width, o.record.height) == (8, 6.0, 64, 64)
    assert out.read_bytes() == o.data and o.data[4:8] == b"ftyp"
    report = safety.verify(out)
    assert report.exit_code == 0, report.to_dict()
    assert report.to_dict()["manifest"]["params"]["request"]["frames"] == 8
    frames = o.frames
    assert len(frames) == 8 and frames[0].size == (64, 64)
    again = studio.generate("a red circle moving to the right", model=tiny_video_model, seed=7, fps=6, **SMALL)
    assert again.outputs[0].record.generated_sha256 == o.record.generated_sha256
    other = studio.generate("a red circle moving to the right", model=tiny_video_model, seed=8, fps=6, **SMALL)
    assert other.outputs[0].record.generated_sha256 != o.record.generated_sha256


def test_decode_chunk_reaches_the_pipeline_and_is_recorded(tiny_video_model, monkeypatch):
    seen = {}
    real = pipelines.run_video

    def spy(*a, **kw):
        seen["chunk"] = kw.get("decode_chunk_size")
        return real(*a, **kw)

    monkeypatch.setattr(pipelines, "run_video", spy)
    r = studio.generate("a red circle", model=tiny_video_model, seed=1, memory={"decode_chunk": 2}, **SMALL)
    assert seen["chunk"] == 2 and r.record.request.memory.decode_chunk == 2


def test_image_to_video_records_the_still_as_its_ingredient(tmp_path, tiny_video_model):
    still = _still(tmp_path / "still.png")
    r = studio.generate("a red circle", model=tiny_video_model, seed=1, init_image=still, out=tmp_path / "a.gif",
                        **SMALL)
    assert r.record.mode == "img2vid" and r.outputs[0].record.format == "gif"
    assert r.record.input_hashes["init_image"] == hashlib.sha256(still.read_bytes()).hexdigest()
    report = safety.verify(tmp_path / "a.gif").to_dict()
    assert report["state"] in ("valid", "trusted"), report
    (ingredient,) = report["manifest"]["ingredients"]  # the still is the clip's parent
    assert ingredient["relationship"] == "parentOf"


def test_video_to_video_keeps_the_sources_length_and_rate(tmp_path, tiny_video_model, source_clip):
    r = studio.generate("a blue square", model=tiny_video_model, seed=2, init_video=source_clip, steps=2,
                        strength=0.5, out=tmp_path / "v.mp4")
    req = r.record.request
    assert r.record.mode == "vid2vid" and req.frames == 8 and req.fps == 8.0 and req.strength == 0.5
    assert (req.width, req.height) == (64, 64)  # the source's size
    assert r.record.input_hashes["init_video"] == hashlib.sha256(source_clip.read_bytes()).hexdigest()
    with pytest.raises(RequestError, match="init video has 8 frames but 12 were asked for"):
        studio.generate("a blue square", model=tiny_video_model, init_video=source_clip, frames=12, steps=2)


@pytest.mark.parametrize("fields, needle", [
    (dict(frames=8), "frames given for an image request"),  # mini makes images
    (dict(model="mini", output_format="mp4"), "output format mp4 is not an image format"),
])
def test_video_fields_on_an_image_model_are_one_line_errors(fields, needle):
    with pytest.raises(RequestError, match=needle):
        studio.generate("a red circle", **{"model": "mini", **fields, "modality": "image"})


def test_wrong_modality_and_unsignable_format_fail_before_rendering(tmp_path, tiny_video_model, no_load):
    with pytest.raises(RequestError, match="image request but the model makes video"):
        studio.generate("x", model=tiny_video_model, modality="image")
    with pytest.raises(RequestError, match="WebM cannot carry C2PA"):
        studio.generate("x", model=tiny_video_model, out=tmp_path / "c.webm")
    with pytest.raises(RequestError, match="frames"):
        studio.generate("x", model=tiny_video_model, frames=40, width=64, height=64)  # over the adapter's 32


def test_cli_video_one_line_each(tmp_path, tiny_video_model, capsys):
    out = tmp_path / "cli.mp4"
    code = main(["generate", "a red circle", "--model", tiny_video_model, "--frames", "8", "--fps", "8",
                 "-W", "64", "-H", "64", "--steps", "2", "--seed", "7", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "1 clip(s)" in captured.out and "8 frames at 8 fps" in captured.out
    assert safety.verify(out).exit_code == 0
    code = main(["generate", "a red circle", "--model", tiny_video_model, "--init-video", str(out), "--steps",
                 "2", "--strength", "0.4", "-o", str(tmp_path / "v2v.mp4")])
    assert code == 0, capsys.readouterr().err
    code = main(["generate", "a red circle", "--model", tiny_video_model, "--frames", "8", "-o",
                 str(tmp_path / "x.webm")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1 and "WebM" in err


def test_a_new_folder_named_with_a_slash_receives_the_clip(tmp_path, tiny_video_model):
    r = studio.generate("a red circle", model=tiny_video_model, seed=4, out=f"{tmp_path}/clips/", **SMALL)
    assert r.outputs[0].path == tmp_path / "clips" / "studio-4.mp4" and r.outputs[0].path.is_file()


def test_a_short_run_still_sends_one_sealed_preview(tiny_video_model):
    seen = []
    studio.generate("a red circle", model=tiny_video_model, seed=4, preview=lambda s, t, o: seen.append((s, t, o)),
                    **{**SMALL, "steps": 3})
    assert [(s, t) for s, t, _ in seen] == [(1, 3)]
    assert safety.verify(seen[0][2].data).exit_code == 0
