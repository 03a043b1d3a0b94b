"""Fused QKV (or KV) projection: one GEMM against the concatenated weights instead of three.

No Triton here on purpose: the GEMM is cuBLAS's job; the gain is one launch and one read of ``x`` instead of three.
The outputs are views into one buffer (strided); the attention kernels read strided q/k/v without copies.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fused_qkv_projection_reference(x: torch.Tensor, weights: list[torch.Tensor],
                                   biases: list[torch.Tensor | None]) -> tuple[torch.Tensor, ...]:
    return tuple(F.linear(x, w, b) for w, b in zip(weights, biases))


def concat_weights(weights: list[torch.Tensor], biases: list[torch.Tensor | None]):
    w = torch.cat([t.detach() for t in weights], dim=0)
    if all(b is None for b in biases):
        return w, None
    b = torch.cat([(bb.detach() if bb is not None else torch.zeros(t.shape[0], dtype=t.dtype, device=t.device))
                   for t, bb in zip(weights, biases)])
    return w, b


def fused_qkv_projection(x: torch.Tensor, w_cat: torch.Tensor, b_cat: torch.Tensor | None,
                         splits: list[int]) -> tuple[torch.Tensor, ...]:
    """``F.linear(x, w_cat, b_cat)`` split along the last dim into ``splits`` (views, no copies)."""
    y = F.linear(x, w_cat, b_cat)
    return tuple(y.split(splits, dim=-1))
