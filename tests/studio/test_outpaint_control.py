"""Outpainting with a ControlNet unit: the control map is made at the outpainted canvas' size (not the source
image's), recorded, sealed and credited, and the kept region of the source survives."""
import importlib.util

import numpy as np
import pytest
from PIL import Image, ImageDraw

import studio

needs_aux = pytest.mark.skipif(importlib.util.find_spec("controlnet_aux") is None,
                               reason="controlnet-aux not installed (pip install --no-deps controlnet-aux)")


@needs_aux
def test_outpaint_with_a_control_unit_maps_the_whole_canvas(engine, tmp_path):
    from pipelines.tiny import save_tiny, tiny_sd
    from pipelines.tiny_control import tiny_controlnet

    sd = tiny_sd(vae_scale=8)
    base = save_tiny(sd, tmp_path / "sd")
    tiny_controlnet(sd).save_pretrained(tmp_path / "cn")
    src = Image.new("RGB", (256, 256), (200, 40, 40))
    src.save(tmp_path / "src.png")
    ref = Image.new("RGB", (320, 256), "white")  # the control image covers the outpainted canvas
    ImageDraw.Draw(ref).ellipse((200, 60, 300, 160), fill="black")
    ref.save(tmp_path / "ref.png")
    unit = {"image": str(tmp_path / "ref.png"), "preprocessor": "canny", "model": str(tmp_path / "cn"), "weight": 0.7}
    res = engine.generate(prompt="a red wall", model=str(base), init_image=str(tmp_path / "src.png"),
                          outpaint={"right": 64}, steps=2, seed=3, controls=[unit], out=tmp_path / "o.png")
    rec = res.record
    assert rec.mode == "outpaint" and rec.request.controls[0].weight == 0.7
    out = Image.open(tmp_path / "o.png")
    assert out.size == (320, 256)
    assert res.controls[0].image.size == (320, 256)  # the map steers the whole canvas, margins included
    assert "control_0" in rec.input_hashes and "control_0_source" in rec.input_hashes
    report = studio.verify(tmp_path / "o.png").to_dict()
    assert report["state"] == "trusted"
    rels = sorted(i["relationship"] for i in report["manifest"]["ingredients"])
    assert rels == ["componentOf", "parentOf"]  # the control map and the source image
    kept = np.asarray(out.convert("RGB"), dtype=np.int16)[:, :200]  # well inside the source, past the overlap
    assert np.abs(kept - np.array([200, 40, 40])).mean() < 12  # the source region survives (watermark noise only)
