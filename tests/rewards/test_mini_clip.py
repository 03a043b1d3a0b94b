"""The `mini-clip` reward: the shipped mini CLIP loads, prefers the true caption (and the true image) over
one-change ones on rendered mini-world scenes, is listed and ranks a best-of-N, and a bad weights file is
refused in one line."""
import random

import numpy as np
import pytest
import torch

from studio import rewards
from studio.errors import RequestError
from studio.mini import world as W
from studio.mini.clip.world import MODS, modify
from studio.rewards.base import RewardError


@pytest.fixture(scope="module")
def clip():
    return rewards.get("mini-clip")


def _scenes(n, split="holdout", seed=0):
    return [W.sample_scene(90_000 + seed + i, split) for i in range(n)]


def test_loads_from_the_shipped_folder_and_describes_itself(clip):
    from studio.mini.clip import WEIGHTS

    d = clip.describe()
    assert d["name"] == "mini-clip" and d["differentiable"] and len(d["hash"]) == 64
    assert str(WEIGHTS) in d["source"] and "text_encoder" in d["source"]
    assert (WEIGHTS / "model.safetensors").stat().st_size < 2_000_000  # shipped in the repo: kept small


def test_true_caption_and_true_image_outscore_one_change_ones(clip):
    rng = random.Random(0)
    cap_right, img_right = [], []
    for s in _scenes(8):
        cap = W.caption(s, full=True)
        for mod in MODS:
            t = modify(s, mod, rng, allow_holdout=True)
            if t is None:
                continue
            with torch.no_grad():
                a, b = clip.score([W.render(s)] * 2, [cap, W.caption(t, full=True)]).tolist()
                c = float(clip.score([W.render(t)], cap)[0])
            cap_right.append(a > b)
            img_right.append(a > c)
    # held-out colour-shape pairs; the card reports 300 scenes, this is 8
    assert np.mean(cap_right) >= 0.8 and np.mean(img_right) >= 0.8, (np.mean(cap_right), np.mean(img_right))


def test_gradient_reaches_the_pixels(clip):
    x = torch.from_numpy(W.scene_array(_scenes(1)[0]).copy()).permute(2, 0, 1)[None].float().div(255).requires_grad_()
    clip.score(x, "a red circle in the center on a white background").sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_listed_ready_and_ranks_a_cli_best_of(tiny_model, tmp_path, capsys):
    from studio.cli import main

    row = {r["name"]: r for r in rewards.available()}["mini-clip"]
    assert row["ready"] and row["modalities"] == ["image", "video"]
    assert main(["rewards"]) == 0 and "mini-clip" in capsys.readouterr().out
    out = tmp_path / "b.png"
    code = main(["generate", "a red circle in the center on a white background", "-m", tiny_model, "-o", str(out),
                 "--steps", "2", "-W", "256", "-H", "256", "--best-of", "2", "--reward", "mini-clip"])
    assert code == 0 and out.is_file() and "best of 2 by reward mini-clip" in capsys.readouterr().out


def test_bad_weights_refused_in_one_line(tmp_path, monkeypatch):
    from studio.mini.clip import WEIGHTS

    monkeypatch.setenv("DIFFUSION_STUDIO_REWARD_MINI_CLIP", str(tmp_path))
    rewards._cache.clear()
    with pytest.raises(RequestError, match=r"holds no config.json \+ model.safetensors") as e:
        rewards.get("mini-clip")
    assert "\n" not in str(e.value)
    (tmp_path / "config.json").write_text((WEIGHTS / "config.json").read_text())
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.safetensors")  # a whole pickled model, misnamed
    with pytest.raises(RequestError, match="not a readable safetensors file") as e:
        rewards.get("mini-clip")
    assert "\n" not in str(e.value)
    from safetensors.torch import save_file

    save_file({"image.proj.weight": torch.zeros(3, 3)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(RequestError, match="does not fit its config"):
        rewards.get("mini-clip")
    (tmp_path / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(RequestError, match="not a mini-clip config"):
        rewards.get("mini-clip")
    rewards._cache.clear()

