"""Fused GPU ops for diffusion models: Triton kernels with PyTorch references, attention backend selection,
CUDA-graph capture, and one switch to apply them: ``accelerate(obj, mode="off" | "safe" | "max")``.

Imports nothing from the rest of the project. Works without Triton (every op falls back to its reference) and
without CUDA (``accelerate`` is then a logged no-op unless ``allow_cpu=True``).
"""
from . import attention, kernels
from ._runtime import HAS_TRITON, TRITON_VERSION, disabled_kernels, interpreting, set_force_reference, triton_ok
from .accelerate import ACCELERATE_MODES, AccelerationHandle, accelerate
from .attention import FusedAttnProcessor, select_backend

__all__ = [
    "ACCELERATE_MODES",
    "AccelerationHandle",
    "FusedAttnProcessor",
    "HAS_TRITON",
    "TRITON_VERSION",
    "accelerate",
    "disabled_kernels",
    "attention",
    "interpreting",
    "kernels",
    "select_backend",
    "set_force_reference",
    "triton_ok",
]
