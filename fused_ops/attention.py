"""Attention backend selection and the diffusers ``Attention`` processor that uses it.

Backends (labels returned by :func:`select_backend`):
  ``"sdpa"``            PyTorch ``scaled_dot_product_attention``, PyTorch picks flash / mem-efficient / math (stock).
  ``"sdpa_efficient"``  SDPA restricted to the mem-efficient kernel (head dims above FlashAttention's 256).
  ``"xformers"``        ``xformers.ops.memory_efficient_attention`` (only when xformers is importable).
  ``"triton"``          this package's flash kernel (:mod:`fused_ops.kernels.attention`), head-dim split 40 -> 32+16.

The static rules are first guesses from the shapes (see docs/benchmarks.md); ``autotune=True`` (mode "max") times every
available backend once per (shape, dtype, device) on CUDA after checking it against SDPA, and caches the fastest.
"""
from __future__ import annotations

import logging
import math
import os

import torch
import torch.nn.functional as F

from . import _runtime
from .kernels.attention import MAX_HEAD_DIM, flash_attention_triton, head_dim_split
from .kernels.group_norm import group_norm_act
from .kernels.qkv import fused_qkv_projection

log = logging.getLogger("fused_ops")

BACKENDS = ("sdpa", "sdpa_efficient", "xformers", "triton")
_TUNED: dict[tuple, str] = {}
_OVERRIDE: str | None = None

try:  # pragma: no cover - optional
    import xformers.ops as _xops  # type: ignore

    HAS_XFORMERS = True
except Exception:
    _xops = None
    HAS_XFORMERS = False


def set_backend_override(backend: str | None) -> None:
    """Force one backend for every eligible call (``None`` restores selection). Env: ``FUSED_OPS_ATTN_BACKEND``."""
    global _OVERRIDE
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {BACKENDS}")
    _OVERRIDE = backend


def available_backends(device) -> list[str]:
    device = torch.device(device)
    out = ["sdpa"]
    if device.type == "cuda":
        out.append("sdpa_efficient")
        if HAS_XFORMERS:
            out.append("xformers")
        if _runtime.HAS_TRITON:
            out.append("triton")
    elif device.type == "cpu" and _runtime.HAS_TRITON and _runtime.interpreting():
        out.append("triton")
    return out


def _fa_padded(d: int) -> int:
    """Columns FlashAttention-2 computes for head_dim d (kernels instantiated at multiples of 32)."""
    return 32 * math.ceil(d / 32)


def select_backend(q_shape, dtype, device, *, kv_len: int | None = None, has_mask: bool = False) -> str:
    """Pick an attention backend for ``q_shape = (B, H, N, D)`` (SDPA layout). Never raises for a valid shape.

    CPU (or any non-CUDA device), masks, fp32 and unknown cases -> ``"sdpa"`` (what diffusers runs stock).
    """
    device = torch.device(device)
    d = int(q_shape[-1])
    if device.type != "cuda" or has_mask or dtype not in (torch.float16, torch.bfloat16):
        return "sdpa"
    avail = available_backends(device)
    forced = _OVERRIDE or os.environ.get("FUSED_OPS_ATTN_BACKEND") or None
    if forced in avail and not (forced == "triton" and d > MAX_HEAD_DIM):
        return forced
    key = _key(q_shape, kv_len, dtype, device)
    if key in _TUNED:
        return _TUNED[key]
    if d > 256:  # beyond FlashAttention: VAE mid-block (1 head x 512)
        if "xformers" in avail:
            return "xformers"
        if "triton" in avail and d <= MAX_HEAD_DIM:
            return "triton"
        return "sdpa_efficient"
    if "triton" in avail:
        d1, d2 = head_dim_split(d)
        if (d1 + d2) * 1.25 <= _fa_padded(d):  # e.g. 40: 48 columns vs 64 (SD1.5)
            return "triton"
    return "sdpa"


def _key(q_shape, kv_len, dtype, device):
    return (tuple(int(s) for s in q_shape), None if kv_len is None else int(kv_len), dtype, str(device))


def run_backend(backend: str, q, k, v, *, attn_mask=None, scale=None):
    """q/k/v in SDPA layout (B, H, N, D), any strides; returns (B, H, Nq, D)."""
    if backend == "triton" and attn_mask is None and _runtime.triton_ok(q, k, v):
        return _runtime.launch_or_fallback(
            ("flash_attention", q.dtype, q.shape[-1]), lambda: flash_attention_triton(q, k, v, scale),
            lambda: F.scaled_dot_product_attention(q, k, v, scale=scale))
    if backend == "xformers" and attn_mask is None and HAS_XFORMERS:
        o = _xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale)
        return o.transpose(1, 2)
    if backend == "sdpa_efficient" and q.is_cuda:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=0.0, is_causal=False, scale=scale)


def autotune(q, k, v, *, scale=None, reps: int = 5) -> str:
    """Time each available backend on these CUDA tensors (after a correctness check) and cache the fastest."""
    key = _key(q.shape, k.shape[2], q.dtype, q.device)
    if key in _TUNED:
        return _TUNED[key]
    default = select_backend(q.shape, q.dtype, q.device, kv_len=k.shape[2])
    if not q.is_cuda or torch.cuda.is_current_stream_capturing():
        return default
    ref = F.scaled_dot_product_attention(q, k, v, scale=scale).float()
    best, best_ms = "sdpa", float("inf")
    for b in available_backends(q.device):
        if b == "triton" and q.shape[-1] > MAX_HEAD_DIM:
            continue
        try:
            out = run_backend(b, q, k, v, scale=scale)
            err = (out.float() - ref).abs().max().item()
            if not err <= 2e-2 * max(1.0, ref.abs().max().item()):
                log.warning("attention backend %s disagrees with SDPA (max err %.3g) at %s; not used", b, err,
                            tuple(q.shape))
                continue
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            run_backend(b, q, k, v, scale=scale)
            start.record()
            for _ in range(reps):
                run_backend(b, q, k, v, scale=scale)
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end) / reps
        except Exception as exc:  # a backend that cannot run this shape is simply not a candidate
            log.info("attention backend %s unavailable for %s: %s", b, tuple(q.shape), exc)
            continue
        if ms < best_ms:
            best, best_ms = b, ms
    _TUNED[key] = best
    log.info("attention autotune %s %s -> %s (%.3f ms)", tuple(q.shape), q.dtype, best, best_ms)
    return best


