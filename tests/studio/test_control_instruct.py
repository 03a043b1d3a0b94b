"""Instruction edits and ControlNet through the API, the CLI and job files, on tiny random-weight models saved to
disk: the request is decided by the model's family, control maps are recorded, sealed and ingredients."""
import importlib.util
import hashlib
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

import studio
from studio.cli import main
from studio.errors import RequestError
from studio.schema import ControlUnit, GenerationRequest

SIZE = 256  # the image watermark needs >= 256 px

# controlnet-aux is installed without its dependencies (they would replace torch): see pyproject's `control` extra
needs_aux = pytest.mark.skipif(importlib.util.find_spec("controlnet_aux") is None,
                               reason="controlnet-aux not installed (pip install --no-deps controlnet-aux)")



@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from pipelines.tiny import save_tiny, tiny_sd
    from pipelines.tiny_control import tiny_controlnet, tiny_ip2p

    root = tmp_path_factory.mktemp("ctl")
    sd = tiny_sd(vae_scale=8)
    base = save_tiny(sd, root / "sd")
    tiny_controlnet(sd).save_pretrained(root / "cn")
    ip2p = save_tiny(tiny_ip2p(vae_scale=8), root / "ip2p")
    ref = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(ref).ellipse((40, 40, 160, 160), fill="black")
    ref.save(root / "ref.png")
    return {"sd": str(base), "cn": str(root / "cn"), "ip2p": str(ip2p), "ref": str(root / "ref.png"),
            "root": root}


@needs_aux
def test_controlled_generation_records_seals_and_credits_its_control_map(engine, models, tmp_path):
    unit = {"image": models["ref"], "preprocessor": "canny", "model": models["cn"], "weight": 0.8, "end": 0.9}
    res = engine.generate(prompt="a red circle", model=models["sd"], width=SIZE, height=SIZE, steps=2, seed=4,
                          controls=[unit], out=tmp_path / "c.png")
    rec = res.record
    assert rec.mode == "txt2img" and rec.request.controls[0].weight == 0.8 and rec.request.controls[0].end == 0.9
    assert rec.input_hashes["control_0_source"] == hashlib.sha256(open(models["ref"], "rb").read()).hexdigest()
    from pipelines.loading import content_hash

    assert rec.input_hashes["controlnet_0"] == content_hash(models["cn"])  # which weights steered
    # the map shown to the user is sealed and verifies; its manifest names the map's hash the output records
    assert len(res.controls) == 1 and res.controls[0].image.size == (SIZE, SIZE)
    shown = studio.verify(res.controls[0].data).to_dict()
    assert shown["state"] == "trusted" and shown["manifest"]["params"]["map_sha256"] == rec.input_hashes["control_0"]
    assert [i["relationship"] for i in shown["manifest"]["ingredients"]] == ["parentOf"]  # the source image
    out = studio.verify(tmp_path / "c.png").to_dict()
    assert out["state"] == "trusted"
    ing = out["manifest"]["ingredients"]
    assert [(i["relationship"], i["has_manifest"]) for i in ing] == [("componentOf", True)]
    assert studio.info(tmp_path / "c.png")["input_hashes"]["control_0"] == rec.input_hashes["control_0"]
    plain = engine.generate(prompt="a red circle", model=models["sd"], width=SIZE, height=SIZE, steps=2, seed=4)
    assert plain.outputs[0].record.generated_sha256 != res.outputs[0].record.generated_sha256
    zero = engine.generate(prompt="a red circle", model=models["sd"], width=SIZE, height=SIZE, steps=2, seed=4,
                           controls=[{**unit, "weight": 0.0}])
    assert zero.outputs[0].record.generated_sha256 == plain.outputs[0].record.generated_sha256


def test_instruction_edit_is_decided_by_the_model_and_credits_its_source(engine, models, tmp_path):
    res = engine.generate(prompt="make the circle blue", model=models["ip2p"], init_image=models["ref"], steps=2,
                          seed=2, out=tmp_path / "e.png")
    rec = res.record
    assert rec.mode == "instruct" and rec.model_family == "ip2p"
    assert rec.request.instruct is True and rec.request.image_guidance == 1.5
    assert (rec.request.width, rec.request.height) == (SIZE, SIZE)  # follows the source image
    report = studio.verify(tmp_path / "e.png").to_dict()
    assert report["state"] == "trusted"
    assert [i["relationship"] for i in report["manifest"]["ingredients"]] == ["parentOf"]
    again = engine.generate(GenerationRequest.model_validate(studio.info(tmp_path / "e.png")["request"]))
    assert again.outputs[0].record.pixel_sha256 == res.outputs[0].record.pixel_sha256
    other = engine.generate(prompt="make the circle blue", model=models["ip2p"], init_image=models["ref"], steps=2,
                            seed=2, image_guidance=3.0)
    assert other.outputs[0].record.generated_sha256 != res.outputs[0].record.generated_sha256


