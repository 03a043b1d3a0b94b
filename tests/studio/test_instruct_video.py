"""Instruction edits of a clip (issue 17): `studio edit CLIP "make the circle blue"` and the same request through
the Python API run the real mini-instruct on every frame (tiny sizes, 2 steps), seal a clip whose source clip is
its ingredient and whose record names the instruction and the source's hash; what cannot run says so in one line."""
import dataclasses
import hashlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

import studio
from studio.cli import main
from studio.errors import RequestError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Three 64 px frames of a red circle moving right (H.264, 8 fps)."""
    from safety.media import encode_mp4

    frames = []
    for x in (6, 16, 26):
        im = Image.new("RGB", (64, 64), "white")
        ImageDraw.Draw(im).ellipse((x, 20, x + 24, 44), fill=(220, 30, 30))
        frames.append(np.asarray(im))
    path = tmp_path_factory.mktemp("iv") / "clip.mp4"
    path.write_bytes(encode_mp4(np.stack(frames), 8.0, None))
    return path


def _source_frames(path):
    from safety.media import decode_video

    return decode_video(path.read_bytes())[0].astype(int)


def test_api_request_edits_every_frame_and_seals_the_clip_with_its_source(clip, tmp_path):
    res = studio.generate(prompt="make the circle blue", model="mini-instruct", init_video=clip, instruct=True,
                          steps=2, seed=3, out=tmp_path / "e.mp4")
    rec = res.record
    assert rec.mode == "instruct" and rec.model_name == "mini-instruct" and rec.request.modality == "video"
    assert rec.request.prompt == "make the circle blue" and rec.request.instruct is True
    assert rec.request.image_guidance == 1.5 and (rec.request.frames, rec.request.fps) == (3, 8.0)
    assert rec.input_hashes["init_video"] == hashlib.sha256(clip.read_bytes()).hexdigest()
    out = res.outputs[0]
    assert (out.record.frames, out.record.width, out.record.height, out.record.format) == (3, 64, 64, "mp4")
    edited = np.stack([np.asarray(f.convert("RGB")) for f in out.frames]).astype(int)
    src = _source_frames(clip)
    assert edited.shape == src.shape and np.abs(edited - src).mean(axis=(1, 2, 3)).min() > 2  # every frame changed
    report = studio.verify(tmp_path / "e.mp4").to_dict()
    assert report["state"] == "trusted"
    assert [i["relationship"] for i in report["manifest"]["ingredients"]] == ["parentOf"]  # the source clip
    info = studio.info(tmp_path / "e.mp4")
    assert info["mode"] == "instruct" and info["request"]["init_video"] == str(clip)


def test_cli_edits_a_clip_by_instruction(clip, tmp_path, capsys):
    out = tmp_path / "blue.mp4"
    rc = main(["edit", str(clip), "make the circle blue", "-o", str(out), "--steps", "2", "--seed", "1",
               "--frames", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "1 clip(s)" in captured.out and "mini-instruct" in captured.out  # a record-less clip: the default
    rec = studio.info(out)
    assert rec["mode"] == "instruct" and rec["request"]["frames"] == 2 and studio.verify(out).exit_code == 0


@pytest.mark.parametrize("args, out, needle", [
    (["--model", "mini"], "x.mp4", "model mini (sd1) has no instruction mode"),
    (["--model", "mini-video"], "x.mp4", "model mini-video (animatediff) has no instruction mode"),
    (["--model", "flux-kontext"], "x.mp4", "edits single images, not clips"),
    (["--frames", "5"], "x.mp4", "init video has 3 frames but 5 were asked for"),
    ([], "x.png", "output format png is not a video format"),
])
def test_clip_edits_that_cannot_run_fail_in_one_line_before_loading(clip, tmp_path, capsys, no_load, args, out,
                                                                     needle):
    rc = main(["edit", str(clip), "make the circle blue", "-o", str(tmp_path / out), "--steps", "1", *args])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.startswith("error: ") and err.count("\n") == 1, err


def test_frames_over_the_editors_limit_are_refused(clip, no_load, monkeypatch):
    import pipelines

    spec = pipelines.INSTRUCT_FAMILIES["ip2p"]
    monkeypatch.setitem(pipelines.INSTRUCT_FAMILIES, "ip2p", dataclasses.replace(spec, max_frames=2))
    with pytest.raises(RequestError, match="init video has 3 frames: model mini-instruct edits at most 2 frames"):
        studio.generate(prompt="make it blue", model="mini-instruct", init_video=clip, instruct=True, steps=1)
    with pytest.raises(RequestError, match="strength given for an instruction edit"):
        studio.generate(prompt="make it blue", model="mini-instruct", init_video=clip, instruct=True, strength=0.5)


def test_batch_job_renders_mini_instruct_edits_of_an_image_and_a_clip(clip, tmp_path, capsys):
    import json

    from studio.jobs.manifest import MANIFEST

    scene = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(scene).ellipse((20, 20, 44, 44), fill=(220, 30, 30))
    scene.save(tmp_path / "scene.png")
    (tmp_path / "clip.mp4").write_bytes(clip.read_bytes())
    job = tmp_path / "job.jsonl"
    job.write_text("\n".join(json.dumps(x) for x in [
        {"id": "still", "prompt": "make the circle blue", "model": "mini-instruct", "init_image": "scene.png",
         "steps": 2, "image_guidance": 1.2},
        {"id": "clip", "prompt": "make the circle blue", "model": "mini-instruct", "init_video": "clip.mp4",
         "instruct": True, "frames": 2, "steps": 2},
    ]) + "\n")
    out = tmp_path / "out"
    assert main(["render", str(job), "--out", str(out), "--seed", "3"]) == 0, capsys.readouterr().err
    rows = {r["id"]: r for r in (json.loads(line) for line in (out / MANIFEST).read_text().splitlines())
            if r.get("type") == "item"}
    assert {k: r["status"] for k, r in rows.items()} == {"still": "ok", "clip": "ok"}, rows
    assert rows["clip"]["mode"] == "instruct" and rows["clip"]["request"]["modality"] == "video"
    (png,), (mp4,) = sorted(out.glob("*.png")), sorted(out.glob("*.mp4"))
    for path, source, kind in ((png, tmp_path / "scene.png", "init_image"),
                               (mp4, tmp_path / "clip.mp4", "init_video")):
        rec = studio.info(path)
        assert rec["model_name"] == "mini-instruct" and rec["mode"] == "instruct"
        assert rec["request"]["prompt"] == "make the circle blue"
        assert rec["input_hashes"][kind] == hashlib.sha256(source.read_bytes()).hexdigest()
        report = studio.verify(path).to_dict()
        assert report["state"] == "trusted", report
        assert [i["relationship"] for i in report["manifest"]["ingredients"]] == ["parentOf"]
    assert studio.info(png)["request"]["image_guidance"] == 1.2 and studio.info(mp4)["request"]["frames"] == 2


def test_an_animated_gif_is_a_clip_and_a_one_frame_gif_a_still(tmp_path):
    from studio.control_cli import is_clip_file

    a, b = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    a.save(tmp_path / "still.gif")
    a.save(tmp_path / "anim.gif", save_all=True, append_images=[b])
    a.save(tmp_path / "still.png")
    assert is_clip_file(tmp_path / "anim.gif") and not is_clip_file(tmp_path / "still.gif")
    assert not is_clip_file(tmp_path / "still.png") and not is_clip_file(tmp_path / "missing.mp4")


def test_an_instruct_model_given_a_clip_decides_the_instruction_edit_itself(clip, tmp_path):
    # as it does for an init image: no instruct=True, the editor's family decides (and its image guidance)
    res = studio.generate(prompt="make the circle blue", model="mini-instruct", init_video=clip, frames=2,
                          steps=2, seed=3, out=tmp_path / "d.mp4")
    rec = res.record
    assert rec.mode == "instruct" and rec.request.instruct is True and rec.request.image_guidance == 1.5
    assert rec.request.modality == "video" and res.outputs[0].record.frames == 2
    assert studio.verify(tmp_path / "d.mp4").to_dict()["state"] == "trusted"


@pytest.mark.parametrize("model, extra, needle", [
    ("mini", {}, "this is a video request but the model makes image"),  # no instruction mode: no clip edit
    ("flux-kontext", {}, "edits single images, not clips"),  # an instruct family, decided, then refused
    ("mini-instruct", {"strength": 0.5}, "strength given for an instruction edit"),
])
def test_a_clip_given_to_an_image_model_without_instruct_is_refused_in_one_line(clip, no_load, model, extra,
                                                                                needle):
    with pytest.raises(RequestError) as exc:
        studio.generate(prompt="make it blue", model=model, init_video=clip, steps=1, **extra)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_runs_as_defers_a_clip_on_an_image_model_to_the_family():
    from studio.modalities import runs_as
    from studio.schema import GenerationRequest

    clip_req = GenerationRequest.build(prompt="x", init_video="c.mp4")
    assert clip_req.mode == "vid2vid"
    assert runs_as(clip_req, "image") == "video"  # some image model (an instruct editor) could edit it
    assert runs_as(clip_req, "image", "ip2p") == "video" and runs_as(clip_req, "image", "sd1") == "image"
    assert runs_as(GenerationRequest.build(prompt="x", modality="video"), "image") == "image"  # txt2vid: none
