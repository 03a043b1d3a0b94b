"""Named sampler catalog over diffusers schedulers (imports nothing else of ours)."""
from .catalog import (
    FAMILIES,
    SAMPLERS,
    IncompatibleSampler,
    SamplerSpec,
    UnknownSampler,
    check_compatible,
    default_sampler,
    is_flow_model,
    list_samplers,
    make_scheduler,
    missing_requirements,
    resolve_sampler,
    zero_snr_betas,
)

__all__ = [
    "FAMILIES", "SAMPLERS", "IncompatibleSampler", "SamplerSpec", "UnknownSampler", "check_compatible",
    "default_sampler", "is_flow_model", "list_samplers", "make_scheduler", "missing_requirements", "resolve_sampler",
    "zero_snr_betas",
]