def clear_autotune_cache() -> None:
    _TUNED.clear()


def _plain_linear(m) -> bool:
    return type(m) is torch.nn.Linear


class FusedAttnProcessor:
    """Drop-in for diffusers ``AttnProcessor2_0`` (same math, same order of ops) with:

    * fused QKV (self-attention) / KV (cross-attention) projection when ``to_q/to_k/to_v`` are plain ``nn.Linear``:
      :func:`pack_projections` rebinds their weights as views of one concatenated tensor (no extra memory);
    * the VAE attention's GroupNorm through the Triton kernel;
    * per-shape backend selection (:func:`select_backend`, or :func:`autotune` when ``autotune=True``).
    Anything it does not handle (attention masks on the Triton path, LoRA-wrapped projections, q/k norms) takes the
    stock route for that part.
    """

    def __init__(self, *, fuse_projections: bool = True, autotune: bool = False):
        self.fuse_projections = fuse_projections
        self.autotune = autotune
        self.packed: dict[str, torch.Tensor | None] = {}

    # -- projection packing -------------------------------------------------------------------------------------
    def pack(self, attn) -> bool:
        """Rebind q/k/v (or k/v) weights as views of one tensor. Returns True if packed. Undo with :meth:`unpack`."""
        if not self.fuse_projections or self.packed:
            return bool(self.packed)
        mods = [attn.to_q, attn.to_k, attn.to_v]
        if not all(_plain_linear(m) for m in mods):
            return False
        if attn.is_cross_attention or attn.to_q.in_features != attn.to_k.in_features:
            names, mods = ["to_k", "to_v"], mods[1:]
        else:
            names = ["to_q", "to_k", "to_v"]
        if len({(m.weight.dtype, m.weight.device, m.in_features) for m in mods}) != 1:
            return False
        if any((m.bias is None) != (mods[0].bias is None) for m in mods):
            return False
        with torch.no_grad():
            w = torch.cat([m.weight.detach() for m in mods], 0)
            b = torch.cat([m.bias.detach() for m in mods], 0) if mods[0].bias is not None else None
            off = 0
            for m in mods:
                n = m.out_features
                m.weight.data = w[off:off + n]
                if b is not None:
                    m.bias.data = b[off:off + n]
                off += n
        self.packed = {"names": names, "w": w, "b": b}
        return True

    def unpack(self, attn) -> None:
        if not self.packed:
            return
        with torch.no_grad():
            for name in self.packed["names"]:
                m = getattr(attn, name)
                m.weight.data = m.weight.data.clone()
                if m.bias is not None:
                    m.bias.data = m.bias.data.clone()
        self.packed = {}

    def _packed_valid(self, attn) -> bool:
        p = self.packed
        if not p:
            return False
        w, b = p["w"], p["b"]
        off = 0
        for name in p["names"]:
            m = getattr(attn, name)
            if not _plain_linear(m) or m.weight.data_ptr() != w[off].data_ptr() or m.weight.shape[1] != w.shape[1]:
                return False
            if (b is None) != (m.bias is None) or (b is not None and m.bias.data_ptr() != b[off].data_ptr()):
                return False
            off += m.out_features
        return off == w.shape[0]

    # -- call ----------------------------------------------------------------------------------------------------
    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            gn = attn.group_norm
            if isinstance(gn, torch.nn.GroupNorm):
                hidden_states = group_norm_act(hidden_states.transpose(1, 2), gn.num_groups, gn.weight, gn.bias,
                                               gn.eps, None).transpose(1, 2)
            else:
                hidden_states = gn(hidden_states.transpose(1, 2)).transpose(1, 2)

        self_attn = encoder_hidden_states is None
        if self_attn:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)

        packed = self._packed_valid(attn)
        if packed and self.packed["names"][0] == "to_q" and self_attn:
            query, key, value = fused_qkv_projection(
                hidden_states, self.packed["w"], self.packed["b"],
                [attn.to_q.out_features, attn.to_k.out_features, attn.to_v.out_features])
        else:
            query = attn.to_q(hidden_states)
            if packed and self.packed["names"][0] == "to_k":
                key, value = fused_qkv_projection(encoder_hidden_states, self.packed["w"], self.packed["b"],
                                                  [attn.to_k.out_features, attn.to_v.out_features])
            else:
                key = attn.to_k(encoder_hidden_states)
                value = attn.to_v(encoder_hidden_states)

        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if self.autotune and attention_mask is None and query.is_cuda:
            backend = autotune(query, key, value)
        else:
            backend = select_backend(query.shape, query.dtype, query.device, kv_len=key.shape[2],
                                     has_mask=attention_mask is not None)
        hidden_states = run_backend(backend, query, key, value, attn_mask=attention_mask)

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        if attn.rescale_output_factor != 1:  # x / 1.0 == x exactly: skip the extra pass
            hidden_states = hidden_states / attn.rescale_output_factor
        return hidden_states
