"""The Edit tab's instruction mode and the Generate tab's ControlNet panel without a browser, on tiny random-weight
models built in code: an instruct edit runs on the model (or its counterpart) with the image guidance asked for;
a model with no instruct / ControlNet counterpart offline is refused in one line before anything loads; the
control map shown is sealed and is the map the output records; no server path reaches the browser."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("gradio")

import studio  # noqa: E402
from studio import Registry, RequestError  # noqa: E402
from ui import control_panel, edit_instruct_panel  # noqa: E402
from ui.handlers import Handlers  # noqa: E402

SIZE = 256  # the image watermark needs >= 256 px
needs_aux = pytest.mark.skipif(importlib.util.find_spec("controlnet_aux") is None,
                               reason="controlnet-aux not installed (pip install --no-deps controlnet-aux)")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registry with a tiny SD (`tiny-sd`) and a tiny InstructPix2Pix (`tiny-ip2p`), a models folder holding a
    tiny ControlNet that fits tiny-sd (`tiny-cn`) and a reference image."""
    from pipelines.tiny import save_tiny, tiny_sd
    from pipelines.tiny_control import tiny_controlnet, tiny_ip2p

    root = tmp_path_factory.mktemp("ui-ctl")
    sd = tiny_sd(vae_scale=8)
    models = root / "models"
    tiny_controlnet(sd).save_pretrained(models / "tiny-cn")
    reg = Registry(user_file=root / "models.toml")
    reg.add("tiny-sd", str(save_tiny(sd, root / "sd")), "sd1", width=SIZE, height=SIZE, steps=2, sampler="Euler")
    reg.add("tiny-ip2p", str(save_tiny(tiny_ip2p(vae_scale=8), root / "ip2p")), "ip2p", width=SIZE, height=SIZE,
            steps=2)
    ref = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(ref).ellipse((40, 40, 160, 160), fill="red")
    ref.save(root / "ref.png")
    return {"registry": reg, "models": models, "ref": str(root / "ref.png"), "root": root}


@pytest.fixture(scope="module")
def h(world, tmp_path_factory):
    return Handlers(studio.Studio(world["registry"], quiet=True), tmp_path_factory.mktemp("ui-ctl-out"),
                    models_dir=world["models"])


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_instruction_edit_records_the_image_guidance_and_credits_the_source(h, world):
    fields = h.request_fields(prompt="make the circle blue", model="tiny-ip2p", steps=2, seed=3)
    [entry] = h.edit(fields, source=world["ref"], mode="instruct", image_guidance=2.5)
    assert entry["mode"] == "instruct" and entry["model"] == "tiny-ip2p" and entry["source"] == "edit"
    assert entry["request"]["instruct"] is True and entry["request"]["image_guidance"] == 2.5
    assert entry["request"]["init_image"] == "ref.png"  # the name, never the server path
    report = studio.verify(entry["file"]).to_dict()
    assert report["state"] == "trusted"
    assert [i["relationship"] for i in report["manifest"]["ingredients"]] == ["parentOf"]
    [other] = h.edit(fields, source=world["ref"], mode="instruct", image_guidance=0.5)
    assert other["sha256"] != entry["sha256"]  # the slider reaches the model


def test_a_model_without_an_instruct_counterpart_is_refused_in_one_line(h, world, no_load):
    fields = h.request_fields(prompt="make the circle blue", model="tiny-sd", steps=2, seed=3)
    with pytest.raises(RequestError) as exc:
        h.edit(fields, source=world["ref"], mode="instruct", image_guidance=1.5)
    msg = one_line(exc)
    assert "tiny-sd (sd1) is not an instruction-editing model" in msg
    assert "instruct-pix2pix is not downloaded" in msg and "tiny-ip2p" in msg  # what to pick instead
    line, default = edit_instruct_panel.note(h, "instruct", "tiny-sd")
    assert line.startswith("**Cannot edit by instruction:**") and default is None
    line, default = edit_instruct_panel.note(h, "instruct", "tiny-ip2p")
    assert "Edits with **tiny-ip2p**" in line and default == 1.5
    assert edit_instruct_panel.note(h, "img2img", "tiny-sd") == ("", None)


