"""`studio tune` and the eval gate: the Diffusion-DPO / KTO losses, a tuned LoRA written in the format
`pipelines.lora` loads with its provenance JSON, the gate's verdict on real renders of a tiny random SD model
(passes an improving LoRA, rejects one whose independent check drops or whose reward does not improve), the
refusal of an ungated / failed / changed LoRA with its explicit override, the mini judge's fidelity check,
and the CLI."""
import json
import math
import os

import numpy as np
import pytest
import torch

import pipelines
from studio import rewards
from studio.cli import main
from studio.errors import RequestError
from studio.rewards import gate as G
from studio.rewards import tune as T
from studio.rewards.base import Reward
from studio.rewards.ratings import RatingStore

SIZE = 256  # the seal's watermark needs >= 256 px
PROMPTS = ["a red circle", "a blue square", "a green star", "a pink ring", "a gray triangle"]


# -- losses ----------------------------------------------------------------------------------------------------
def test_dpo_loss_is_log2_at_the_reference_and_its_sign_follows_the_winner():
    ref_w, ref_l = torch.rand(8), torch.rand(8)
    loss, acc = T.dpo_loss(ref_w.clone(), ref_l.clone(), ref_w, ref_l, beta=1000.0)
    assert loss.item() == pytest.approx(math.log(2)) and acc.item() == 0.0
    better, acc_b = T.dpo_loss(ref_w - 0.001, ref_l + 0.001, ref_w, ref_l, beta=1000.0)
    worse, acc_w = T.dpo_loss(ref_w + 0.001, ref_l - 0.001, ref_w, ref_l, beta=1000.0)
    assert better.item() < math.log(2) < worse.item() and acc_b.item() == 1.0 and acc_w.item() == 0.0
    err_w, err_l = ref_w.clone().requires_grad_(True), ref_l.clone().requires_grad_(True)
    T.dpo_loss(err_w, err_l, ref_w, ref_l, beta=1000.0)[0].backward()
    # gradient descent lowers the winner's denoising error and raises the loser's
    assert (err_w.grad > 0).all() and (err_l.grad < 0).all()


def test_kto_loss_is_half_at_the_reference_and_rewards_denoising_liked_samples_better():
    ref = torch.rand(6)
    liked = torch.tensor([True, True, True, False, False, False])
    assert T.kto_loss(ref.clone(), ref, liked, 1000.0).item() == pytest.approx(0.5)
    closer = ref - 0.001 * (liked.float() * 2 - 1)  # liked ones denoised better, disliked ones worse
    assert T.kto_loss(closer, ref, liked, 1000.0).item() < 0.5
    assert T.kto_loss(closer, ref, ~liked, 1000.0).item() > 0.5


def test_split_keeps_every_prompt_on_one_side_and_is_seeded():
    ps = [f"prompt {i}" for i in range(20)]
    train, held = T.split_prompts(ps + ps, 0.2, seed=3)
    assert len(held) == 4 and not set(train) & set(held) and set(train) | set(held) == set(ps)
    assert T.split_prompts(ps, 0.2, seed=3) == (train, held) and T.split_prompts(ps, 0.2, seed=4) != (train, held)


# -- the mini model's independent check ----------------------------------------------------------------------
def test_mini_fidelity_reads_the_prompt_and_judges_the_image():
    from studio.mini import world as W

    scene = W.sample_scene(5, "train", n_objects=1)
    o = scene.objects[0]
    image = W.render(scene)
    said = f"a {o.color} {o.shape} {W.POSITION_PHRASES[o.position][-1]} on a {scene.background} background"
    assert G.mini_expected(said) == {"color": o.color, "shape": o.shape, "position": o.position,
                                     "background": scene.background}
    assert G.mini_expected(f"a large {o.color} {o.shape} in the center, {scene.background} background")["position"] \
        == "center"
    assert G.mini_fidelity(image, said) is True
    other = next(c for c in W.COLORS if c not in (o.color, scene.background))
    assert G.mini_fidelity(image, said.replace(f" {o.color} ", f" {other} ")) is False
    assert G.mini_fidelity(image, "a photo of a cat") is None


