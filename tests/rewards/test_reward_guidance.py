"""Reward gradient guidance on x0-hat, on tiny random-weight SD pipelines: strength 0 is the unguided render
exactly, a differentiable reward rises under guidance, the cap bounds every step however high the dial, the
reward's provenance is sealed into the record / PNG / C2PA manifest, a guided record replays, and what cannot
be guided is refused in one line before any load."""
import numpy as np
import pytest
import torch

import pipelines
import safety
import studio
from pipelines.reward_guidance import GuidanceSpec, _vp_x0, guided_delta
from studio import rewards
from studio.cli import main
from studio.errors import RequestError
from studio.schema import GenerationRequest

SIZE = 256  # the image watermark needs >= 256 px


def redness(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> how much redder than green/blue, differentiable."""
    return (x[:, 0] - 0.5 * (x[:, 1] + x[:, 2])).mean((1, 2))


def redness_of(images) -> np.ndarray:
    a = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255 for im in images])
    return a[..., 0] - 0.5 * (a[..., 1] + a[..., 2])


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return pipelines.load_model(tiny_model)


KW = dict(mode="txt2img", prompt="a circle", width=64, height=64, steps=6, seeds=[1, 2])


@pytest.mark.parametrize("sampler", [None, "Euler"])  # DPM++ 2M Karras (x0 from alphas), Euler (its own x0)
def test_strength_zero_is_unguided_and_guidance_raises_the_reward(loaded, sampler):
    base = pipelines.run_image(loaded, **KW, sampler=sampler)
    zero = pipelines.run_image(loaded, **KW, sampler=sampler, reward_guidance=GuidanceSpec(redness, 0.0))
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(base, zero))
    spec = GuidanceSpec(redness, 0.1)
    guided = pipelines.run_image(loaded, **KW, sampler=sampler, reward_guidance=spec)
    gain = redness_of(guided).mean((1, 2)) - redness_of(base).mean((1, 2))
    assert (gain > 0.05).all(), gain
    assert spec.log.steps == [0, 1, 2, 3, 4]  # window [0, 0.8] of 6 steps: i/(n-1) <= 0.8
    # the log's scores are the reward on x0-hat: rising along the loop
    assert np.mean(spec.log.scores[-1]) > np.mean(spec.log.scores[0])


def test_the_cap_bounds_each_step_however_high_the_dial(loaded):
    spec = GuidanceSpec(redness, 1e6, max_step=0.05, start=0.0, end=1.0)
    pipelines.run_image(loaded, **KW, reward_guidance=spec)
    changes = np.array(spec.log.changes)
    assert changes.shape == (6, 2) and changes.max() <= 0.05 + 1e-4 and changes.min() > 0.049
    # the update rule itself, on its own: direction of the gradient, RMS = min(strength, cap) x std per image
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(3, 4, 8, 8, generator=g) * torch.tensor([1.0, 5.0, 0.2]).view(3, 1, 1, 1)
    grad = torch.randn(3, 4, 8, 8, generator=g) * 1e5
    for strength, expect in ((1e9, 0.1), (0.02, 0.02)):
        d = guided_delta(lat, grad, strength, max_step=0.1)
        rms = d.pow(2).mean((1, 2, 3)).sqrt() / lat.std((1, 2, 3))
        assert torch.allclose(rms, torch.full((3,), expect), rtol=1e-3)
        cos = torch.nn.functional.cosine_similarity(d.flatten(1), grad.flatten(1))
        assert (cos > 0.999).all()
    assert guided_delta(lat, torch.zeros_like(lat), 1.0, 0.1).abs().max() == 0


def test_x0_hat_of_a_variance_preserving_sampler_is_the_schedulers_own():
    from diffusers import DDIMScheduler

    for kind in ("epsilon", "v_prediction"):
        s = DDIMScheduler(prediction_type=kind, clip_sample=False)
        s.set_timesteps(10)
        t = s.timesteps[3]
        x, m = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
        want = s.step(m, t, x).pred_original_sample
        assert torch.allclose(_vp_x0(s, m, t, x), want, atol=1e-5)


# -- the studio: request field, record, seal, replay, refusals ------------------------------------------------

GUIDED = {"reward": "saturation", "strength": 0.1, "start": 0.0, "end": 1.0, "max_step": 0.1}


@pytest.fixture(scope="module")
def guided(engine, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("rg") / "g.png"
    common = dict(prompt="a red circle", model=tiny_model, width=SIZE, height=SIZE, steps=3, seed=5)
    plain = engine.generate(**common)
    zero = engine.generate(**common, reward_guidance={**GUIDED, "strength": 0.0})
    result = engine.generate(**common, reward_guidance=GUIDED, out=out)
    return plain, zero, result, out


def test_studio_guidance_raises_the_reward_and_zero_is_unguided(guided):
    plain, zero, result, _ = guided
    assert zero.outputs[0].record.generated_sha256 == plain.outputs[0].record.generated_sha256
    sat = rewards.get("saturation")
    before = float(sat.score(plain.images, "x")[0])
    after = float(sat.score(result.images, "x")[0])
    assert after > before + 0.02, (before, after)


def test_guided_output_records_the_reward_in_record_png_and_c2pa(guided):
    _, _, result, out = guided
    reward = rewards.get("saturation")
    rec = result.record.reward_guidance
    assert (rec.name, rec.hash, rec.strength, rec.start, rec.end, rec.max_step) == (
        "saturation", reward.hash, 0.1, 0.0, 1.0, 0.1)
    assert rec.steps == [0, 1, 2]
    info = studio.info(out)
    assert info["reward_guidance"]["hash"] == reward.hash and info["request"]["reward_guidance"] == GUIDED
    report = safety.verify(out)
    assert report.exit_code == 0, report.render()
    params = report.to_dict()["manifest"]["params"]
    assert params["reward_guidance"]["name"] == "saturation" and params["reward_guidance"]["hash"] == reward.hash


def test_a_guided_record_replays_to_the_same_pixels(guided, engine):
    _, _, result, _ = guided
    again = engine.generate(GenerationRequest(**result.record.request.model_dump()))
    assert again.outputs[0].record.generated_sha256 == result.outputs[0].record.generated_sha256
    assert again.outputs[0].record.pixel_sha256 == result.outputs[0].record.pixel_sha256


class _NoGrad(rewards.Reward):
    name = "nograd-test"
    differentiable = False

    def score(self, media, prompts):
        return torch.zeros(len(media))


def test_refusals_are_one_line_and_before_any_load(tiny_model, no_load, monkeypatch):
    monkeypatch.setitem(rewards.REWARDS, "nograd-test", rewards.RewardSpec(
        "nograd-test", ("image",), "test", lambda: "built in", _NoGrad))
    s = studio.Studio()
    cases = [
        (dict(reward_guidance={"reward": "nograd-test", "strength": 0.1}), "not differentiable"),
        (dict(reward_guidance={"reward": "nope", "strength": 0.1}), "unknown reward"),
        (dict(reward_guidance={"reward": "loudness", "strength": 0.1}), "not image"),
    ]
    for fields, words in cases:
        with pytest.raises(RequestError, match=words) as exc:
            s.check(GenerationRequest.build(prompt="x", model=tiny_model, width=64, height=64, **fields))
        assert "\n" not in str(exc.value)
    schema_cases = [
        (dict(frames=8), "video request"),
        (dict(duration=2.0), "audio request"),
        (dict(hires=2), "txt2img and img2img"),
        (dict(reward_guidance={"reward": "saturation", "strength": 0.1, "start": 0.9, "end": 0.5}), "start"),
        (dict(reward_guidance={"reward": "saturation", "strength": -1}), "strength"),
    ]
    for fields, words in schema_cases:
        fields = {"reward_guidance": {"reward": "saturation", "strength": 0.1}, **fields}
        with pytest.raises(RequestError, match=words) as exc:
            GenerationRequest.build(prompt="x", **fields)
        assert "\n" not in str(exc.value)
    from studio.guidance import check_guidance

    req = GenerationRequest.build(prompt="x", reward_guidance={"reward": "saturation", "strength": 0.1})
    with pytest.raises(RequestError, match="SD-family"):
        check_guidance(req, "flux")


def test_cli_reward_guidance(tiny_model, tmp_path, capsys):
    out = tmp_path / "c.png"
    assert main(["generate", "x", "-m", tiny_model, "--reward-guidance", "0.1", "-o", str(out)]) == 2
    assert "needs --reward" in capsys.readouterr().err and not out.exists()
    code = main(["generate", "a red circle", "-m", tiny_model, "--width", str(SIZE), "--height", str(SIZE),
                 "--steps", "2", "--seed", "3", "--reward-guidance", "0.1", "--reward", "saturation", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    info = studio.info(out)
    assert info["request"]["reward_guidance"]["strength"] == 0.1 and info["request"]["reward"] is None
    assert info["reward_guidance"]["name"] == "saturation"
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "reward guidance: saturation" in capsys.readouterr().out
