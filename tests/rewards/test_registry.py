"""The reward registry, the safe weight loader, the analytic and video rewards."""
import numpy as np
import pytest
import torch

from studio import rewards
from studio.errors import RequestError
from studio.rewards.base import RewardError
from studio.rewards.video import VideoReward
from studio.rewards.weights import load_state_dict


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path))
    rewards._cache.clear()
    return tmp_path


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(RequestError, match=r"unknown reward 'nope' \(known: learned, .*saturation"):
        rewards.get("nope")


def test_modality_mismatch_names_what_fits():
    with pytest.raises(RequestError, match=r"reward loudness scores audio, not image \(for image: .*saturation"):
        rewards.get("loudness", "image")
    with pytest.raises(RequestError, match="scores image, not audio"):
        rewards.get("saturation", "audio")


def test_missing_weights_say_where_to_put_them(home):
    with pytest.raises(RequestError, match="learned has no weights yet .*train it"):
        rewards.get("learned")
    with pytest.raises(RequestError, match="reward clip needs local weights: .*DIFFUSION_STUDIO_REWARD_CLIP"):
        rewards.get("clip")
    with pytest.raises(RequestError, match="open_clip_torch"):
        rewards.get("hpsv2.1")
    rows = {r["name"]: r for r in rewards.available()}
    assert rows["saturation"]["ready"] and not rows["clip"]["ready"] and not rows["learned"]["ready"]
    assert "video" in rows["learned"]["modalities"] and "video" not in rows["clap"]["modalities"]


def test_learned_reward_found_once_trained_and_reloaded_after_retraining(home, monkeypatch):
    from studio.rewards.learned import train

    imgs = [np.full((16, 16, 3), v, np.float32) for v in np.linspace(0, 1, 30)]
    r1, _ = train([(imgs[i + 1], imgs[i], "p") for i in range(29)])
    r1.save(rewards.learned_path("image"))
    got = rewards.get("learned")
    assert got.hash == r1.hash and rewards.get("learned") is got  # cached
    r2, _ = train([(imgs[i], imgs[i + 1], "p") for i in range(29)])
    r2.save(rewards.learned_path("image"))
    assert rewards.get("learned").hash == r2.hash  # the file changed: rebuilt, not the stale cache
    assert isinstance(rewards.get("learned", "video"), VideoReward)


def test_register_a_custom_reward():
    from studio.rewards.analytic import Brightness

    class Darkness(Brightness):
        name = "darkness"

        def score(self, media, prompts):
            return -super().score(media, prompts)

    rewards.register(rewards.RewardSpec("darkness", ("image",), "test", lambda: "built in", Darkness))
    try:
        s = rewards.get("darkness").score([np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)], "x")
        assert s[0] > s[1]
    finally:
        rewards.REWARDS.pop("darkness")


def test_analytic_rewards_measure_what_they_say():
    grey = np.full((8, 8, 3), 128, np.uint8)
    red = np.zeros((8, 8, 3), np.uint8); red[..., 0] = 255
    white = np.full((8, 8, 3), 255, np.uint8)
    sat = rewards.get("saturation").score([grey, red], "x")
    assert sat[0] < 0.01 and sat[1] > 0.95
    bright = rewards.get("brightness").score([red, white], "x")
    assert bright[0] == pytest.approx(0.299, abs=1e-3) and bright[1] == pytest.approx(1.0, abs=1e-3)
    t = np.linspace(0, 1, 16000, dtype=np.float32)
    loud = rewards.get("loudness", "audio").score([(0.5 * np.sin(2000 * t), 16000), (0.05 * np.sin(2000 * t), 16000)], "x")
    assert loud[0] - loud[1] == pytest.approx(20.0, abs=0.5)  # 10x the amplitude = +20 dB


def test_video_reward_is_frame_mean_minus_flicker():
    frame = rewards.get("brightness")
    video = VideoReward(frame, temporal_weight=1.0)
    steady = [np.full((16, 16, 3), 128, np.uint8)] * 6
    flicker = [np.full((16, 16, 3), 28 if i % 2 else 228, np.uint8) for i in range(6)]  # same mean brightness
    f, t = video.parts([steady, flicker], "x")
    assert f[0] == pytest.approx(f[1].item(), abs=0.01)
    assert t[0] == pytest.approx(0.0, abs=1e-6) and t[1] == pytest.approx(200 / 255, abs=0.01)
    s = video.score([steady, flicker], "x")
    assert s[0] > s[1] and s[1] == pytest.approx(f[1].item() - t[1].item(), abs=1e-5)
    assert video.hash != frame.hash and VideoReward(frame, 0.5).hash != video.hash


def test_weights_loader_takes_state_dicts_and_refuses_whole_model_pickles(tmp_path):
    lin = torch.nn.Linear(3, 2)
    torch.save(lin.state_dict(), tmp_path / "sd.pth")
    assert set(load_state_dict(tmp_path / "sd.pth")) == {"weight", "bias"}
    torch.save(lin, tmp_path / "model.pth")  # a whole pickled module: would import and run code on load
    with pytest.raises(RewardError, match="whole pickled model is refused"):
        load_state_dict(tmp_path / "model.pth")
    (tmp_path / "x.npz").write_bytes(b"zz")
    with pytest.raises(RewardError, match="expected .safetensors"):
        load_state_dict(tmp_path / "x.npz")
    with pytest.raises(RewardError, match="not found"):
        load_state_dict(tmp_path / "missing.safetensors")


def test_prompts_must_match_items():
    with pytest.raises(RewardError, match="3 prompts for 2 items"):
        rewards.get("saturation").score([np.zeros((8, 8, 3), np.uint8)] * 2, ["a", "b", "c"])


@pytest.mark.parametrize("module", ["base", "weights", "features", "learned", "analytic", "video", "clip",
                                    "mini_clip"])
def test_reward_modules_import_nothing_of_the_studio(module):
    """A pipeline that steers with a reward (gradient guidance) gets it as a callable; these modules must stay
    movable below `studio` (pipelines may not import studio), so they import only each other."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(rewards.__file__).parent / f"{module}.py").read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level > 1 or (node.level == 0 and node.module and
                                                                    node.module.split(".")[0] in ("studio", "ui"))):
            bad.append(node.module)
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.split(".")[0] in ("studio", "ui")]
    assert not bad, bad
