"""Sampler catalog: names, aliases, compatibility reasons, construction from a model's scheduler config."""
import importlib.util

import diffusers
import pytest

import schedulers
from schedulers import (SAMPLERS, IncompatibleSampler, SamplerSpec, UnknownSampler, default_sampler, make_scheduler,
                        resolve_sampler)

SD_CFG = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
          "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
          "prediction_type": "epsilon", "clip_sample": False}
SD2_CFG = {**SD_CFG, "_class_name": "DDIMScheduler", "prediction_type": "v_prediction"}
FLOW_CFG = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}
FLUX_CFG = {**FLOW_CFG, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15}

REQUIRED = ["Euler", "Euler a", "Heun", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DPM2", "DPM2 Karras",
            "UniPC", "DDIM", "DDPM", "LMS", "LMS Karras", "PNDM", "LCM", "Flow-match Euler"]
EPS = [n for n, s in SAMPLERS.items() if s.kind == "eps"]
FLOW = [n for n, s in SAMPLERS.items() if s.kind == "flow"]


def _available(name):
    return all(importlib.util.find_spec(m) is not None for m in SAMPLERS[name].requires)


def test_catalog_has_the_creator_names_and_specs():
    for name in REQUIRED:
        spec = SAMPLERS[name]
        assert isinstance(spec, SamplerSpec) and spec.name == name
        assert spec.kind in ("eps", "flow") and spec.description
        assert hasattr(diffusers, spec.cls), spec.cls
    assert SAMPLERS["DPM++ 2M Karras"].overrides["use_karras_sigmas"] is True
    assert SAMPLERS["DPM++ 2M"].overrides["use_karras_sigmas"] is False
    assert SAMPLERS["DPM++ SDE Karras"].cls == "DPMSolverSDEScheduler"
    assert SAMPLERS["Flow-match Euler"].kind == "flow"


@pytest.mark.parametrize("alias,canonical", [
    ("euler_a", "Euler a"), ("EULER A", "Euler a"), ("Euler-A", "Euler a"), ("k_euler_ancestral", "Euler a"),
    ("dpmpp_2m_karras", "DPM++ 2M Karras"), ("DPM++ 2M karras", "DPM++ 2M Karras"), ("dpm++_2m", "DPM++ 2M"),
    ("dpmpp_sde_karras", "DPM++ SDE Karras"), ("lms karras", "LMS Karras"), ("k_lms", "LMS"), ("ddim", "DDIM"),
    ("unipc", "UniPC"), ("flow_match_euler", "Flow-match Euler"), ("plms", "PNDM"), ("dpm2_karras", "DPM2 Karras"),
])
def test_aliases(alias, canonical):
    assert resolve_sampler(alias) == canonical


def test_unknown_sampler_lists_known_names():
    with pytest.raises(UnknownSampler) as ei:
        resolve_sampler("Eulerr b")
    msg = str(ei.value)
    assert "Eulerr b" in msg and "DPM++ 2M Karras" in msg and "Flow-match Euler" in msg
    assert isinstance(ei.value, ValueError)
    with pytest.raises(UnknownSampler):
        make_scheduler("nope", SD_CFG, "sd1")


@pytest.mark.parametrize("name", EPS)
def test_eps_samplers_build_from_model_config(name):
    if not _available(name):
        pytest.skip(f"{name} needs {SAMPLERS[name].requires}")
    s = make_scheduler(name, SD2_CFG, "sd2")
    assert type(s).__name__ == SAMPLERS[name].cls
    # the model's own settings survive, the sampler's overrides apply
    assert s.config.prediction_type == "v_prediction"
    assert s.config.beta_schedule == "scaled_linear" and s.config.beta_end == 0.012
    for k, v in SAMPLERS[name].overrides.items():
        assert s.config[k] == v
    s.set_timesteps(4)
    assert len(s.timesteps) >= 4


def test_each_call_returns_a_fresh_scheduler():
    a = make_scheduler("Euler", SD_CFG, "sd1")
    b = make_scheduler("Euler", SD_CFG, "sd1")
    assert a is not b
    a.set_timesteps(3)
    b.set_timesteps(7)
    assert len(a.timesteps) == 3


def test_ddim_never_clips_latents_when_the_config_is_silent():
    cfg = {k: v for k, v in SD_CFG.items() if k != "clip_sample"}
    assert make_scheduler("DDIM", cfg, "sd1").config.clip_sample is False


@pytest.mark.parametrize("family,cfg", [("sd3", FLOW_CFG), ("flux", FLUX_CFG)])
def test_flow_sampler_on_flow_models_keeps_shift(family, cfg):
    s = make_scheduler("Flow-match Euler", cfg, family)
    assert type(s).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert s.config.shift == cfg["shift"]
    assert s.config.use_dynamic_shifting == cfg.get("use_dynamic_shifting", False)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
@pytest.mark.parametrize("name", FLOW)
def test_flow_samplers_refused_on_eps_models(family, name):
    with pytest.raises(IncompatibleSampler) as ei:
        make_scheduler(name, SD_CFG, family)
    msg = str(ei.value)
    assert "flow" in msg and family in msg and name in msg


@pytest.mark.parametrize("family,cfg", [("sd3", FLOW_CFG), ("flux", FLUX_CFG)])
@pytest.mark.parametrize("name", ["DDIM", "Euler a", "DPM++ 2M Karras", "LCM"])
def test_eps_samplers_refused_on_flow_models(family, cfg, name):
    with pytest.raises(IncompatibleSampler) as ei:
        make_scheduler(name, cfg, family)
    msg = str(ei.value)
    assert "epsilon/v-prediction" in msg and "flow matching" in msg and family in msg
    assert "Flow-match Euler" in msg  # suggests what to use instead


