"""Named sampler catalog (A1111 naming) over diffusers schedulers.

Imports nothing else of ours. Each entry maps a creator-facing name to a diffusers scheduler class name plus
config overrides. Schedulers are always built from the model's own scheduler config
(``cls.from_config(base_config, **overrides)``) so that betas, prediction type, shift etc. stay the model's.
"""
from __future__ import annotations

import importlib.util
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux", "other")
FLOW_FAMILIES = ("sd3", "flux")


class UnknownSampler(ValueError):
    """The sampler name is not in the catalog."""


class IncompatibleSampler(ValueError):
    """The sampler cannot be used with this model (wrong kind or a missing optional dependency)."""


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    cls: str  # diffusers scheduler class name
    overrides: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "eps"  # "eps" (epsilon / v-prediction models) | "flow" (flow matching models)
    description: str = ""
    requires: tuple[str, ...] = ()  # optional python modules needed (import names)
    aliases: tuple[str, ...] = ()

    @property
    def class_name(self) -> str:
        return self.cls


_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2}

_SPECS = [
    SamplerSpec("Euler", "EulerDiscreteScheduler", {"use_karras_sigmas": False}, "eps",
                "Euler method (k-diffusion sample_euler); fast, deterministic.", aliases=("k_euler",)),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", {}, "eps",
                "Euler ancestral: adds fresh noise each step; creative, does not converge.",
                aliases=("euler_ancestral", "k_euler_a", "k_euler_ancestral", "euler a")),
    SamplerSpec("Heun", "HeunDiscreteScheduler", {"use_karras_sigmas": False}, "eps",
                "Heun's 2nd-order method: two model calls per step, more accurate.", aliases=("k_heun",)),
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", {**_DPMPP, "use_karras_sigmas": False}, "eps",
                "DPM-Solver++ 2nd-order multistep.", aliases=("dpmpp_2m", "dpm++2m", "k_dpmpp_2m")),
    SamplerSpec("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {**_DPMPP, "use_karras_sigmas": True}, "eps",
                "DPM-Solver++ 2M with Karras sigmas (not for zero-terminal-SNR models).",
                aliases=("dpmpp_2m_karras", "k_dpmpp_2m_karras", "dpm++2m karras")),
    SamplerSpec("DPM++ SDE Karras", "DPMSolverSDEScheduler", {"use_karras_sigmas": True}, "eps",
                "DPM-Solver++ SDE with Karras sigmas (stochastic; needs torchsde).", requires=("torchsde",),
                aliases=("dpmpp_sde_karras", "k_dpmpp_sde_karras", "dpm++ sde karras")),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", {"use_karras_sigmas": False}, "eps",
                "DPM-Solver-2 (k-diffusion sample_dpm_2).", aliases=("k_dpm_2", "dpm_2")),
    SamplerSpec("DPM2 Karras", "KDPM2DiscreteScheduler", {"use_karras_sigmas": True}, "eps",
                "DPM-Solver-2 with Karras sigmas.", aliases=("k_dpm_2_karras", "dpm_2_karras")),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", {}, "eps",
                "UniPC predictor-corrector multistep; good at low step counts.", aliases=("unipc_multistep",)),
    SamplerSpec("DDIM", "DDIMScheduler", {}, "eps", "Denoising Diffusion Implicit Models (eta=0).",
                aliases=("ddim_sampler",)),
    SamplerSpec("DDPM", "DDPMScheduler", {}, "eps", "Ancestral DDPM sampling; needs many steps.",
                aliases=("ddpm_sampler",)),
    SamplerSpec("LMS", "LMSDiscreteScheduler", {"use_karras_sigmas": False}, "eps",
                "Linear multistep (k_lms); needs scipy.", requires=("scipy",), aliases=("k_lms",)),
    SamplerSpec("LMS Karras", "LMSDiscreteScheduler", {"use_karras_sigmas": True}, "eps",
                "Linear multistep with Karras sigmas; needs scipy.", requires=("scipy",),
                aliases=("k_lms_karras",)),
    SamplerSpec("PNDM", "PNDMScheduler", {"skip_prk_steps": True}, "eps",
                "Pseudo numerical methods (PLMS), the sampler of the first Stable Diffusion release.", aliases=("plms",)),
    SamplerSpec("LCM", "LCMScheduler", {}, "eps",
                "Latent Consistency Model sampler; for LCM-distilled models / LCM-LoRA, 2-8 steps.",
                aliases=("lcm_sampler",)),
    SamplerSpec("Flow-match Euler", "FlowMatchEulerDiscreteScheduler", {}, "flow",
                "Euler over the flow-matching ODE; for SD3 / Flux.",
                aliases=("flow_match_euler", "flowmatch euler", "flow euler", "flow-match", "flowmatch")),
    SamplerSpec("Flow-match Heun", "FlowMatchHeunDiscreteScheduler", {}, "flow",
                "Heun's method over the flow-matching ODE; for SD3 (2 model calls per step).",
                aliases=("flow_match_heun", "flowmatch heun")),
]