def test_a_registered_name_instruct_model_is_the_counterpart(h, world):
    reg = world["registry"]
    reg.add("tiny-sd-instruct", reg.entries["tiny-ip2p"].source, "ip2p", steps=2)
    try:
        fields = edit_instruct_panel.instruct_fields(h, {"model": "tiny-sd", "prompt": "x"}, 2.0)
        assert fields["model"] == "tiny-sd-instruct" and fields["instruct"] is True
        assert fields["image_guidance"] == 2.0
        assert "(the instruction model for tiny-sd)" in edit_instruct_panel.note(h, "instruct", "tiny-sd")[0]
    finally:
        reg.entries.pop("tiny-sd-instruct")


@pytest.fixture(scope="module")
def other_base_cn(world):
    """A ControlNet folder made for a base with another text width (its config is all a menu reads)."""
    fake = world["models"] / "other-base-cn"
    fake.mkdir(exist_ok=True)
    (fake / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": 999}))
    (fake / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    return fake


def test_controlnet_menu_offers_what_runs_and_says_why_not(h, other_base_cn):
    choices, note = control_panel.ControlPanel._options(h, "tiny-sd")
    labels = dict((v, k) for k, v in choices)
    assert labels["local:tiny-cn"] == "tiny-cn (local)" and note == ""
    assert labels["local:other-base-cn"].endswith("made for another base")
    assert labels["sd15-canny"].endswith("not downloaded")
    _, note = control_panel.ControlPanel._options(h, "tiny-ip2p")
    assert note == ("tiny-ip2p (ip2p) has no ControlNet: ControlNet runs on SD 1.x/2.x, SDXL and Flux models")
    choices, note = control_panel.ControlPanel._options(h, "mini")  # mini ships its own: mini-control
    assert dict((v, k) for k, v in choices)["mini-control"] == "mini-control (canny, layout, none)" and note == ""
    assert labels["mini-control"].endswith("made for another base")  # on disk, but for mini's 128-wide text


@pytest.mark.parametrize("model, net, message", [
    ("tiny-sd", "auto", "no sd1 ControlNet for tiny-sd and preprocessor 'canny' is available offline "
                        "(sd15-canny: not downloaded, mini-control: made for another base)"),
    ("tiny-sd", "local:other-base-cn", "ControlNet other-base-cn cannot run on tiny-sd (sd1): made for another base"),
    ("tiny-sd", "local:../sd", "ControlNet '../sd' is not in the server's models folder"),
    ("tiny-sd", "/etc/passwd", "unknown ControlNet '/etc/passwd'"),
    ("tiny-ip2p", "auto", "tiny-ip2p (ip2p) has no ControlNet"),
])
def test_a_unit_that_cannot_run_is_refused_before_loading(h, world, other_base_cn, no_load, model, net, message):
    with pytest.raises(RequestError) as exc:
        control_panel.unit_fields(h, model, on=True, guess=False, editor=None, upload=world["ref"],
                                  preprocessor="canny", controlnet=net, weight=1, start=0, end=1)
    assert message in one_line(exc)
    assert control_panel.unit_fields(h, model, on=False, guess=True, editor=None, upload=None,
                                     preprocessor="canny", controlnet=net, weight=1, start=0, end=1) == {}


def test_a_sketch_is_flattened_onto_white_and_a_blank_one_refused(h, tmp_path):
    canvas = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    canvas.save(tmp_path / "blank.png")
    with pytest.raises(RequestError) as exc:
        control_panel.control_image(h, {"composite": str(tmp_path / "blank.png"), "layers": []}, None)
    assert "the control image is blank" in one_line(exc)
    with pytest.raises(RequestError) as exc:
        control_panel.control_image(h, None, None)
    assert "needs a control image" in one_line(exc)
    ImageDraw.Draw(canvas).line((5, 5, 60, 40), fill=(0, 0, 0, 255), width=3)
    canvas.save(tmp_path / "sketch.png")
    path = control_panel.control_image(h, {"composite": str(tmp_path / "sketch.png"),
                                           "layers": [str(tmp_path / "sketch.png")]}, None)
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (64, 48)
        assert im.getpixel((0, 47)) == (255, 255, 255) and im.getpixel((5, 5)) == (0, 0, 0)
    from ui.browser_paths import upload_dir  # an input like an upload: never unsealed among the outputs

    assert Path(path).parent == upload_dir(h.out_dir) / "control-sketches"
    upload = str(tmp_path / "up.png")
    Image.new("RGB", (64, 48), "gray").save(upload)
    assert control_panel.control_image(h, {"background": upload, "layers": []}, upload) == upload  # byte for byte


@needs_aux
def test_the_map_shown_is_sealed_and_is_the_map_the_output_records(h, world):
    path, line = control_panel.preview_map(h, None, world["ref"], "canny", SIZE, SIZE, 4)
    assert line.startswith(f"canny map, {SIZE}×{SIZE} (sealed")
    shown = studio.verify(path).to_dict()
    assert shown["state"] == "trusted" and [i["relationship"] for i in shown["manifest"]["ingredients"]] == \
        ["parentOf"]
    with Image.open(path) as m:  # an edge map: mostly black, some white
        assert m.size == (SIZE, SIZE) and m.convert("L").getextrema() == (0, 255)
    fields = h.request_fields(prompt="a red circle", model="tiny-sd", steps=2, seed=4, size="Custom", width=SIZE,
                              height=SIZE)
    fields.update(control_panel.unit_fields(h, "tiny-sd", on=True, guess=False, editor=None, upload=world["ref"],
                                            preprocessor="canny", controlnet="local:tiny-cn", weight=0.8, start=0,
                                            end=0.9))
    [entry] = h.generate(fields)
    unit = entry["request"]["controls"][0]
    assert unit == {"image": "ref.png", "preprocessor": "canny", "model": "tiny-cn", "weight": 0.8, "start": 0.0,
                    "end": 0.9}  # names only: the browser never sees a server path
    info = studio.info(entry["file"])
    assert info["input_hashes"]["control_0"] == shown["manifest"]["params"]["map_sha256"]
    out = studio.verify(entry["file"]).to_dict()
    assert out["state"] == "trusted"
    assert [i["relationship"] for i in out["manifest"]["ingredients"]] == ["componentOf"]
    assert "ControlNet tiny-cn (canny, weight 0.8)" in control_panel.status_note(entry)
    fields.pop("controls")
    [plain] = h.generate(fields)
    assert plain["sha256"] != entry["sha256"] and control_panel.status_note(plain) == ""


@pytest.fixture(scope="module")
def edit_panel(h, world):
    """The Edit tab's ControlNet panel (two units) and what a browser sent it: the reference and a sketch
    uploaded (in the upload cache), the browser roots."""
    import gradio as gr

    from ui.browser_paths import browser_roots, upload_dir

    with gr.Blocks():
        panel = control_panel.ControlPanel(h, "tiny-sd", prefix="e-cn")
    up = upload_dir(h.out_dir)
    up.mkdir(parents=True, exist_ok=True)
    ref = up / "ref.png"
    ref.write_bytes(Path(world["ref"]).read_bytes())
    stroke = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(stroke).line((20, 200, 230, 60), fill=(0, 0, 0, 255), width=5)
    stroke.save(up / "stroke.png")
    sketch = {"background": None, "composite": str(up / "stroke.png"), "layers": [str(up / "stroke.png")]}
    return panel, browser_roots(h.out_dir), str(ref), sketch


@needs_aux
def test_an_edit_with_two_control_units_is_sealed_and_each_unit_reaches_the_pipeline(h, edit_panel, monkeypatch):
    import pipelines.controlnet as cn

    panel, roots, ref, sketch = edit_panel
    seen, real = [], cn.control_kwargs
    monkeypatch.setattr(cn, "control_kwargs", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    fields = h.request_fields(prompt="a red circle", model="tiny-sd", steps=2, seed=5)
    fields.update(panel.fields(h, roots, "tiny-sd", [
        True, False, None, ref, "canny", "local:tiny-cn", 0.8, 0.0, 0.9,  # unit 1: the upload, edges
        True, sketch, None, "none", "local:tiny-cn", 0.5, 0.2, 1.0]))  # unit 2: a sketch used as the map
    [entry] = h.edit(fields, source=ref, mode="img2img", strength=0.6)
    one, two = entry["request"]["controls"]
    assert one == {"image": "ref.png", "preprocessor": "canny", "model": "tiny-cn", "weight": 0.8, "start": 0.0,
                   "end": 0.9}
    assert two["image"].startswith("source-") and (two["preprocessor"], two["weight"], two["start"], two["end"]) \
        == ("none", 0.5, 0.2, 1.0)
    [kw] = seen  # img2img: the maps go in as control_image, each unit with its own scale and window
    assert kw["controlnet_conditioning_scale"] == [0.8, 0.5] and len(kw["control_image"]) == 2
    assert kw["control_guidance_start"] == [0.0, 0.2] and kw["control_guidance_end"] == [0.9, 1.0]
    assert entry["mode"] == "img2img" and {"control_0", "control_1"} <= set(studio.info(entry["file"])["input_hashes"])
    report = studio.verify(entry["file"]).to_dict()
    assert report["state"] == "trusted"  # the source its parent, each control map a component
    assert sorted(i["relationship"] for i in report["manifest"]["ingredients"]) == \
        ["componentOf", "componentOf", "parentOf"]
    assert "ControlNet tiny-cn (canny, weight 0.8), tiny-cn (none, weight 0.5)" in control_panel.status_note(entry)
    assert not list(h.out_dir.glob("controls/source-*"))  # the flattened sketch is not among the outputs


def test_the_edit_panel_checks_each_unit_and_stays_out_of_instruction_edits(h, edit_panel, no_load):
    panel, roots, ref, sketch = edit_panel
    off = [False, True, None, ref, "canny", "local:tiny-cn", 1, 0, 1]
    assert panel.fields(h, roots, "tiny-sd", off) == {}  # an API caller of the one-unit panel: unit 2 off too
    with pytest.raises(RequestError) as exc:
        panel.fields(h, roots, "tiny-sd", off + [True, None, ref, "canny", "local:tiny-cn", -1, 0, 1])
    assert one_line(exc) == "unit 2: control weight must be at least 0"
    with pytest.raises(RequestError) as exc:
        panel.fields(h, roots, "tiny-sd", off + [True, None, "/etc/hostname", "canny", "auto", 1, 0, 1])
    assert "'hostname' is not a file uploaded to this app" in one_line(exc)
    assert control_panel.source_size(ref) == (SIZE, SIZE) and control_panel.source_size(None) == (None, None)
    assert not control_panel.controls_applied("instruct") and control_panel.controls_applied("inpaint")


@pytest.fixture(scope="module")
def demo(h):
    from ui.app import build_app

    return build_app(h.studio, h.out_dir, models_dir=h.models_dir)


def test_the_app_builds_with_both_panels(demo):
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"e-image-guidance", "e-before-after", "cn-editor", "cn-preprocessor", "cn-net", "cn-map"} <= ids
    assert {"cn2-box", "cn2-on", "cn2-map", "e-cn-box", "e-cn-editor", "e-cn-map", "e-cn2-net", "e-cn2-end"} <= ids
    titles = {b.elem_id: b.label for b in demo.blocks.values() if getattr(b, "elem_id", None) in ("cn-box", "e-cn-box")}
    assert titles["cn-box"] != titles["e-cn-box"]  # a page has one accordion of each name (the browser test opens one)
    mode = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "e-mode")
    assert "instruct" in [c[1] if isinstance(c, tuple) else c for c in mode.choices]


def _event(demo, outputs: list[str]):
    """The app's event writing exactly these elements (by id), as the browser would trigger it."""
    return next(f for f in demo.fns.values() if [getattr(o, "elem_id", None) for o in f.outputs] == outputs)


@needs_aux
def test_the_edit_tab_shows_its_map_at_the_source_size_and_runs_its_units(h, demo, edit_panel):
    """The Edit tab's own events, without a browser: the form's values as it sends them, the panel's included."""
    _, _, ref, _ = edit_panel
    path, line = _event(demo, ["e-cn-map", "e-cn-status"]).fn(None, ref, "canny", 4, ref)
    assert line.startswith(f"canny map, {SIZE}×{SIZE} (sealed") and studio.verify(path).state == "trusted"
    edit = next(f for f in demo.fns.values() if f.name == "do_edit")
    sent = {"e-source": ref, "e-prompt": "a red circle", "e-model": "tiny-sd", "e-steps": 2, "e-seed": 5,
            "e-cn-on": True, "e-cn-upload": ref, "e-cn-net": "local:tiny-cn", "e-cn-weight": 0.7, "e-cn-end": 0.8}
    args = [sent.get(c.elem_id, getattr(c, "value", None)) for c in edit.inputs]
    *_, last = edit.fn(*args, request=None, progress=lambda *a, **k: None)
    status = last[2]
    assert status.startswith("img2img: sealed image") and "ControlNet tiny-cn (canny, weight 0.7)" in status
    entry = h.history_entries(1)[0]
    assert entry["request"]["controls"][0]["end"] == 0.8 and entry["mode"] == "img2img"
    shown = studio.verify(path).to_dict()["manifest"]["params"]["map_sha256"]
    assert studio.info(entry["file"])["input_hashes"]["control_0"] == shown  # the map shown is the one that steered
    # instruct mode hides the panel and leaves its units out (an InstructPix2Pix model has no ControlNet)
    instruct = {"e-mode": "instruct", "e-model": "tiny-ip2p"}
    *_, last = edit.fn(*[instruct.get(c.elem_id, a) for c, a in zip(edit.inputs, args)], request=None,
                       progress=lambda *a, **k: None)
    assert last[2].startswith("instruct: sealed image") and "ControlNet" not in last[2]


def test_a_web_batch_job_names_control_images_and_controlnets_like_every_browser_path(h, world, no_load):
    from ui import batch

    inside = h.out_dir / "ref.png"
    inside.write_bytes(open(world["ref"], "rb").read())
    job = h.out_dir / "job.jsonl"
    items = [{"prompt": "x", "model": "tiny-sd", "controls": [{"image": "/etc/hostname", "preprocessor": "canny"}]},
             {"prompt": "x", "model": "tiny-sd", "controls": [{"image": str(inside), "model": str(world["models"])}]},
             {"prompt": "x", "model": "tiny-sd", "controls": [{"image": str(inside), "preprocessor": "canny",
                                                                "model": "sd15-canny"}]}]
    job.write_text("".join(json.dumps(i) + "\n" for i in items))
    _, errors = batch.validate_upload(str(job), h.registry, h.out_dir)
    assert errors[0] == "line 1: control 0 image: 'hostname' is not a file uploaded to this app or one of its outputs"
    assert errors[1].startswith("line 2: control 0 ControlNet 'models' is not a known ControlNet name")
    assert len(errors) == 2  # a known name passes (its availability is the engine's to say)
    assert batch.public_request({"controls": [{"image": str(inside)}]})["controls"] == [{"image": "ref.png"}]


def test_reuse_restores_the_control_units_while_their_image_is_still_there(h, demo, edit_panel):
    from ui import control_reuse

    _, roots, ref, _ = edit_panel
    mine = Path(ref).with_name("reuse-ref.png")
    mine.write_bytes(Path(ref).read_bytes())
    fields = h.request_fields(prompt="a red circle", model="tiny-sd", steps=2, seed=6, size="Custom", width=SIZE,
                              height=SIZE)
    fields.update(control_panel.unit_fields(h, "tiny-sd", on=True, guess=True, editor=None, upload=str(mine),
                                            preprocessor="none", controlnet="local:tiny-cn", weight=0.65, start=0.1,
                                            end=0.8))
    [made] = h.generate(fields)
    entry = next(e for e in h.history_entries() if e["id"] == made["id"])
    values = control_reuse.reuse_control_values(entry, 2, roots, h.models_dir)
    guess, (on, image, prep, net, weight, start, end, _note), unit2 = values[0], values[1:9], values[9:]
    assert guess is True and on is True and image == str(mine.resolve())
    assert (prep, net, weight, start, end) == ("none", "local:tiny-cn", 0.65, 0.1, 0.8)
    assert unit2[0] is False  # only one unit was recorded
    # the wired event: Reuse fills exactly the Generate panel's guess switch and both units
    ids = ["cn-guess"] + [f"{p}-{k}" for p in ("cn", "cn2")
                          for k in ("on", "upload", "preprocessor", "net", "weight", "start", "end", "note")]
    assert _event(demo, ids)
    mine.write_bytes(b"not the bytes the record hashed")  # replaced since: never reused silently
    on, image, *_rest, note = control_reuse.reuse_control_values(entry, 2, roots, h.models_dir)[1:9]
    assert on is False and image is None and "reuse-ref.png" in note and "no longer on the server" in note
    # a clip or a song has no control units: the panel is left as it is
    assert all(v == __import__("gradio").skip() for v in control_reuse.reuse_control_values(
        {"modality": "video"}, 2, roots, h.models_dir))
