"""mini-control (issue 17): the layout map, the ControlNet's registration for the mini family (auto picks it), and
controlled generations with the real mini + mini-control through the API: sealed, the control map an
ingredient, weight 0 equal to no ControlNet, and the object drawn where the control puts it."""
import hashlib
import importlib.util

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio.mini import world as W
from studio.mini.control import WEIGHTS

needs_weights = pytest.mark.skipif(not (WEIGHTS / "config.json").exists(), reason="mini-control not trained")
needs_aux = pytest.mark.skipif(importlib.util.find_spec("controlnet_aux") is None, reason="controlnet-aux missing")


def test_layout_map_is_black_shapes_on_white_outlines_filled_rings_kept():
    import pipelines.control_preprocess as prep
    from studio.mini.control import world as CW

    ring = W.Obj("green", "ring", "large", "top left")
    star = W.Obj("yellow", "star", "small", "bottom right")
    scene = W.Scene("beige", (ring, star))
    got = np.asarray(prep.preprocess("layout", W.render(scene), (256, 256)))
    want = np.any(CW.object_masks(scene), 0)
    assert set(np.unique(got)) == {0, 255} and np.array_equal(got[..., 0] == 0, want)
    cx, cy = (int(v) for v in ring.center)
    assert got[cy, cx, 0] == 255  # the ring's hole stays background
    # a sketch: a circle's outline and a scribbled blob in black on white, as the Edit tab's sketch pad flattens it
    sketch = Image.new("RGB", (512, 512), "white")
    d = ImageDraw.Draw(sketch)
    d.ellipse((40, 40, 200, 200), outline="black", width=6)
    d.rectangle((300, 300, 420, 420), fill="black")
    m = np.asarray(prep.preprocess("layout", sketch, (256, 256)))[..., 0] == 0
    assert m[60, 60] and m[180, 180] and not m[10, 10] and not m[120, 230]  # the outline filled, the rest not
    # drawn on a dark canvas the shapes are still what differs from the border
    inv = np.asarray(prep.preprocess("layout", Image.fromarray(255 - np.asarray(sketch)), (256, 256)))[..., 0] == 0
    assert np.array_equal(inv, m)


def test_mini_control_is_registered_for_the_mini_family_and_auto_picks_it(tmp_path):
    import json

    from studio.control import CONTROLNETS, controlnet_source, default_controlnet
    from studio.counterparts import controlnet_for, controlnet_options
    from studio.mini import weights_path
    from studio.registry import Registry

    assert CONTROLNETS["mini-control"][1:] == ("sd1", ("canny", "layout", "none"))
    assert controlnet_source("mini-control") == str(WEIGHTS)
    mini = str(weights_path())
    for prep in ("canny", "layout", "none"):
        assert default_controlnet("sd1", prep, mini) == "mini-control"
    # another sd1 base (cross-attention 768, judged from its UNet config on disk): mini-control is on disk but does
    # not fit, so canny keeps the SD 1.5 ControlNet and a ready map still needs one named
    other = tmp_path / "sd15"
    (other / "unet").mkdir(parents=True)
    (other / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 768}))
    assert default_controlnet("sd1", "canny", str(other)) == "sd15-canny"
    with pytest.raises(Exception, match="needs its ControlNet named"):
        default_controlnet("sd1", "none", str(other))
    reg = Registry()
    assert controlnet_for(reg, "mini", "auto", "canny") == "mini-control"
    choices, note = controlnet_options(reg, "mini")
    label = next(lbl for lbl, value in choices if value == "mini-control")
    assert "—" not in label and note == ""  # offered as runnable


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """A reference picture: a red circle in the top left corner of a white canvas."""
    path = tmp_path_factory.mktemp("mini-ctl") / "ref.png"
    W.render(W.Scene("white", (W.Obj("red", "circle", "large", "top left"),))).save(path)
    return str(path)


@needs_weights
@needs_aux
def test_controlled_mini_generation_is_sealed_and_weight_zero_is_no_controlnet(engine, ref, tmp_path):
    import studio
    from pipelines.loading import content_hash

    ask = dict(prompt="a large blue square on a white background", model="mini", steps=8, seed=5)
    res = engine.generate(**ask, controls=[{"image": ref, "preprocessor": "canny", "weight": 1.0}],
                          out=tmp_path / "c.png")
    rec = res.record
    assert rec.request.controls[0].model == "mini-control"  # auto: the one that fits mini
    assert rec.input_hashes["controlnet_0"] == content_hash(WEIGHTS)
    assert rec.input_hashes["control_0_source"] == hashlib.sha256(open(ref, "rb").read()).hexdigest()
    out = studio.verify(tmp_path / "c.png").to_dict()
    assert out["state"] == "trusted"
    assert [(i["relationship"], i["has_manifest"]) for i in out["manifest"]["ingredients"]] == [("componentOf", True)]
    shown = studio.verify(res.controls[0].data).to_dict()
    assert shown["manifest"]["params"]["map_sha256"] == rec.input_hashes["control_0"]
    # the caption names no position: the edges put the square where the reference's circle is (top left)
    from studio.mini.judge import judge

    got = judge(res.outputs[0].image).objects
    assert got and got[0].color == "blue" and got[0].position == "top left"
    short = {**ask, "steps": 2}  # equality needs no quality
    plain = engine.generate(**short)
    zero = engine.generate(**short, controls=[{"image": ref, "preprocessor": "canny", "weight": 0.0}])
    assert zero.outputs[0].record.generated_sha256 == plain.outputs[0].record.generated_sha256
    one = engine.generate(**short, controls=[{"image": ref, "preprocessor": "canny", "weight": 1.0}])
    assert one.outputs[0].record.generated_sha256 != plain.outputs[0].record.generated_sha256


@needs_weights
def test_a_later_budget_continues_an_exported_controlnet(tmp_path):
    """--init-controlnet: the exported weights arrive unchanged (lr 0), the step count, run count and command chain
    carry on, and a folder that is not an export is refused by name."""
    import json

    import torch
    from diffusers import ControlNetModel

    from studio.mini.control import train as CT

    out = tmp_path / "o"
    before = json.loads((WEIGHTS / "training.json").read_text())
    CT.main(["--out", str(out), "--work", str(tmp_path / "w"), "--init-controlnet", str(WEIGHTS), "--lr", "0",
             "--steps", str(before["steps"] + 1), "--batch-size", "1", "--time-budget-min", "5"])
    after = json.loads((out / "training.json").read_text())
    assert after["steps"] == before["steps"] + 1 and after["runs"] == before.get("runs", 1) + 1
    assert after["commands"][:-1] == before.get("commands", [before["command"]])
    assert "--init-controlnet" in after["commands"][-1] and after["continued_from"] == str(WEIGHTS)
    assert all(c in (out / "README.md").read_text() for c in after["commands"])
    a = ControlNetModel.from_pretrained(WEIGHTS).state_dict()
    b = ControlNetModel.from_pretrained(out).state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], msg=k)
    with pytest.raises(SystemExit, match="not an exported mini-control folder"):
        CT.main(["--out", str(tmp_path / "o2"), "--work", str(tmp_path / "w2"), "--init-controlnet", str(tmp_path),
                 "--steps", "1"])