# -- tune end to end on the tiny model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Its own studio home: the default ratings store and learned reward of this module only."""
    old = os.environ.get("DIFFUSION_STUDIO_HOME")
    path = tmp_path_factory.mktemp("tune-home")
    os.environ["DIFFUSION_STUDIO_HOME"] = str(path)
    yield path
    os.environ["DIFFUSION_STUDIO_HOME"] = old


@pytest.fixture(scope="module")
def rated(home, engine, tiny_model):
    store = RatingStore()
    for k, prompt in enumerate(PROMPTS):
        folder = home / "outputs" / str(k)
        folder.mkdir(parents=True)
        res = engine.generate(prompt=prompt, model=tiny_model, width=SIZE, height=SIZE, steps=2, seed=10 * k,
                              batch=2, out=folder)
        store.pick(res.outputs[0], res.outputs[1:])
        store.like(res.outputs[0])
        store.dislike(res.outputs[1])
    return store


@pytest.fixture(scope="module")
def tuned(rated, home, tiny_model):
    return T.tune(tiny_model, store=rated, out=home / "loras" / "t.safetensors", gate=False, steps=3, batch=2,
                  lr=0.05, rank=4)


def test_tune_writes_a_lora_pipelines_loads_with_its_provenance(tuned, tiny_model):
    meta = json.loads(T.sidecar(tuned.path).read_text())
    assert tuned.path.is_file() and meta == tuned.provenance
    assert meta["format"] == T.LORA_FORMAT and meta["lora_sha256"] == pipelines.file_sha256(tuned.path)
    assert meta["steps"] == 3 and meta["seed"] == 0 and meta["method"] == "auto" and meta["rank"] == 4
    r = meta["ratings"]
    assert r["used"] == 15 and r["pairs"] == 5 and r["likes"] == 10  # 5 picks of 2 + 5 likes + 5 dislikes
    assert r["train_pairs"] == 4 and r["train_likes"] == 8 and len(r["heldout_prompts"]) == 1
    assert r["heldout_prompts"][0] in PROMPTS and r["ids_sha256"]
    assert meta["gate"] is None and meta["enabled"] is False
    assert tuned.reward_report["pairs"] == 5  # the learned reward was refreshed first
    assert rewards.learned_path().is_file()

    from safetensors import safe_open

    with safe_open(str(tuned.path), "pt") as fh:
        keys = list(fh.keys())
        assert keys and all(k.startswith("unet.") and "lora" in k for k in keys)
        assert any(fh.get_tensor(k).abs().max() > 0 for k in keys if "lora_B" in k or "lora.up" in k)

    model = pipelines.load_model(tiny_model)
    assert model.content_hash == meta["base_model"]["hash"]
    model.pipe.set_progress_bar_config(disable=True)

    def render():
        return np.asarray(model.pipe("a red circle", num_inference_steps=2, width=64, height=64,
                                     generator=torch.Generator().manual_seed(1), output_type="np").images[0])

    base = render()
    assert pipelines.apply_loras(model, [(tuned.path, 1.0)]) == [meta["lora_sha256"]]
    with_lora = render()
    pipelines.apply_loras(model, [])
    assert np.abs(with_lora - base).max() > 1e-4 and np.array_equal(render(), base)


def test_an_ungated_tuned_lora_is_refused_in_one_line_before_any_load(tuned, engine, tiny_model, no_load):
    with pytest.raises(RequestError, match="has not been through the eval gate") as exc:
        engine.generate(prompt="x", model=tiny_model, width=SIZE, height=SIZE, steps=2,
                        loras=[{"path": str(tuned.path)}])
    assert "\n" not in str(exc.value) and "--allow-failed-lora" in str(exc.value)


def test_the_override_uses_it_and_records_the_lora(tuned, engine, tiny_model):
    res = engine.generate(prompt="x", model=tiny_model, width=SIZE, height=SIZE, steps=2,
                          loras=[{"path": str(tuned.path), "allow_failed_gate": True}])
    assert res.record.lora_hashes == [tuned.provenance["lora_sha256"]]
    assert res.record.request.loras[0].allow_failed_gate is True


