"""Triton kernels, each with a PyTorch ``*_reference`` beside it.

Every public op here dispatches: Triton when ``fused_ops._runtime.triton_ok(...)`` (CUDA tensors, or CPU tensors
under ``TRITON_INTERPRET=1``), the reference otherwise. The references are the semantics; the kernels must match
them within dtype tolerance (tests/fused_ops).
"""
from .attention import flash_attention, flash_attention_reference
from .geglu import geglu, geglu_linear, geglu_linear_reference, geglu_reference
from .group_norm import group_norm_act, group_norm_act_reference
from .qkv import fused_qkv_projection, fused_qkv_projection_reference

__all__ = [
    "flash_attention",
    "flash_attention_reference",
    "geglu",
    "geglu_reference",
    "geglu_linear",
    "geglu_linear_reference",
    "group_norm_act",
    "group_norm_act_reference",
    "fused_qkv_projection",
    "fused_qkv_projection_reference",
]
