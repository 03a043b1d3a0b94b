"""Variation seeds, styles, prompt weighting and the token-limit warning end to end: request -> pipeline -> seal ->
file, what the outputs record, replay from the record, the CLI and batch files (tiny random-weight SD saved to disk)."""
import json

import numpy as np
import pytest

import studio
from studio.cli import main
from studio.errors import RequestError

SIZE = 256  # the image watermark needs >= 256 px
BASE = dict(prompt="a red circle", width=SIZE, height=SIZE, steps=2, sampler="Euler")


@pytest.fixture
def styles_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    from studio.styles import save_style

    save_style("warm", "{prompt}, warm evening light", "cold")
    save_style("tail", "35mm film")
    return tmp_path / "home"


def gen(engine, model, **kw):
    return engine.generate(model=model, **{**BASE, **kw})


def sha(result, i=0):
    return result.outputs[i].record.generated_sha256


def test_strength_0_is_the_plain_seed_and_1_the_variation_seeds_noise(engine, tiny_model):
    plain = gen(engine, tiny_model, seed=5)
    assert sha(gen(engine, tiny_model, seed=5, variation_seed=9, variation_strength=0.0)) == sha(plain)
    target = gen(engine, tiny_model, seed=9)
    assert sha(gen(engine, tiny_model, seed=5, variation_seed=9, variation_strength=1.0)) == sha(target)
    near = gen(engine, tiny_model, seed=5, variation_seed=9, variation_strength=0.1)
    far = gen(engine, tiny_model, seed=5, variation_seed=9, variation_strength=0.6)
    px = lambda r: np.asarray(r.images[0]).astype(int)  # noqa: E731
    assert sha(near) not in (sha(plain), sha(target))
    # a small strength stays closer to the plain image than a large one
    assert np.abs(px(near) - px(plain)).mean() < np.abs(px(far) - px(plain)).mean()


def test_batch_items_keep_their_seeds_and_share_the_variation_seed(engine, tiny_model):
    batch = gen(engine, tiny_model, seed=40, batch=2, variation_seed=7, variation_strength=0.5)
    single = gen(engine, tiny_model, seed=41, variation_seed=7, variation_strength=0.5)
    assert [o.record.seed for o in batch.outputs] == [40, 41]
    diff = np.abs(np.asarray(batch.images[1]).astype(int) - np.asarray(single.images[0]).astype(int))
    assert diff.max() <= 4 and diff.mean() < 0.05  # batched CPU matmuls round differently
    assert batch.outputs[1].record.watermark_id == single.outputs[0].record.watermark_id


def test_variation_is_recorded_in_png_and_c2pa_and_replays(engine, tiny_model, tmp_path):
    res = gen(engine, tiny_model, seed=5, variation_seed=9, variation_strength=0.35, out=tmp_path / "v.png")
    info = studio.info(tmp_path / "v.png")
    assert info["request"]["variation_seed"] == 9 and info["request"]["variation_strength"] == 0.35
    assert "Variation seed: 9, Variation seed strength: 0.35" in info["_parameters"]
    report = studio.verify(tmp_path / "v.png")
    assert report.exit_code == 0
    params = report.to_dict()["manifest"]["params"]
    assert params["request"]["variation_seed"] == 9 and params["request"]["variation_strength"] == 0.35
    again = engine.generate(studio.GenerationRequest.model_validate(info["request"]))
    assert again.outputs[0].record.pixel_sha256 == res.outputs[0].record.pixel_sha256


def test_bad_variation_requests_are_one_line_before_the_load(no_load, tmp_path):
    with pytest.raises(RequestError, match="variation_strength given without variation_seed"):
        studio.Studio().generate(prompt="x", variation_strength=0.5)
    with pytest.raises(RequestError, match="variation_seed applies to text-to-image"):
        studio.Studio().generate(prompt="x", init_image="a.png", variation_seed=3, variation_strength=0.5)
    with pytest.raises(RequestError, match="variation_strength"):
        studio.Studio().generate(prompt="x", variation_seed=3, variation_strength=1.5)


def test_styles_apply_in_order_are_recorded_and_replay_without_the_file(engine, tiny_model, styles_home, tmp_path):
    res = gen(engine, tiny_model, seed=3, styles=["warm", "tail"], negative_prompt="blurry", out=tmp_path / "s.png")
    req = res.record.request
    assert req.prompt == "a red circle, warm evening light, 35mm film" and req.negative_prompt == "blurry, cold"
    assert req.styles == []
    assert res.record.styles == {"names": ["warm", "tail"], "prompt": "a red circle", "negative_prompt": "blurry"}
    info = studio.info(tmp_path / "s.png")
    assert "Styles: warm, tail" in info["_parameters"] and info["styles"]["names"] == ["warm", "tail"]
    (styles_home / "styles.toml").unlink()  # the record alone replays
    again = engine.generate(studio.GenerationRequest.model_validate(info["request"]))
    assert again.outputs[0].record.pixel_sha256 == res.outputs[0].record.pixel_sha256


def test_unknown_style_is_refused_before_the_load(no_load, styles_home):
    with pytest.raises(RequestError, match=r"unknown style 'nope' \(saved styles: tail, warm"):
        studio.Studio().generate(prompt="x", styles=["nope"])


