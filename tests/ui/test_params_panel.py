"""The parameters panel without a browser: the A1111 block of an output comes from its own file (and only from a
file inside the output folder), a dropped PNG's fields become Generate-form values, with a note for a model or
sampler this server lacks."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("gradio")

from ui.params_panel import form_from_file, form_values, text_for_view  # noqa: E402


def _png(path, text):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_block_is_read_from_the_output_file_inside_the_folder(tmp_path):
    out = tmp_path / "out"
    _png(out / "images" / "a.png", {"parameters": "a red circle\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 3"})
    assert text_for_view(out, {"file": "images/a.png"}).startswith("a red circle\nSteps: 4")
    _png(tmp_path / "secret.png", {"parameters": "not yours\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 1"})
    assert text_for_view(out, {"file": "../secret.png"}) == ""  # a view naming a file elsewhere shows nothing
    assert text_for_view(out, {"file": "images/missing.png"}) == "" and text_for_view(out, None) == ""


def test_dropped_png_fills_the_form_with_notes(tmp_path):
    text = ("a fox in snow, <lora:fur:0.8>\nNegative prompt: blurry\nSteps: 12, Sampler: DPM++ 2M SDE, "
            "CFG scale: 6, Seed: 77, Size: 256x384, Model: someone-elses-model")
    fields, shown, notes = form_from_file(str(_png(tmp_path / "a1111.png", {"parameters": text})))
    assert shown == text and len(notes) == 1 and "DPM++ 2M SDE" in notes[0]
    values, more = form_values(fields, models={"tiny": object()}, samplers=["Model default", "Euler"],
                               default_sampler="Model default")
    assert values == {"prompt": "a fox in snow", "negative_prompt": "blurry", "steps": 12, "guidance": 6.0,
                      "width": 256, "height": 384, "size": "Custom", "seed": 77,
                      "loras": [{"path": "fur", "weight": 0.8}]}
    assert len(more) == 1 and "someone-elses-model" in more[0]  # the form keeps its model
    # a studio PNG: the exact record, model and sampler taken over when the server has them
    record = {"request": {"prompt": "a cube", "steps": 3, "guidance": 4.0, "sampler": "Euler", "width": 64,
                          "height": 64}, "model_name": "tiny", "seed": 5}
    fields, _, _ = form_from_file(str(_png(tmp_path / "s.png", {"diffusion-studio": json.dumps(record)})))
    values, more = form_values(fields, models={"tiny": object()}, samplers=["Model default", "Euler"],
                               default_sampler="Model default")
    assert values["model"] == "tiny" and values["sampler"] == "Euler" and values["seed"] == 5 and not more


def test_loras_match_the_picker_by_name():
    from ui.params_panel import picker_values

    choices = [("style (style.safetensors)", "style.safetensors"), ("ink (sub/ink.safetensors)", "sub/ink.safetensors"),
               ("paper (registry)", "registry:paper")]
    picked, missing = picker_values([{"path": "ink", "weight": 0.7}, {"path": "/srv/x/style.safetensors"},
                                     {"path": "paper", "weight": -1}, {"path": "nowhere", "weight": 1}], choices)
    assert picked == [{"path": "sub/ink.safetensors", "weight": 0.7}, {"path": "style.safetensors", "weight": 1.0},
                      {"path": "registry:paper", "weight": -1.0}]
    assert missing == ["nowhere"]