# -- the gate --------------------------------------------------------------------------------------------------
class _Toward(Reward):
    """The probe's own brightness (luma) times a sign: the test points it along (or against) whatever the LoRA
    does to brightness. It must be the very quantity the probe measured -- a plain RGB mean can move the other
    way when the LoRA's effect is a few 1e-4 (it did, in CI)."""

    differentiable = True

    def __init__(self, name, sign):
        self.name, self.sign = name, sign
        self.luma = rewards.get("brightness", "image")

    def score(self, media, prompts):
        return self.sign * self.luma.score(media, prompts)


@pytest.fixture(scope="module")
def toward(tuned, tiny_model):
    """Rewards `up` (what the LoRA raises) and `down` (what it lowers), from one measuring gate run."""
    probe = G.run_gate(tuned.path, model=tiny_model, prompts=PROMPTS[:1], seeds=(0,), reward="brightness",
                       check="brightness", steps=2, write=False)
    sign = 1.0 if probe["reward"]["gain"] > 0 else -1.0
    assert probe["reward"]["gain"] != 0
    names = []
    for name, s in (("test-up", sign), ("test-down", -sign)):
        rewards.register(rewards.RewardSpec(name, ("image",), "test", lambda: "built in",
                                            lambda name=name, s=s: _Toward(name, s)))
        names.append(name)
    yield
    for name in names:
        rewards.REWARDS.pop(name, None)


def _gate(tuned, tiny_model, reward, check, **kw):
    return G.run_gate(tuned.path, model=tiny_model, prompts=PROMPTS[:1], seeds=(0,), reward=reward, check=check,
                      steps=2, **kw)


def test_the_gate_passes_an_improving_lora_and_then_the_engine_takes_it(toward, tuned, tiny_model, engine):
    g = _gate(tuned, tiny_model, "test-up", "test-up")
    assert g["passed"] and g["reasons"] == [] and g["reward"]["gain"] > 0 and g["check"]["drop"] < 0
    meta = T.read_provenance(tuned.path)
    assert meta["gate"]["passed"] and meta["enabled"] and meta["gate"]["lora_sha256"] == meta["lora_sha256"]
    assert meta["gate"]["images_per_arm"] == 1 and meta["gate"]["reward"]["hash"]
    G.check_tuned_lora(tuned.path)  # enabled: no refusal
    res = engine.generate(prompt="x", model=tiny_model, width=SIZE, height=SIZE, steps=2,
                          loras=[{"path": str(tuned.path)}])
    assert res.record.lora_hashes == [meta["lora_sha256"]]


def test_the_gate_rejects_a_lora_whose_independent_check_drops(toward, tuned, tiny_model):
    g = _gate(tuned, tiny_model, "test-up", "test-down")
    assert not g["passed"] and g["check"]["drop"] > 0 and "test-down dropped" in g["reasons"][0]
    assert not T.read_provenance(tuned.path)["enabled"]
    with pytest.raises(RequestError, match="failed the eval gate .*test-down dropped"):
        G.check_tuned_lora(tuned.path)
    G.check_tuned_lora(tuned.path, allow_failed=True)
    assert "FAILED" in G.summary(g)


def test_the_gate_rejects_a_lora_that_does_not_improve_the_reward(toward, tuned, tiny_model):
    g = _gate(tuned, tiny_model, "test-down", "test-up")
    assert not g["passed"] and g["reasons"] == [f"reward test-down did not improve ({g['reward']['gain']:+.4g})"]


def test_a_gated_lora_that_changed_since_is_refused(toward, tuned, tiny_model, tmp_path):
    import shutil

    copy = tmp_path / "copy.safetensors"
    shutil.copy(tuned.path, copy)
    meta = T.read_provenance(tuned.path)
    meta["gate"] = {**(meta["gate"] or {}), "passed": True, "lora_sha256": "0" * 64}
    T.write_provenance(copy, meta)
    with pytest.raises(RequestError, match="changed since its eval gate"):
        G.check_tuned_lora(copy)