def test_weighting_is_auto_detected_recorded_and_changes_the_image(engine, tiny_model):
    plain = gen(engine, tiny_model, seed=8, prompt="a red circle")
    literal = gen(engine, tiny_model, seed=8, prompt="a (red:1.8) circle", prompt_weighting=False)
    weighted = gen(engine, tiny_model, seed=8, prompt="a (red:1.8) circle")
    assert weighted.record.request.prompt_weighting is True
    assert plain.record.request.prompt_weighting is False and literal.record.request.prompt_weighting is False
    assert len({sha(plain), sha(literal), sha(weighted)}) == 3
    # weighting on, no weights in the prompt: compel's embeddings are the pipeline's own
    assert sha(gen(engine, tiny_model, seed=8, prompt="a red circle", prompt_weighting=True)) == sha(plain)


def test_prompt_past_the_encoder_limit_warns_in_the_record(engine, tiny_model):
    res = gen(engine, tiny_model, seed=1, prompt="a red circle " + "and more words " * 10)
    assert len(res.record.warnings) == 1
    line = res.record.warnings[0]
    assert line.startswith("prompt is 132 tokens but model's CLIP text encoder reads 77")  # byte-level tokens
    # the same text diffusers logs as truncated
    assert line.endswith("the rest is ignored ('re words and more words and more words and more words and more words')")
    assert gen(engine, tiny_model, seed=1).record.warnings == []


def test_mini_weighting_and_token_count():
    """The bundled mini model (SD family) takes weighted prompts too; its real tokenizer counts words."""
    res = studio.Studio().generate(prompt="a (red:1.4) circle at the top left", model="mini", width=64, height=64,
                                   steps=2, seed=1)
    assert res.record.request.prompt_weighting is True and res.record.warnings == []
    from studio.prompt_tools import count

    c = count(studio.Studio(), "mini", "a red circle")
    assert c == {"tokens": 5, "limit": 32, "kind": "CLIP", "over": False, "text": "5/32 tokens"}  # mini reads 32


def test_cli_variation_style_and_warning(tiny_model, styles_home, tmp_path, capsys):
    out = tmp_path / "c.png"
    args = ["generate", "a red circle " + "and more words " * 10, "-o", str(out), "--model", tiny_model,
            "--seed", "5", "--steps", "2", "-W", "256", "-H", "256", "--sampler", "Euler",
            "--variation-seed", "9", "--variation-strength", "0.4", "--style", "tail"]
    assert main(args) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warnings = [line for line in err if line.startswith("warning: ")]
    assert len(warnings) == 1 and "text encoder reads 77" in warnings[0]
    info = studio.info(out)
    assert info["request"]["variation_seed"] == 9 and info["styles"]["names"] == ["tail"]
    assert info["request"]["prompt"].endswith(", 35mm film")
    assert main(["info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "Variation seed: 9, Variation seed strength: 0.4" in shown and "styles: tail (prompt before styling" in shown
    assert "warning: prompt is" in shown


@pytest.mark.parametrize("args, needle", [
    (["--variation-seed", "3"], "--variation-seed needs --variation-strength"),
    (["--variation-strength", "0.5"], "variation_strength given without variation_seed"),
    (["--variation-seed", "3", "--variation-strength", "2"], "variation_strength"),
])
def test_cli_bad_variation_flags_one_line(args, needle, capsys, tmp_path):
    assert main(["generate", "a cat", "-o", str(tmp_path / "x.png"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and needle in err


def test_cli_styles_add_and_list(styles_home, capsys):
    assert main(["styles", "--add", "noir", "--prompt", "film noir still of {prompt}", "--negative", "color"]) == 0
    capsys.readouterr()
    assert main(["styles", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["noir"] == {"name": "noir", "prompt": "film noir still of {prompt}", "negative_prompt": "color"}
    assert main(["styles", "--add", "bad/name", "--prompt", "x"]) == 2


def test_batch_file_rows_carry_variation_and_styles_and_replay(tiny_model, styles_home, tmp_path, capsys):
    job = tmp_path / "job.txt"
    job.write_text("a red circle | variation_seed=9 | variation_strength=0.5 | styles=tail | width=256 | height=256"
                   " | steps=2 | sampler=Euler\n")
    out = tmp_path / "out"
    assert main(["render", str(job), "--out", str(out), "--model", tiny_model, "--seed", "4"]) == 0
    entry = next(json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()
                 if json.loads(line).get("type") == "item")
    assert entry["request"]["variation_seed"] == 9 and entry["request"]["variation_strength"] == 0.5
    assert entry["request"]["prompt"] == "a red circle, 35mm film"
    capsys.readouterr()
    assert main(["replay", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["identical"] == 1 and report["differs"] == 0


def test_batch_file_with_an_unknown_style_is_refused_at_validation(tiny_model, styles_home, tmp_path, capsys):
    job = tmp_path / "job.csv"
    job.write_text('prompt,styles,variation_seed,variation_strength\n"a red circle","tail, warm",3,0.2\n'
                   '"a blue square",nope,,\n')
    assert main(["render", str(job), "--out", str(tmp_path / "out"), "--model", tiny_model]) == 2
    err = capsys.readouterr().err
    assert "job.csv:3: unknown style 'nope'" in err and "job.csv:2" not in err
    assert not (tmp_path / "out").exists()
