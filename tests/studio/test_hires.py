"""Hires fix through the public API, the CLI and job files on a tiny SD model: the first pass is sealed and is
the output's C2PA ingredient, the size scales, the record replays to the same pixels, bad options are one line."""
import io
import json

import c2pa
import numpy as np
import pytest

import studio
from safety.config import GENERATION_LABEL
from studio.cli import main

FIRST = 128  # first pass side; hires x2 -> 256, where the image watermark fits


def gen(engine, model, **kw):
    kw.setdefault("prompt", "a red circle")
    kw.setdefault("width", FIRST)
    kw.setdefault("height", FIRST)
    kw.setdefault("steps", 2)
    return engine.generate(model=model, **kw)


def parent_manifests(data: bytes) -> list[dict]:
    """Each ingredient's relationship and the generation params recorded in its own manifest."""
    reader = c2pa.Reader("image/png", io.BytesIO(data))
    store = json.loads(reader.json())
    active = store["manifests"][store["active_manifest"]]
    out = []
    for ing in active.get("ingredients", []):
        m = store["manifests"][ing["active_manifest"]]
        (gen_assertion,) = [a for a in m["assertions"] if a["label"] == GENERATION_LABEL]
        out.append({"relationship": ing["relationship"], "params": gen_assertion["data"]["params"]})
    return out


def test_first_pass_is_the_sealed_ingredient_and_the_size_doubles(engine, tiny_model, tmp_path):
    r = gen(engine, tiny_model, seed=3, hires={"scale": 2, "strength": 0.5}, out=tmp_path / "hi.png")
    o = r.outputs[0].record
    assert (o.width, o.height) == (2 * FIRST, 2 * FIRST)
    req = r.record.request
    assert (req.width, req.height) == (FIRST, FIRST)  # the request keeps the first pass's size
    assert req.hires.scale == 2 and req.hires.steps == 2 and req.hires.upscaler == "latent"
    report = studio.verify(tmp_path / "hi.png")
    assert report.state in ("valid", "trusted")
    (parent,) = parent_manifests((tmp_path / "hi.png").read_bytes())
    assert parent["relationship"] == "parentOf"
    first = parent["params"]["request"]  # the ingredient is the sealed first pass, not the hires output
    assert (first["width"], first["height"]) == (FIRST, FIRST) and first["hires"] is None
    # ... and it is exactly what the same request without hires delivers
    plain = gen(engine, tiny_model, seed=3)
    assert parent["params"]["request"]["seed"] == plain.record.request.seed
    info = studio.info(tmp_path / "hi.png")
    assert info["request"]["hires"]["scale"] == 2
    assert "Hires upscale: 2" in info["_parameters"] and "Hires upscaler: latent" in info["_parameters"]


def test_replay_gives_the_same_pixels_and_upscalers_differ(engine, tiny_model):
    a = gen(engine, tiny_model, seed=5, hires=2)
    again = engine.generate(a.record.request)
    assert again.outputs[0].record.pixel_sha256 == a.outputs[0].record.pixel_sha256
    assert again.outputs[0].record.watermark_id == a.outputs[0].record.watermark_id
    lanczos = gen(engine, tiny_model, seed=5, hires={"scale": 2, "upscaler": "lanczos"})
    assert lanczos.record.request.hires.upscaler == "pixel-lanczos"
    assert lanczos.outputs[0].record.width == 2 * FIRST
    diff = np.abs(np.asarray(lanczos.outputs[0].image, int) - np.asarray(a.outputs[0].image, int))
    assert diff.mean() > 1  # latents interpolated vs pixels resized: different starts, different images


def test_batch_each_output_has_its_own_first_pass(engine, tiny_model):
    r = gen(engine, tiny_model, seed=10, batch=2, hires={"scale": 1.5, "upscaler": "pixel-lanczos"})
    assert [o.record.seed for o in r.outputs] == [10, 11]
    assert all(o.record.width == 192 for o in r.outputs)
    seeds = [parent_manifests(o.data)[0]["params"]["seed"] for o in r.outputs]
    assert seeds == [10, 11]


