"""mini-instruct (issue 17): the edit triplets change exactly what the instruction asks, the widened UNet is the
mini UNet at step 0, the model is registered and is what `studio edit` picks for mini outputs and record-less
images, and a real edit through the CLI is sealed with its source as the ingredient."""
import dataclasses

import pytest
import torch

import studio
from studio.cli import main
from studio.mini import world as W
from studio.mini.instruct import world as IW


def _diff(a: W.Obj, b: W.Obj) -> set[str]:
    return {k for k in ("color", "shape", "size", "position", "dx", "dy", "scale") if getattr(a, k) != getattr(b, k)}


@pytest.mark.parametrize("split", ["train", "holdout"])
def test_each_triplet_changes_exactly_the_asked_attribute(split):
    kinds = set()
    for seed in range(140):
        e = IW.sample_edit(seed, split, kind=IW.KINDS[seed % len(IW.KINDS)] if split == "holdout" else None)
        kinds.add(e.kind)
        src, tgt = e.source.objects, e.target.objects
        assert e.heldout is (split == "holdout")
        if split == "train":  # neither scene shows a colour-shape pair the mini world holds out
            assert not any(W.is_holdout(o) for o in src + tgt)
        if e.kind == "background":
            assert e.target.background != e.source.background and tgt == src
            assert e.target.background in e.instruction
            continue
        assert e.target.background == e.source.background
        if e.kind == "add":
            assert len(src) == 1 and tgt[:1] == src and len(tgt) == 2
            assert tgt[1].color in e.instruction and tgt[1].shape in e.instruction
        elif e.kind == "remove":
            assert len(src) == 2 and tgt == src[1 - e.index:2 - e.index]
            assert e.instruction.split()[-1] == src[e.index].shape
        else:
            asked = {"color": "color", "shape": "shape", "size": "size", "move": "position"}[e.kind]
            assert len(src) == len(tgt)
            for j, (a, b) in enumerate(zip(src, tgt)):
                assert _diff(a, b) == ({asked} if j == e.index else set()), (e.instruction, a, b)
        # the change is visible in the rendered pair
        s, t = IW.render_pair(e)
        assert s.tobytes() != t.tobytes()
    assert kinds == set(IW.KINDS)


def test_train_split_never_draws_a_held_out_combination():
    keys = {IW.sample_edit(s).key for s in range(600)}
    assert not keys & IW.HOLDOUT_EDITS
    assert {k[0] for k in keys} == set(IW.KINDS)
    with pytest.raises(ValueError, match="unknown edit kind 'tilt'"):
        IW.sample_edit(0, "holdout", kind="tilt")


def test_widened_unet_is_the_mini_unet_before_training():
    from diffusers import UNet2DConditionModel

    from studio.mini import weights_path
    from studio.mini.instruct.train import widen_unet

    base = UNet2DConditionModel.from_pretrained(weights_path() / "unet", torch_dtype=torch.float32).eval()
    wide = widen_unet(base).eval()
    assert wide.config.in_channels == 8 and wide.conv_in.weight[:, 4:].abs().sum() == 0
    g = torch.Generator().manual_seed(0)
    x, img = torch.randn(2, 4, 32, 32, generator=g), torch.randn(2, 4, 32, 32, generator=g)
    ctx = torch.randn(2, 32, 128, generator=g)
    t = torch.tensor([999, 300])
    with torch.no_grad():
        want = base(x, t, ctx).sample
        got = wide(torch.cat([x, img], 1), t, ctx).sample
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.equal(base.conv_in.weight, torch.zeros_like(base.conv_in.weight))  # a real copy, not zeros


def test_mini_instruct_is_registered_and_the_instruct_counterpart_of_mini():
    from studio.counterparts import instruct_counterpart
    from studio.registry import Registry

    reg = Registry()
    e = reg.resolve("mini-instruct")
    assert e.family == "ip2p" and e.builtin and (e.width, e.height) == (256, 256) and e.available_locally()
    assert e.source.endswith("instruct/weights")
    assert instruct_counterpart(reg, "mini") == "mini-instruct"  # the Edit tab's instruct mode on mini


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("mi") / "scene.png"
    W.render(W.Scene("white", (W.Obj("red", "circle", "large", "center"),))).save(path)  # no studio record
    return path


def test_studio_edit_picks_mini_instruct_for_mini_outputs_and_record_less_images(scene_png, tmp_path):
    from studio.control_cli import edit_model_for

    assert edit_model_for(scene_png) == "mini-instruct"
    made = studio.Studio().generate(prompt="a red circle", model="mini", steps=1, seed=1, out=tmp_path / "m.png")
    assert made.record.model_name == "mini" and made.record.model_family == "sd1"
    assert edit_model_for(tmp_path / "m.png") == "mini-instruct"


def test_cli_edit_with_the_real_mini_instruct_is_sealed_with_its_source(scene_png, tmp_path, capsys):
    import hashlib

    rc = main(["edit", str(scene_png), "make the circle blue", "-o", str(tmp_path / "e.png"), "--steps", "2",
               "--seed", "5"])
    assert rc == 0, capsys.readouterr().err
    rec = studio.info(tmp_path / "e.png")
    assert rec["model_name"] == "mini-instruct" and rec["mode"] == "instruct" and rec["model_family"] == "ip2p"
    assert rec["request"]["instruct"] is True and rec["request"]["image_guidance"] == 1.5
    assert rec["input_hashes"]["init_image"] == hashlib.sha256(scene_png.read_bytes()).hexdigest()
    report = studio.verify(tmp_path / "e.png").to_dict()
    assert report["state"] == "trusted"
    assert [i["relationship"] for i in report["manifest"]["ingredients"]] == ["parentOf"]


def test_init_unet_continues_exported_weights_and_their_command_chain(tmp_path):
    """A later budget on the shipped weights when the --work checkpoint is gone: steps and the command chain carry
    on (the card's reproduce list stays whole), and a 4-channel UNet is refused with its channel count."""
    import json

    from studio.mini import weights_path
    from studio.mini.instruct import weights_path as instruct_weights
    from studio.mini.instruct.train import main as train_main

    shipped = json.loads((instruct_weights() / "training.json").read_text())
    out = tmp_path / "out"
    train_main(["--work", str(tmp_path / "w"), "--out", str(out), "--init-unet", str(instruct_weights() / "unet"),
                "--steps", str(shipped["steps_done"] + 1), "--batch-size", "2", "--time-budget-min", "5"])
    done = json.loads((out / "training.json").read_text())
    assert done["steps_done"] == shipped["steps_done"] + 1 and done["runs"] == shipped["runs"] + 1
    assert done["commands"][: len(shipped["commands"])] == shipped["commands"]
    assert "--init-unet" in done["commands"][-1]
    with pytest.raises(SystemExit, match="4 input channels"):
        train_main(["--work", str(tmp_path / "w2"), "--out", str(tmp_path / "o2"),
                    "--init-unet", str(weights_path() / "unet"), "--steps", "1"])