SAMPLERS: dict[str, SamplerSpec] = {s.name: s for s in _SPECS}

_DEFAULTS = {"sd1": "DPM++ 2M Karras", "sd2": "DPM++ 2M Karras", "sdxl": "DPM++ 2M Karras",
             "sd3": "Flow-match Euler", "flux": "Flow-match Euler", "other": "Euler"}


def _norm(name: str) -> str:
    s = name.strip().lower().replace("+", "p")
    return re.sub(r"[\s_\-\.]+", "", s)


_ALIASES: dict[str, str] = {}
for _s in _SPECS:
    for _a in (_s.name, *_s.aliases):
        _ALIASES[_norm(_a)] = _s.name


def resolve_sampler(name: str) -> str:
    """Canonical display name for ``name`` (case/space/underscore/hyphen-insensitive; ``dpmpp_2m_karras`` works)."""
    if isinstance(name, str):
        hit = _ALIASES.get(_norm(name))
        if hit:
            return hit
    raise UnknownSampler(f"unknown sampler {name!r}; known samplers: {', '.join(SAMPLERS)}")


def is_flow_model(family: str | None, base_config: Mapping[str, Any] | None = None) -> bool:
    if family in FLOW_FAMILIES:
        return True
    cls_name = str((base_config or {}).get("_class_name", ""))
    return "FlowMatch" in cls_name


def default_sampler(family: str, base_config: Mapping[str, Any] | None = None) -> str:
    if family not in _DEFAULTS:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    if family == "other" and is_flow_model(family, base_config):
        return "Flow-match Euler"
    name = _DEFAULTS[family]
    if SAMPLERS[name].overrides.get("use_karras_sigmas") and is_zero_snr(base_config):
        return _without_karras(name)
    return name


def is_zero_snr(base_config: Mapping[str, Any] | None) -> bool:
    """Trained with betas rescaled to zero terminal SNR (Lin et al. 2024): the last step is pure noise."""
    return bool((base_config or {}).get("rescale_betas_zero_snr"))


def _without_karras(name: str) -> str:
    plain = name.replace(" Karras", "")
    return plain if plain in SAMPLERS else "DPM++ 2M"


def missing_requirements(name: str) -> list[str]:
    spec = SAMPLERS[resolve_sampler(name)]
    return [m for m in spec.requires if importlib.util.find_spec(m) is None]