def test_gate_refusals(tuned, tiny_model, tmp_path):
    plain = tmp_path / "plain.safetensors"
    plain.write_bytes(tuned.path.read_bytes())
    G.check_tuned_lora(plain)  # not a studio-tuned LoRA: not the gate's business
    with pytest.raises(RequestError, match="only LoRAs made by `studio tune`"):
        G.run_gate(plain, model=tiny_model, prompts=["x"])
    with pytest.raises(RequestError, match="needs an independent check"):
        G.run_gate(tuned.path, model=tiny_model, prompts=["x"])
    with pytest.raises(RequestError, match="needs held-out prompts"):
        G.run_gate(tuned.path, model=tiny_model, prompts=[], check="brightness")


# -- CLI -------------------------------------------------------------------------------------------------------
@pytest.mark.slow  # a tune, two sealed renders and a gate: ~20 s on an idle 2-core machine
def test_cli_tune_then_generate_refuses_until_overridden_then_gate(rated, tiny_model, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    assert main(["tune", "-m", tiny_model, "--steps", "1", "--batch", "2", "--no-gate", "--no-reward",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"LoRA {out}" in text and "15 ratings" in text and "eval gate not run" in text
    assert T.read_provenance(out)["steps"] == 1
    img = tmp_path / "x.png"
    assert main(["generate", "x", "-m", tiny_model, "-W", str(SIZE), "-H", str(SIZE), "--steps", "2",
                 "--lora", str(out), "-o", str(img)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: LoRA cli.safetensors") and err.count("\n") == 1 and not img.exists()
    assert main(["generate", "x", "-m", tiny_model, "-W", str(SIZE), "-H", str(SIZE), "--steps", "2",
                 "--lora", str(out), "--allow-failed-lora", "-o", str(img)]) == 0 and img.is_file()
    capsys.readouterr()
    code = main(["tune", "--gate", str(out), "-m", tiny_model, "--check", "brightness", "--gate-seeds", "1",
                 "--gate-steps", "2", "--tolerance", "1"])
    assert code == 0 and "eval gate" in capsys.readouterr().out
    assert T.read_provenance(out)["gate"]["check"]["tolerance"] == 1.0


def test_cli_tune_bad_input_is_one_line(tmp_path, capsys):
    assert main(["tune", "--reward-only", "--no-reward"]) == 2
    assert main(["tune", "--gate", str(tmp_path / "none.safetensors")]) == 2
    assert main(["tune", "--steps", "0", "--no-reward", "-m", "mini"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


@pytest.mark.slow  # 4 mini renders at 10 steps plus two loads
def test_on_mini_the_gate_rejects_a_lora_that_breaks_prompt_fidelity(tmp_path):
    """The mini model's own check: a LoRA that scrambles the UNet's attention draws what the prompt did not ask
    for, and the analytic judge's fidelity catches it whatever the reward says."""
    entry, loaded = T.load_base("mini")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        T.add_adapter(loaded.pipe.unet, rank=4)
        with torch.no_grad():
            for name, p in loaded.pipe.unet.named_parameters():
                if "lora_" in name:
                    p.normal_(0, 0.5)
    path = tmp_path / "scrambled.safetensors"
    sha = T.save_lora(loaded.pipe, path)
    T.write_provenance(path, {"format": T.LORA_FORMAT, "lora_sha256": sha, "size": [256, 256],
                              "base_model": {"name": "mini", "hash": loaded.content_hash}})
    prompts = ["a red circle in the center on a white background", "a blue square at the top left on a gray background"]
    g = G.run_gate(path, prompts=prompts, seeds=(0,), reward="brightness", steps=10)
    assert g["check"]["name"] == G.MINI_CHECK and g["check"]["base"] >= 50  # the base model draws them right
    assert not g["passed"] and g["check"]["drop"] >= 50 and any("mini-fidelity dropped" in r for r in g["reasons"])
    with pytest.raises(RequestError, match="failed the eval gate"):
        G.check_tuned_lora(path)
