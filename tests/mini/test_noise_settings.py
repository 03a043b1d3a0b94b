"""The scheduler a mini UNet is exported with must be the one it was trained on."""
import json
from pathlib import Path

import pytest

from studio.mini.train import make_scheduler_infer, make_scheduler_train

WEIGHTS = Path(__file__).resolve().parents[2] / "studio" / "mini" / "weights"


def test_checkpoints_from_before_the_flags_export_their_epsilon_schedule():
    for make in (make_scheduler_train, make_scheduler_infer):
        s = make({"lr": 5e-4})  # hparams of a v1.1 checkpoint: no prediction / zero-SNR keys
        assert s.config.prediction_type == "epsilon"
        assert float(s.alphas_cumprod[-1]) == pytest.approx(0.00466, rel=0.01)


def test_zero_snr_v_checkpoints_export_a_pure_noise_terminal_step():
    hp = {"prediction_type": "v_prediction", "zero_terminal_snr": True}
    assert float(make_scheduler_train(hp).alphas_cumprod[-1]) == 0.0
    s = make_scheduler_infer(hp)
    assert s.config.prediction_type == "v_prediction" and s.config.rescale_betas_zero_snr
    s.set_timesteps(30)
    assert int(s.timesteps[0]) == 999  # trailing: sampling starts on the step trained at zero SNR


def test_shipped_scheduler_matches_the_recorded_training():
    meta = json.loads((WEIGHTS / "training.json").read_text())
    cfg = json.loads((WEIGHTS / "scheduler" / "scheduler_config.json").read_text())
    assert cfg["prediction_type"] == meta.get("prediction_type", "epsilon")
    assert bool(cfg.get("rescale_betas_zero_snr")) == bool(meta.get("zero_terminal_snr"))