@pytest.mark.parametrize("fields, message", [
    ({"hires": 1.3}, "hires width 128 x 1.3 = 166.4 is not a multiple of 8"),
    ({"hires": 4, "width": 2048, "height": 128}, "over the largest side 4096"),
    ({"hires": 1}, "hires scale must be above 1"),
    ({"hires": {"scale": 2, "strength": 0}}, "hires strength must be above 0"),
    ({"hires": {"scale": 2, "upscaler": "nonesuch"}}, "unknown hires upscaler 'nonesuch'"),
    ({"hires": {"scale": 2, "upscaler": "sd-x4-upscaler"}}, "not available offline"),
    ({"hires": 2, "init_image": "x.png", "mask": "x.png"}, "hires applies to txt2img and img2img, not to inpaint"),
    ({"hires": 2, "frames": 8}, "it upscales images"),
])
def test_bad_hires_is_one_line_before_any_load(engine, tiny_model, no_load, tmp_path, fields, message):
    from PIL import Image

    if "init_image" in fields:
        Image.new("RGB", (FIRST, FIRST)).save(tmp_path / "x.png")
        fields = {**fields, "init_image": str(tmp_path / "x.png"), "mask": str(tmp_path / "x.png")}
    with pytest.raises(studio.RequestError) as err:
        gen(engine, tiny_model, **fields)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_hires(tiny_model, tmp_path, capsys):
    out = tmp_path / "cli.png"
    code = main(["generate", "a blue star", "-o", str(out), "--model", tiny_model, "--seed", "2", "--steps", "2",
                 "-W", str(FIRST), "-H", str(FIRST), "--hires", "2", "--hires-strength", "0.4",
                 "--hires-upscaler", "pixel-lanczos", "--hires-steps", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"hires x2 {FIRST}x{FIRST} -> {2 * FIRST}x{2 * FIRST} (pixel-lanczos, strength 0.4, 3 steps)" in captured.out
    info = studio.info(out)
    assert info["request"]["hires"] == {"scale": 2.0, "upscaler": "pixel-lanczos", "strength": 0.4, "steps": 3}
    from PIL import Image

    assert Image.open(out).size == (2 * FIRST, 2 * FIRST)
    assert main(["generate", "x", "-o", str(tmp_path / "y.png"), "--hires-strength", "0.4"]) == 2
    assert "--hires-strength given without --hires" in capsys.readouterr().err


def test_job_files_take_hires(tmp_path):
    from studio.jobs.spec import load_job

    (tmp_path / "job.jsonl").write_text('{"prompt": "a", "hires": 2}\n'
                                        '{"prompt": "b", "hires": {"scale": 1.5, "strength": 0.3}}\n'
                                        '{"prompt": "c", "hires": {"scale": 9}}\n')
    spec = load_job(tmp_path / "job.jsonl")
    assert [i.request.hires.scale for i in spec.items] == [2.0, 1.5]
    assert spec.invalid and "hires scale must be above 1 and at most 4" in spec.invalid[0].message
    (tmp_path / "job.csv").write_text("prompt,hires\na,2:0.25:pixel-lanczos\n")
    (item,) = load_job(tmp_path / "job.csv").items
    assert item.request.hires.strength == 0.25 and item.request.hires.upscaler == "pixel-lanczos"


@pytest.mark.parametrize("builder", ["tiny_latent_upscaler", "tiny_x4_upscaler"])
def test_upscaler_model_from_a_local_folder(engine, tiny_model, tmp_path, builder):
    from pipelines import tiny_upscale
    from pipelines.tiny import save_tiny

    folder = save_tiny(getattr(tiny_upscale, builder)(), tmp_path / builder)
    r = gen(engine, tiny_model, seed=4, hires={"scale": 2, "upscaler": str(folder), "steps": 2})
    assert r.outputs[0].record.width == 2 * FIRST
    assert len(r.record.input_hashes["upscaler"]) == 64  # the upscaler's weights are part of the record
    again = engine.generate(r.record.request)
    assert again.outputs[0].record.pixel_sha256 == r.outputs[0].record.pixel_sha256


def test_variation_seed_shapes_the_first_pass_only(engine, tiny_model):
    plain = gen(engine, tiny_model, seed=6, hires={"scale": 2, "upscaler": "pixel-lanczos"})
    varied = gen(engine, tiny_model, seed=6, hires={"scale": 2, "upscaler": "pixel-lanczos"}, variation_seed=99,
                 variation_strength=0.5)
    assert varied.record.request.variation_seed == 99  # recorded once, on the request that replays
    (parent,) = parent_manifests(varied.outputs[0].data)
    assert parent["params"]["request"]["variation_seed"] == 99
    assert varied.outputs[0].record.pixel_sha256 != plain.outputs[0].record.pixel_sha256


def test_job_file_renders_hires_and_replays_identical(tiny_model, tmp_path, capsys):
    job = tmp_path / "job.csv"
    job.write_text(f"prompt,width,height,steps,hires\na red circle,{FIRST},{FIRST},2,2:0.5:pixel-lanczos\n")
    out = tmp_path / "renders"
    assert main(["render", str(job), "--out", str(out), "--model", tiny_model, "--seed", "4"]) == 0
    (item,) = [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines()
               if json.loads(l).get("type") == "item"]
    assert item["request"]["hires"]["upscaler"] == "pixel-lanczos" and item["outputs"][0]["width"] == 2 * FIRST
    capsys.readouterr()
    assert main(["replay", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["identical"] == 1


def test_latent_upscaler_on_an_inpainting_model_says_use_pixels(engine, tmp_path):
    from pipelines.tiny import save_tiny, tiny_sd

    model = str(save_tiny(tiny_sd(inpaint_channels=9, vae_scale=8), tmp_path / "inpaint-model"))
    with pytest.raises(studio.RequestError, match="9-channel inpainting model.*pixel-lanczos"):
        gen(engine, model, seed=1, hires=2)
    r = gen(engine, model, seed=1, hires={"scale": 2, "upscaler": "pixel-lanczos"})
    assert r.outputs[0].record.width == 2 * FIRST


def test_img2img_with_hires_chains_the_ingredients(engine, tiny_model, tmp_path):
    from PIL import Image

    Image.new("RGB", (FIRST, FIRST), (30, 160, 40)).save(tmp_path / "src.png")
    r = gen(engine, tiny_model, seed=8, init_image=tmp_path / "src.png", strength=0.6, hires=2, width=None,
            height=None)
    assert r.record.mode == "img2img" and r.outputs[0].record.width == 2 * FIRST
    assert r.record.request.strength == 0.6 and r.record.request.hires.strength == 0.5
    assert r.record.input_hashes["init_image"]  # the user's source, as any img2img records it
    reader = c2pa.Reader("image/png", io.BytesIO(r.outputs[0].data))
    store = json.loads(reader.json())
    (first,) = store["manifests"][store["active_manifest"]]["ingredients"]
    (source,) = store["manifests"][first["active_manifest"]]["ingredients"]  # the first pass's own parent
    assert source["relationship"] == "parentOf"
