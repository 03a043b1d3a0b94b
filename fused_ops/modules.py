"""Fused forwards installed on diffusers modules by :func:`fused_ops.accelerate`.

Each is bound as an instance attribute ``module.forward`` (module identity, type, parameters and state_dict keys
unchanged); undo deletes the attribute. Modules that already carry an instance ``forward`` (e.g. accelerate's
offload hooks) are left alone.
"""
from __future__ import annotations

import types

import torch
import torch.nn as nn

from . import _runtime
from .kernels.geglu import geglu, geglu_linear
from .kernels.group_norm import group_norm_act


def _gn(norm: nn.GroupNorm, x, activation, add=None):
    return group_norm_act(x, norm.num_groups, norm.weight, norm.bias, norm.eps, activation, add)


# ---- ResnetBlock2D ------------------------------------------------------------------------------------------------
def resnet_eligible(m) -> bool:
    return (
        isinstance(getattr(m, "norm1", None), nn.GroupNorm)
        and isinstance(getattr(m, "norm2", None), nn.GroupNorm)
        and type(getattr(m, "nonlinearity", None)) is nn.SiLU
        and hasattr(m, "time_embedding_norm")
    )


def fused_resnet_forward(self, input_tensor, temb, *args, **kwargs):
    """diffusers ``ResnetBlock2D.forward`` with norm1+SiLU and (temb add)+norm2+SiLU each one kernel."""
    hidden_states = _gn(self.norm1, input_tensor, "silu")
    if self.upsample is not None:
        if hidden_states.shape[0] >= 64:
            input_tensor = input_tensor.contiguous()
            hidden_states = hidden_states.contiguous()
        input_tensor = self.upsample(input_tensor)
        hidden_states = self.upsample(hidden_states)
    elif self.downsample is not None:
        input_tensor = self.downsample(input_tensor)
        hidden_states = self.downsample(hidden_states)
    hidden_states = self.conv1(hidden_states)
    if self.time_emb_proj is not None:
        if not self.skip_time_act:
            temb = self.nonlinearity(temb)
        temb = self.time_emb_proj(temb)
    if self.time_embedding_norm == "default":
        add = temb if (self.time_emb_proj is not None and temb is not None) else None
        if add is None and temb is not None:  # temb given without a projection: the stock block adds it as is
            hidden_states = hidden_states + temb
        hidden_states = _gn(self.norm2, hidden_states, "silu", add=add)
    elif self.time_embedding_norm == "scale_shift":
        if temb is None:
            raise ValueError(f" `temb` should not be None when `time_embedding_norm` is {self.time_embedding_norm}")
        if self.time_emb_proj is not None:
            temb = temb[:, :, None, None]
        time_scale, time_shift = torch.chunk(temb, 2, dim=1)
        hidden_states = _gn(self.norm2, hidden_states, None)
        hidden_states = hidden_states * (1 + time_scale) + time_shift
        hidden_states = self.nonlinearity(hidden_states)
    else:  # e.g. "group" (VAE up blocks): the time embedding is not used
        hidden_states = _gn(self.norm2, hidden_states, "silu")
    hidden_states = self.dropout(hidden_states)
    hidden_states = self.conv2(hidden_states)
    if self.conv_shortcut is not None:
        input_tensor = self.conv_shortcut(input_tensor)
    out = input_tensor + hidden_states
    if self.output_scale_factor != 1:  # stock divides by 1.0 too: one full extra pass, exact to skip
        out = out.div_(self.output_scale_factor)
    return out


# ---- GEGLU --------------------------------------------------------------------------------------------------------
def geglu_eligible(m) -> bool:
    return type(getattr(m, "proj", None)) is nn.Linear


def fused_geglu_forward(self, hidden_states, *args, **kwargs):
    """``GEGLU.forward`` with the split+GELU+product fused (``self._fused_geglu_mode``: elementwise | dual_gemm)."""
    proj = self.proj
    if type(proj) is not nn.Linear:  # wrapped later (e.g. LoRA): stock path
        return type(self).forward(self, hidden_states, *args, **kwargs)
    if self._fused_geglu_mode == "dual_gemm" and _runtime.triton_ok(hidden_states, proj.weight):
        return geglu_linear(hidden_states, proj.weight, proj.bias)
    return geglu(proj(hidden_states))


# ---- conv_norm_out + conv_act (UNet, VAE decoder/encoder) ----------------------------------------------------------
def gn_silu_forward(self, x):
    return _gn(self, x, "silu")


def identity_forward(self, x):
    return x


def install_forward(module, fn, **attrs) -> callable:
    """Bind ``fn`` as ``module.forward``; returns the undo callable."""
    module.forward = types.MethodType(fn, module)
    for k, v in attrs.items():
        setattr(module, k, v)

    def undo():
        module.__dict__.pop("forward", None)
        for k in attrs:
            module.__dict__.pop(k, None)

    return undo


def has_instance_forward(module) -> bool:
    return "forward" in module.__dict__