def check_compatible(name: str, base_config: Mapping[str, Any] | None, family: str) -> SamplerSpec:
    """Return the spec or raise IncompatibleSampler with a human reason."""
    spec = SAMPLERS[resolve_sampler(name)]
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    flow = is_flow_model(family, base_config)
    what = family if family != "other" else f"this model ({(base_config or {}).get('_class_name', 'unknown scheduler')})"
    if spec.kind == "flow" and not flow:
        raise IncompatibleSampler(
            f"{spec.name} needs a flow-matching model (sd3 / flux); {what} is an epsilon/v-prediction model. "
            f"Try {default_sampler(family, base_config)!r}.")
    if spec.kind == "eps" and flow:
        raise IncompatibleSampler(
            f"{spec.name} needs an epsilon/v-prediction model; {what} uses flow matching. "
            f"Use a flow sampler: {', '.join(s.name for s in _SPECS if s.kind == 'flow')}.")
    if flow and spec.cls == "FlowMatchHeunDiscreteScheduler" and family == "flux":
        raise IncompatibleSampler(
            f"{spec.name} does not support Flux's dynamic (resolution-dependent) shift; use 'Flow-match Euler'.")
    if spec.overrides.get("use_karras_sigmas") and is_zero_snr(base_config):
        # Karras spacing runs from the smallest to the largest sigma; at zero terminal SNR the largest is
        # infinite (diffusers clamps it to 4096), so most steps land at t >= 990 and repeat timesteps,
        # which DPM++ 2M's step counter overruns (IndexError).
        raise IncompatibleSampler(
            f"{spec.name} spaces its steps up to the model's largest noise level, which is infinite for {what} "
            f"(trained to zero terminal SNR): use {_without_karras(spec.name)!r}.")
    if spec.cls == "HeunDiscreteScheduler" and is_zero_snr(base_config):
        # the trapezoid step from sigma=4096 to the next sigma (~64 at 30 steps) multiplies the difference
        # between its two clean-image estimates by ~sigma_max / (2 sigma_1): measured on mini, the captioned
        # white background came out black for 3 of 4 seeds (Euler and DPM2: 4 of 4 right)
        raise IncompatibleSampler(
            f"{spec.name}'s second-order correction is unstable on the first step from infinite noise, which {what} "
            "starts from (trained to zero terminal SNR): use 'Euler' or 'DPM2'.")
    missing = missing_requirements(spec.name)
    if missing:
        raise IncompatibleSampler(
            f"{spec.name} needs the optional package(s) {', '.join(missing)} which are not installed: "
            f"pip install {' '.join(missing)}")
    return spec


def make_scheduler(name: str, base_config: Mapping[str, Any] | None, family: str):
    """Build a fresh diffusers scheduler for ``name`` from the model's own scheduler config."""
    import diffusers

    spec = check_compatible(name, base_config, family)
    cls = getattr(diffusers, spec.cls)
    cfg = dict(base_config or {})
    if spec.cls in ("DDIMScheduler", "DDPMScheduler") and "clip_sample" not in cfg:
        cfg["clip_sample"] = False  # latent diffusion never clips x0 (diffusers' default True is for pixel models)
    if is_zero_snr(cfg) and "rescale_betas_zero_snr" not in inspect.signature(cls.__init__).parameters:
        cfg["trained_betas"] = zero_snr_betas(cfg)
    return cls.from_config(cfg, **dict(spec.overrides))


def zero_snr_betas(base_config: Mapping[str, Any]) -> list[float]:
    """The betas of a zero-terminal-SNR model (``rescale_betas_zero_snr``) for the schedulers diffusers
    has not taught the flag (DPM2, LMS, PNDM): without them those samplers would
    silently run the un-rescaled schedule, whose steps do not match what the model was trained on.
    The last cumulative alpha is 2**-24 instead of 0, as diffusers' own Euler/DPM++/UniPC do, so that
    sigma-based samplers get a finite first sigma."""
    import diffusers

    keep = {k: base_config[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                                         "trained_betas") if base_config.get(k) is not None}
    abar = diffusers.DDPMScheduler(**keep, rescale_betas_zero_snr=True).alphas_cumprod.double().clone()
    abar[-1] = 2.0**-24
    prev = abar.new_ones(abar.shape)
    prev[1:] = abar[:-1]
    return (1.0 - abar / prev).tolist()


def list_samplers(family: str | None = None, base_config: Mapping[str, Any] | None = None) -> list[str]:
    """Sampler names usable for ``family`` (all when None), skipping those with missing optional deps."""
    out = []
    for s in _SPECS:
        if family is not None:
            try:
                check_compatible(s.name, base_config, family)
            except IncompatibleSampler:
                continue
        out.append(s.name)
    return out
