"""The Tune tab's "Run the eval gate again" below the browser, on a real gate (a tiny random SD model, a LoRA
with random weights, two renders per arm at 64 px): the click re-runs the gate on the LoRA's held-out
prompts, shows the verdict and its figures, the new verdict replaces the stored one, and "Use it in Generate"
follows it (a LoRA that passed before and fails now is refused). Bad clicks answer one line before any load."""
from __future__ import annotations

import json

import pytest
import torch

gr = pytest.importorskip("gradio")

from studio import RequestError, rewards  # noqa: E402
from studio.rewards import gate as G  # noqa: E402
from studio.rewards import tune as T  # noqa: E402

from test_handlers import FakeStudio, app_fn  # noqa: E402
from test_tune_panel import streamed_line  # noqa: E402
from ui import tune_panel as tp  # noqa: E402

HELD = ["a red circle", "a blue square"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("regate-home")
    with pytest.MonkeyPatch.context() as mp:  # this module's own store, learned reward and LoRA folder
        mp.setenv("DIFFUSION_STUDIO_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def demo(home, tiny_model):
    """The app with a studio-tuned LoRA in its LoRA folder whose stored gate PASSED, a learned reward in the
    home, and `test-down`, a check the LoRA is known to lower (its brightness effect, measured once)."""
    from PIL import Image

    from studio import Registry
    from studio.rewards.learned import train
    from ui.app import build_app

    torch.manual_seed(0)
    entry, loaded = T.load_base(tiny_model)
    T.add_adapter(loaded.pipe.unet, rank=4)
    for name, p in loaded.pipe.unet.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    path = home / "loras" / "tuned-a.safetensors"
    sha = T.save_lora(loaded.pipe, path)
    T.write_provenance(path, {
        "format": T.LORA_FORMAT, "lora_sha256": sha, "created": "2026-12-02T00:00:00+00:00",
        "base_model": {"name": tiny_model, "family": "sd1", "hash": loaded.content_hash}, "method": "auto",
        "steps": 3, "size": [64, 64], "ratings": {"used": 4, "heldout_prompts": HELD},
        "gate": {"passed": True, "reasons": [], "lora_sha256": sha}, "enabled": True})
    # a learned reward (redder wins): the gate's reward arm
    reds = [Image.new("RGB", (32, 32), (40 + 20 * i, 40, 40)) for i in range(8)]
    reward, _ = train([(reds[i + 1], reds[i], "a red circle") for i in range(7)], steps=30)
    reward.save(rewards.learned_path())
    probe = G.run_gate(path, prompts=HELD[:1], seeds=(0,), reward="brightness", check="brightness", steps=2,
                       write=False)
    sign = 1.0 if probe["reward"]["gain"] > 0 else -1.0
    assert probe["reward"]["gain"] != 0
    luma = rewards.get("brightness")

    class Down(rewards.Reward):
        name, differentiable = "test-down", True

        def score(self, media, prompts):
            return -sign * luma.score(media, prompts)

    rewards.register(rewards.RewardSpec("test-down", ("image",), "test", lambda: "built in", Down))
    registry = Registry(user_file=home / "models.toml")
    yield build_app(FakeStudio(registry), home / "out", verify_on_write=False, loras_dir=home / "loras")
    rewards.REWARDS.pop("test-down", None)


def test_the_gate_runs_again_shows_its_verdict_and_use_in_generate_follows_it(demo, home):
    h = demo.ui_handlers
    assert tp.use_in_generate(h, "tuned-a.safetensors", []) == ["tuned-a.safetensors"]  # passed before
    status, verdict, previews, table = app_fn(demo, "do_regate")("tuned-a.safetensors", "test-down", 1, 2)
    assert status.startswith("Gated `tuned-a.safetensors` again on 2 held-out prompt(s) x 1 seed(s)")
    assert "FAILED" in status and "engine refuses it" in status and "\n" not in status
    assert "FAILED" in verdict and "test-down dropped by" in verdict and "2 images per arm" in verdict
    assert previews == [] and [r[5] for r in table] == ["FAILED"]
    meta = json.loads((home / "loras" / "tuned-a.json").read_text())
    g = meta["gate"]
    assert not meta["enabled"] and not g["passed"] and g["prompts"] == 2 and g["seeds"] == [0]
    assert g["steps"] == 2 and g["check"]["name"] == "test-down" and g["reward"]["name"] == "learned"
    assert g["reward"]["hash"] == rewards.get("learned").hash and g["lora_sha256"] == meta["lora_sha256"]
    with pytest.raises(RequestError, match="failed the eval gate .*test-down dropped"):
        tp.use_in_generate(h, "tuned-a.safetensors", [])
    line = app_fn(demo, "tune_use")("tuned-a.safetensors", [])[0]
    assert line.startswith("**Error:** LoRA tuned-a.safetensors failed the eval gate") and "\n" not in line


def test_bad_regate_clicks_are_one_line_before_any_load(demo, home, no_load):
    (home / "loras" / "plain.safetensors").write_bytes(b"a LoRA the studio did not tune")
    for args, why in ((("", "test-down", 1, 2), "pick a tuned LoRA to gate again"),
                      (("plain.safetensors", "test-down", 1, 2), "plain.safetensors was not tuned by the studio"),
                      (("tuned-a.safetensors", "auto", 1, 2), "pick an independent check for the gate"),
                      (("tuned-a.safetensors", "test-down", 0, 2), "gate seeds must be at least 1"),
                      (("tuned-a.safetensors", "nope", 1, 2), "is not a reward ready for images"),
                      (("../../etc/x.safetensors", "test-down", 1, 2), "LoRA folder")):
        status = streamed_line(demo, *args, name="do_regate")
        assert status[0].startswith("**Error:**") and why in status[0] and "\n" not in status[0], (args, status)


def test_refreshing_only_the_learned_reward_shows_its_gate_and_keeps_the_current_one_when_it_fails(demo, home,
                                                                                                   monkeypatch):
    """The ratings' prompts are not mini-world prompts, so the judge cannot check the new reward: with a learned
    reward in use, an unjudged one does not replace it."""
    import functools
    import hashlib

    from PIL import Image

    from studio.rewards import RatingStore, learned

    monkeypatch.setattr(learned, "train", functools.partial(learned.train, steps=60))  # the fit is not the point

    assert "no ratings to train on" in app_fn(demo, "tune_reward")("auto")[0]  # an empty store: one line
    store = RatingStore()
    for k in range(10):
        items = []
        for j, rgb in enumerate(((200, 20, 20), (20, 20, 200))):
            path = home / "rated" / f"{k}-{j}.png"
            path.parent.mkdir(exist_ok=True)
            Image.new("RGB", (32, 32), (rgb[0] - 5 * k, 20, rgb[2])).save(path)
            items.append({"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "path": str(path),
                          "prompt": f"a red thing {k}", "format": "png", "modality": "image"})
        store.pick(items[0], items[1:])
    before = rewards.learned_path().read_bytes()
    status, verdict = app_fn(demo, "tune_reward")("auto")
    assert status.startswith("Learned reward refitted on 10 pairs and 0 thumbs (held-out accuracy ")
    assert status.endswith("not enabled: the current learned reward stays")
    assert "FAILED" in verdict and "none of the held-out prompts is one mini-fidelity can check" in verdict
    assert rewards.learned_path().read_bytes() == before
    assert "is not a reward ready for images" in app_fn(demo, "tune_reward")("nope")[0]