def test_flow_detected_from_base_config_class_name_for_other_family():
    with pytest.raises(IncompatibleSampler):
        make_scheduler("Euler", FLOW_CFG, "other")
    assert type(make_scheduler("Flow-match Euler", FLOW_CFG, "other")).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert type(make_scheduler("Euler", SD_CFG, "other")).__name__ == "EulerDiscreteScheduler"
    assert default_sampler("other", FLOW_CFG) == "Flow-match Euler"


def test_defaults_are_compatible():
    for fam, cfg in [("sd1", SD_CFG), ("sd2", SD2_CFG), ("sdxl", SD_CFG), ("sd3", FLOW_CFG), ("flux", FLUX_CFG),
                     ("other", SD_CFG)]:
        make_scheduler(default_sampler(fam), cfg, fam)
    with pytest.raises(ValueError):
        default_sampler("sd9")


def test_missing_optional_dependency_is_refused_with_install_hint(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *a, **k):
        return None if name in ("torchsde", "scipy") else real(name, *a, **k)

    monkeypatch.setattr(schedulers.catalog.importlib.util, "find_spec", fake)
    with pytest.raises(IncompatibleSampler, match=r"pip install torchsde"):
        make_scheduler("DPM++ SDE Karras", SD_CFG, "sd1")
    with pytest.raises(IncompatibleSampler, match=r"pip install scipy"):
        make_scheduler("LMS Karras", SD_CFG, "sd1")
    assert "DPM++ SDE Karras" not in schedulers.list_samplers("sd1", SD_CFG)
    assert "Euler" in schedulers.list_samplers("sd1", SD_CFG)


def test_list_samplers_by_family():
    assert set(schedulers.list_samplers("flux", FLUX_CFG)) == {"Flow-match Euler"}
    assert "Flow-match Heun" in schedulers.list_samplers("sd3", FLOW_CFG)
    assert "Flow-match Euler" not in schedulers.list_samplers("sd1", SD_CFG)


ZSNR_CFG = {**SD2_CFG, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}


@pytest.mark.parametrize("name", [n for n in EPS if n != "Heun" and not SAMPLERS[n].overrides.get("use_karras_sigmas")])
def test_every_eps_sampler_runs_a_zero_terminal_snr_model_on_its_own_schedule(name):
    # DPM2, LMS and PNDM have no rescale_betas_zero_snr flag in diffusers: built from the
    # plain config they would sample the un-rescaled schedule (terminal alphas_cumprod 0.0047, not ~0)
    if not _available(name):
        pytest.skip(f"{name} needs {SAMPLERS[name].requires}")
    import torch

    want = diffusers.DDPMScheduler.from_config(ZSNR_CFG).alphas_cumprod
    s = make_scheduler(name, ZSNR_CFG, "sd2")
    got = s.alphas_cumprod
    assert float(got[-1]) <= 2.0**-24 * 1.001
    torch.testing.assert_close(got[:-1].float(), want[:-1].float(), rtol=1e-4, atol=1e-7)
    s.set_timesteps(10)
    assert float(s.timesteps[0]) >= 990  # trailing spacing starts where the model saw pure noise


def test_plain_models_get_no_rescaled_betas():
    s = make_scheduler("DPM2", SD2_CFG, "sd2")
    assert s.config.trained_betas is None
    assert float(s.alphas_cumprod[-1]) == pytest.approx(0.00466, rel=0.01)


KARRAS = [n for n, s in SAMPLERS.items() if s.overrides.get("use_karras_sigmas")]


@pytest.mark.parametrize("name", KARRAS)
def test_karras_spacing_is_refused_at_zero_terminal_snr_with_the_plain_sampler_named(name):
    # the largest sigma of such a model is infinite: diffusers clamps it to 4096, Karras spacing then
    # repeats t=999/998/... and DPM++ 2M Karras dies with an IndexError mid-sampling
    with pytest.raises(IncompatibleSampler, match="zero terminal SNR") as err:
        make_scheduler(name, ZSNR_CFG, "sd2")
    plain = name.replace(" Karras", "") if name.replace(" Karras", "") in SAMPLERS else "DPM++ 2M"
    assert repr(plain) in str(err.value)
    make_scheduler(plain, ZSNR_CFG, "sd2")  # the suggestion itself works
    assert name not in schedulers.list_samplers("sd2", ZSNR_CFG)
    assert name in schedulers.list_samplers("sd2", SD2_CFG)


def test_zero_snr_models_default_to_a_sampler_they_can_run():
    assert schedulers.default_sampler("sd2", SD2_CFG) == "DPM++ 2M Karras"
    assert schedulers.default_sampler("sd2", ZSNR_CFG) == "DPM++ 2M"
    make_scheduler(schedulers.default_sampler("sd1", ZSNR_CFG), ZSNR_CFG, "sd1")


def test_heun_is_refused_at_zero_terminal_snr_and_kept_otherwise():
    with pytest.raises(IncompatibleSampler, match="'Euler' or 'DPM2'"):
        make_scheduler("Heun", ZSNR_CFG, "sd2")
    assert "Heun" not in schedulers.list_samplers("sd2", ZSNR_CFG)
    assert make_scheduler("Heun", SD2_CFG, "sd2").config.trained_betas is None
