"""`--stage unpack` turns the shipped model back into a training folder that continues where it stopped."""
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from studio.mini.train import main as train

WEIGHTS = Path(__file__).resolve().parents[2] / "studio" / "mini" / "weights"


def test_unpack_then_export_gives_back_the_shipped_weights_and_history(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    train(["--work", str(work), "--stage", "unpack"])
    train(["--work", str(work), "--out", str(out), "--stage", "export"])
    for part in ("unet", "vae"):
        shipped = load_file(WEIGHTS / part / "diffusion_pytorch_model.safetensors")
        again = load_file(out / part / "diffusion_pytorch_model.safetensors")
        assert shipped.keys() == again.keys()
        assert all(bool((shipped[k] == again[k]).all()) for k in shipped), part
    before = json.loads((WEIGHTS / "training.json").read_text())
    after = json.loads((out / "training.json").read_text())
    for key in ("unet_steps_done", "unet_seconds", "vae_steps", "scaling_factor", "offset_noise"):
        assert after[key] == before[key], key
    assert after["commands"][: len(before["commands"])] == before["commands"]
    assert "--stage unpack" in after["commands"][-2] and "--stage export" in after["commands"][-1]
    assert (json.loads((out / "scheduler" / "scheduler_config.json").read_text())
            == json.loads((WEIGHTS / "scheduler" / "scheduler_config.json").read_text()))


def test_unpack_refuses_a_folder_that_already_trains(tmp_path):
    (tmp_path / "unet_ema.pt").write_bytes(b"")
    with pytest.raises(SystemExit):
        train(["--work", str(tmp_path), "--stage", "unpack"])
    assert not (tmp_path / "commands.txt").exists()


def test_unpack_names_a_folder_that_is_not_a_mini_model(tmp_path):
    with pytest.raises(SystemExit, match="not a mini model folder"):
        train(["--work", str(tmp_path / "w"), "--stage", "unpack", "--from", str(tmp_path)])
