"""A1111 `parameters` text read back into request fields: a real-looking A1111 string (multi-line prompt, LoRA
tags, schedule type, quoted values), sampler mapping with a note where there is none, and PNGs (A1111's
chunk, the studio's own record, a PNG with neither)."""
from __future__ import annotations

import json

import pytest

from studio import RequestError
from studio.a1111_params import parse, read_png, studio_sampler

A1111 = (
    "masterpiece, best quality, a cat wearing a tiny wizard hat, <lora:add_detail:0.6>, dramatic lighting\n"
    "sitting on a stack of old books\n"
    "Negative prompt: lowres, bad anatomy, (worst quality:1.4), watermark\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567890, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip skip: 2, "
    'Lora hashes: "add_detail: 7c6bad76eb54", TI hashes: "easynegative: c74b4e810b03, bad: 0123", '
    "Version: v1.10.1"
)


def test_real_a1111_text():
    p = parse(A1111)
    assert p.prompt == ("masterpiece, best quality, a cat wearing a tiny wizard hat, dramatic lighting\n"
                        "sitting on a stack of old books")
    assert p.negative_prompt == "lowres, bad anatomy, (worst quality:1.4), watermark"
    assert (p.steps, p.guidance, p.seed, p.width, p.height) == (28, 6.5, 1234567890, 512, 768)
    assert p.sampler == "DPM++ 2M Karras"  # "Sampler: DPM++ 2M, Schedule type: Karras" is one sampler here
    assert p.model == "v1-5-pruned-emaonly" and p.strength == 0.45
    assert p.loras == [{"path": "add_detail", "weight": 0.6}]
    # quoted values keep their commas; keys the studio has no field for are kept, not lost
    assert p.extra["TI hashes"] == "easynegative: c74b4e810b03, bad: 0123"
    assert p.extra["Clip skip"] == "2" and p.extra["Version"] == "v1.10.1"
    assert p.notes == []
    f = p.fields()
    assert f["sampler"] == "DPM++ 2M Karras" and f["loras"][0]["weight"] == 0.6 and f["seed"] == 1234567890


@pytest.mark.parametrize("a1111, ours", [
    ("Euler a", "Euler a"), ("Euler", "Euler"), ("DPM++ 2M Karras", "DPM++ 2M Karras"), ("PLMS", "PNDM"),
    ("DDIM", "DDIM"), ("UniPC", "UniPC"), ("LMS Karras", "LMS Karras"), ("DPM2", "DPM2"),
    ("DPM++ SDE Karras", "DPM++ SDE Karras"), ("Heun", "Heun"), ("LCM", "LCM"),
])
def test_samplers_map_to_the_catalog(a1111, ours):
    assert studio_sampler(a1111) == ours
    assert parse(f"x\nSteps: 20, Sampler: {a1111}, CFG scale: 7, Seed: 1").sampler == ours


def test_unknown_sampler_is_a_one_line_note():
    p = parse("a fox\nSteps: 20, Sampler: DPM++ 2M SDE Heun, CFG scale: 7, Seed: 1, Size: 512x512")
    assert p.sampler is None and "sampler" not in p.fields()
    (note,) = p.notes
    assert "DPM++ 2M SDE Heun" in note and "\n" not in note
    # a schedule type with no combined sampler keeps the sampler and says so
    q = parse("a fox\nSteps: 20, Sampler: Euler a, Schedule type: Exponential, CFG scale: 7, Seed: 1")
    assert q.sampler == "Euler a" and "Exponential" in q.notes[0]


def test_odd_text_never_raises():
    assert parse("just a prompt, with, commas").prompt == "just a prompt, with, commas"
    assert parse("").prompt == ""
    p = parse("p\nSteps: many, Sampler: Euler, CFG scale: 7, Seed: -1, Size: big")
    assert p.steps is None and p.seed is None and p.width is None  # -1 is A1111's random seed
    assert len(p.notes) == 2  # steps, size


def _png(path, text: dict):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_read_png_a1111_and_studio_and_neither(tmp_path):
    fields, text, notes = read_png(_png(tmp_path / "a.png", {"parameters": A1111}))
    assert text == A1111 and fields["steps"] == 28 and fields["prompt"].startswith("masterpiece") and not notes
    # the studio's own record wins over its text: it is the exact resolved request
    record = {"request": {"prompt": "a red circle", "negative_prompt": "blur", "steps": 4, "guidance": 5.0,
                          "sampler": "Euler", "width": 256, "height": 256, "seed": 9,
                          "loras": [{"path": "/x/style.safetensors", "weight": 0.7}]},
              "model_name": "tiny", "seed": 10}
    fields, _, _ = read_png(_png(tmp_path / "s.png", {"parameters": "ignored\nSteps: 1, Sampler: DDIM, Seed: 1",
                                                       "diffusion-studio": json.dumps(record)}))
    assert fields == {"prompt": "a red circle", "negative_prompt": "blur", "steps": 4, "guidance": 5.0,
                      "sampler": "Euler", "width": 256, "height": 256, "seed": 10, "model": "tiny",
                      "loras": [{"path": "/x/style.safetensors", "weight": 0.7}]}
    with pytest.raises(RequestError, match="carries no generation parameters"):
        read_png(_png(tmp_path / "plain.png", {}))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(RequestError, match="not an image"):
        read_png(tmp_path / "junk.png")