@pytest.mark.parametrize("fields, message", [
    ({"model": "ip2p"}, "is an instruction-editing model (ip2p): give the image to edit"),
    ({"model": "sd", "init_image": "ref", "image_guidance": 1.2}, "which is not an instruction-editing model"),
    ({"model": "sd", "init_image": "ref", "instruct": True}, "is not an instruction-editing model"),
    ({"model": "ip2p", "init_image": "ref", "controls": [{"image": "ref", "preprocessor": "canny", "model": "cn"}]},
     "controls do not apply to instruction edits"),
    ({"model": "sd", "controls": [{"image": "ref", "preprocessor": "hed", "model": "cn"}]},
     "control 0: preprocessor 'hed' needs its weights ControlNetHED.pth"),
    ({"model": "sd", "controls": [{"image": "ref", "preprocessor": "canny"}]},
     "control 0: model 'lllyasviel/control_v11p_sd15_canny' is not available offline"),
    ({"model": "sd", "controls": [{"image": "ref", "preprocessor": "none"}]},
     "preprocessor 'none' needs its ControlNet named"),
    ({"model": "sd", "controls": [{"image": "nope.png", "model": "cn"}]}, "control 0 image 'nope.png' does not exist"),
])
def test_bad_requests_fail_in_one_line_before_loading(engine, models, no_load, fields, message):
    fields = {k: models.get(v, v) if isinstance(v, str) else v for k, v in fields.items()}
    fields["controls"] = [{k: models.get(v, v) if isinstance(v, str) else v for k, v in u.items()}
                          for u in fields.get("controls", [])]
    with pytest.raises(RequestError) as exc:
        engine.generate(prompt="x", width=SIZE, height=SIZE, steps=1, **fields)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_control_unit_text_forms():
    assert ControlUnit.parse("canny:ref.png:0.8") == ControlUnit(image="ref.png", preprocessor="canny", weight=0.8)
    assert ControlUnit.parse("sd15-canny:ref.png:canny:0.5:0.1:0.6") == ControlUnit(
        image="ref.png", preprocessor="canny", model="sd15-canny", weight=0.5, start=0.1, end=0.6)
    assert ControlUnit.parse("/cn/folder:map.png") == ControlUnit(image="map.png", model="/cn/folder")
    assert ControlUnit.parse("none:map.png:1:0:0.5").end == 0.5
    for bad, msg in [("canny", "control must be"), ("canny:a.png:0.5:0.2", "control must be"),
                     ("canny:a.png:3", "weight must be in [0, 2]"), ("canny:a.png:1:0.6:0.2", "start < end")]:
        with pytest.raises(RequestError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            ControlUnit.parse(bad)
    req = GenerationRequest.build(prompt="x", controls="canny:a.png;hed:b.png:0.5")
    assert [u.preprocessor for u in req.controls] == ["canny", "hed"] and req.controls[1].weight == 0.5


@pytest.mark.parametrize("fields, message", [
    ({"image_guidance": 1.5}, "image_guidance given without init_image"),
    ({"instruct": True}, "instruct given without init_image"),
    ({"init_image": "a.png", "instruct": True, "mask": "m.png"}, "mask given for an instruction edit"),
    ({"guess_mode": True}, "guess_mode given without controls"),
    ({"init_image": "a.png", "image_guidance": 1.0, "controls": "canny:a.png"}, "controls do not apply"),
    ({"frames": 16, "controls": "canny:a.png"}, "controls given for a video request"),
])
def test_schema_refuses_inconsistent_fields(fields, message):
    with pytest.raises(RequestError, match=message):
        GenerationRequest.build(prompt="x", **fields)


@needs_aux
def test_cli_generate_with_control_writes_the_sealed_map_next_to_the_output(models, tmp_path, capsys):
    out = tmp_path / "g.png"
    rc = main(["generate", "a red circle", "-o", str(out), "--model", models["sd"], "-W", str(SIZE), "-H", str(SIZE),
               "--steps", "2", "--seed", "1", "--control", f"{models['cn']}:{models['ref']}:canny:0.7:0:0.8",
               "--guess-mode"])
    assert rc == 0, capsys.readouterr().err
    shown = tmp_path / "g.control0.png"
    assert shown.is_file() and studio.verify(shown).exit_code == 0
    rec = studio.info(out)
    assert rec["request"]["guess_mode"] is True and rec["request"]["controls"][0]["weight"] == 0.7
    assert "control_0" in rec["input_hashes"]
    # the map exists now: a second run refuses before rendering
    rc = main(["generate", "a red circle", "-o", str(tmp_path / "g.png"), "--model", models["sd"], "-W", str(SIZE),
               "-H", str(SIZE), "--steps", "1", "--control", f"{models['cn']}:{models['ref']}:canny"])
    err = capsys.readouterr().err
    assert rc == 2 and "g.control0.png already exists" in err  # refused before rendering, nothing replaced
    rc = main(["generate", "a red circle", "-o", str(tmp_path / "g.png"), "--model", models["sd"], "-W", str(SIZE),
               "-H", str(SIZE), "--steps", "1", "--overwrite", "--control", f"{models['cn']}:{models['ref']}:canny"])
    assert rc == 0  # --overwrite replaces both
    capsys.readouterr()
    rc = main(["generate", "x", "-o", str(tmp_path / "h.png"), "--model", models["sd"], "--control", "canny"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "control must be" in err and err.count("\n") == 1


def test_cli_edit_defaults_to_the_instruct_model_for_the_recorded_family(models, tmp_path, capsys):
    from studio.control_cli import edit_model_for

    rc = main(["edit", models["ref"], "make the circle blue", "-o", str(tmp_path / "e.png"), "--model",
               models["ip2p"], "--steps", "2", "--image-guidance", "2.0", "--seed", "3"])
    assert rc == 0, capsys.readouterr().err
    rec = studio.info(tmp_path / "e.png")
    assert rec["mode"] == "instruct" and rec["request"]["image_guidance"] == 2.0
    assert edit_model_for(models["ref"]) == "mini-instruct"  # no record: the editor the studio ships
    made = studio.Studio().generate(prompt="x", model=models["sd"], width=SIZE, height=SIZE, steps=1, seed=1,
                                    out=tmp_path / "sd1.png")
    assert made.record.model_family == "sd1" and edit_model_for(tmp_path / "sd1.png") == "instruct-pix2pix"
    capsys.readouterr()
    rc = main(["edit", models["ref"], "x", "-o", str(tmp_path / "f.png"), "--model", models["sd"], "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "is not an instruction-editing model" in err


@needs_aux
def test_cli_preprocess_writes_a_sealed_map_and_names_missing_weights(models, tmp_path, capsys, monkeypatch):
    rc = main(["preprocess", "canny", models["ref"], "-o", str(tmp_path / "edges.png"), "-W", "128", "-H", "96"])
    assert rc == 0, capsys.readouterr().err
    with Image.open(tmp_path / "edges.png") as im:
        assert im.size == (128, 96) and np.asarray(im.convert("L")).max() > 200
    assert main(["preprocess", "shuffle", models["ref"], "-o", str(tmp_path / "s.png"), "-W", "128"]) == 0
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (128, 128)  # the other side keeps the source's aspect
    report = studio.verify(tmp_path / "edges.png").to_dict()
    assert report["state"] == "trusted" and report["manifest"]["ingredients"][0]["relationship"] == "parentOf"
    capsys.readouterr()
    monkeypatch.delenv("DIFFUSION_STUDIO_ANNOTATORS", raising=False)
    rc = main(["preprocess", "depth", models["ref"], "-o", str(tmp_path / "d.png"), "--annotators",
               str(tmp_path / "weights")])
    err = capsys.readouterr().err
    assert rc == 2 and "dpt_hybrid-midas-501f0c75.pt" in err and str(tmp_path / "weights") in err
    # a size from the command line (or the web app's form) is bounded before the source is read
    rc = main(["preprocess", "canny", str(tmp_path / "no-such.png"), "-o", str(tmp_path / "big.png"), "-W", "100000"])
    err = capsys.readouterr().err
    assert rc == 2 and "control map width 100000 is out of range" in err and not (tmp_path / "big.png").exists()


def test_job_items_carry_controls_and_instruct_fields(models, tmp_path):
    from studio.jobs.spec import load_job

    (tmp_path / "ref.png").write_bytes(open(models["ref"], "rb").read())
    job = tmp_path / "job.jsonl"
    job.write_text("\n".join(json.dumps(x) for x in [
        {"prompt": "a red circle", "controls": [{"image": "ref.png", "preprocessor": "canny", "weight": 0.5}]},
        {"prompt": "a blue circle", "controls": "canny:ref.png:0.8"},
        {"prompt": "make it blue", "init_image": "ref.png", "image_guidance": 1.2},
        {"prompt": "x", "controls": "canny:missing.png"},
    ]) + "\n")
    spec = load_job(job)
    assert [i.line for i in spec.invalid] == [4] and "control 0 image 'missing.png' does not exist" in \
        spec.invalid[0].message
    first, second, third = spec.items
    assert first.request.controls[0].image == str(tmp_path / "ref.png") and second.request.controls[0].weight == 0.8
    assert third.request.image_guidance == 1.2


@needs_aux
def test_a_controlnet_for_another_base_is_refused_in_one_line(engine, models, tmp_path, monkeypatch):
    from pipelines import controlnet as cn
    from pipelines.tiny import tiny_sdxl
    from pipelines.tiny_control import tiny_controlnet

    tiny_controlnet(tiny_sdxl()).save_pretrained(tmp_path / "xl-cn")
    unit = {"image": models["ref"], "preprocessor": "canny", "model": str(tmp_path / "xl-cn")}
    with pytest.raises(RequestError, match="made for another base model family"):  # from the configs on disk
        engine.check(GenerationRequest.build(prompt="x", model=models["sd"], controls=[unit]))
    monkeypatch.setattr(cn, "check_fits_on_disk", lambda *a: None)  # the load-time check still refuses it
    with pytest.raises(RequestError) as exc:
        engine.generate(prompt="x", model=models["sd"], width=SIZE, height=SIZE, steps=1,
                        controls=[{"image": models["ref"], "preprocessor": "canny", "model": str(tmp_path / "xl-cn")}])
    assert "control 0: ControlNet" in str(exc.value) and "made for another base model family" in str(exc.value)


@needs_aux
def test_batch_job_renders_control_and_instruct_items(models, tmp_path, capsys):
    from studio.jobs.manifest import MANIFEST

    (tmp_path / "ref.png").write_bytes(open(models["ref"], "rb").read())
    job = tmp_path / "job.jsonl"
    job.write_text("\n".join(json.dumps(x) for x in [
        {"prompt": "a red circle", "model": models["sd"], "width": 64, "height": 64, "steps": 2,
         "controls": [{"image": "ref.png", "preprocessor": "canny", "model": models["cn"], "weight": 0.5}]},
        {"prompt": "make it blue", "model": models["ip2p"], "init_image": "ref.png", "width": 64, "height": 64,
         "steps": 2, "image_guidance": 1.2},
    ]) + "\n")
    out = tmp_path / "out"
    assert main(["render", str(job), "--out", str(out), "--seed", "3"]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines() if '"type": "item"' in line]
    assert len(rows) == 2
    text = json.dumps(rows)
    assert '"control_0"' in text and '"instruct"' in text
    files = sorted(out.glob("*.png"))
    assert len(files) == 2 and all(studio.verify(f).exit_code == 0 for f in files)


def test_default_controlnets_follow_family_and_preprocessor():
    from studio.control import CONTROLNETS, default_controlnet

    assert default_controlnet("sd1", "hed") == default_controlnet("sd1", "pidinet") == "sd15-softedge"
    assert default_controlnet("sdxl", "canny") == "sdxl-canny" and default_controlnet("flux", "depth") == "flux-depth"
    assert CONTROLNETS["sd15-canny"][0] == "lllyasviel/control_v11p_sd15_canny"
    with pytest.raises(RequestError, match="no default sdxl ControlNet for preprocessor 'mlsd'"):
        default_controlnet("sdxl", "mlsd")
    with pytest.raises(RequestError, match="no default sd2 ControlNet"):
        default_controlnet("sd2", "canny")


@pytest.mark.parametrize("fields, message", [
    ({"model": "instruct-pix2pix"}, "instruct-pix2pix is an instruction-editing model (ip2p)"),
    ({"model": "flux-kontext", "init_image": "ref", "image_guidance": 1.5}, "which has no image guidance scale"),
    ({"model": "sd15", "init_image": "ref", "image_guidance": 1.5}, "which is not an instruction-editing model"),
    ({"model": "sdxl", "controls": [{"image": "ref", "preprocessor": "mlsd"}]}, "no default sdxl ControlNet"),
    ({"model": "flux-dev", "guess_mode": True, "controls": [{"image": "ref", "preprocessor": "canny"}]},
     "guess_mode is not available for Flux"),
])
def test_registry_models_are_judged_by_their_family_before_loading(engine, models, no_load, fields, message):
    fields = {k: models.get(v, v) if isinstance(v, str) else v for k, v in fields.items()}
    fields["controls"] = [{k: models.get(v, v) for k, v in u.items()} for u in fields.get("controls", [])]
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        engine.generate(prompt="x", width=512, height=512, steps=1, **fields)
