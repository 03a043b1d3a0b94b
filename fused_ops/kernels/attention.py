"""Flash-attention forward (no mask, no dropout) for the head sizes that waste the stock kernels.

Layout: q ``(B, H, Nq, D)``, k/v ``(B, H, Nk, D)`` with ANY strides (so q/k/v can be views into a fused QKV
projection output of shape ``(B, N, 3*H*D)`` without transposes or copies). The output is returned as a
``(B, H, Nq, D)`` view of a ``(B, Nq, H, D)`` buffer, so ``out.transpose(1, 2).reshape(B, Nq, H*D)`` is free.

Head-dim split: the dot-product dimension is split into a power-of-two part ``D1`` and a padded remainder ``D2``
(40 -> 32+16, 80 -> 64+16, 160 -> 128+32, 64 -> 64, 512 -> 512), so SD1.5's head_dim 40 computes 48 columns
instead of FlashAttention-2's 64 and 80 computes exactly 80 instead of 96. The VAE's single 512-wide head uses small
row tiles. Online softmax in fp32 with exp2 (Dao et al., FlashAttention-2 algorithm). Tile sizes are untuned.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._runtime import HAS_TRITON, interpreting, launch_or_fallback, next_pow2, triton_ok

MAX_HEAD_DIM = 512


def flash_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v, computed in fp32 and cast back to q's dtype."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    return torch.matmul(torch.softmax(s, dim=-1), v.float()).to(q.dtype)


def head_dim_split(d: int) -> tuple[int, int]:
    """(D1, D2): D1 the largest power of two <= d (at least 16), D2 the padded remainder (0 or a power of two >= 16)."""
    if d <= 16:
        return 16, 0
    d1 = 1 << (int(d).bit_length() - 1)
    rest = d - d1
    if rest == 0:
        return d1, 0
    return d1, max(16, next_pow2(rest))


def _tiles(d: int, cuda: bool) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) by head dim. Untuned first guesses; measure on the GPU."""
    if not cuda:
        return 16, 16, 4, 1
    if d <= 64:
        return 128, 64, 4, 3
    if d <= 128:
        return 64, 64, 4, 3
    if d <= 256:
        return 64, 32, 8, 2
    return 32, 32, 8, 1


if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _attn_fwd(
        q_ptr, k_ptr, v_ptr, o_ptr, qk_scale, H, NQ, NK, D,
        sqb, sqh, sqn, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sob, soh, son, sod,
        D1: tl.constexpr, D2: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = pid_bh // H
        h = pid_bh % H
        q_base = q_ptr + b * sqb + h * sqh
        k_base = k_ptr + b * skb + h * skh
        v_base = v_ptr + b * svb + h * svh
        o_base = o_ptr + b * sob + h * soh
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        mask_m = offs_m < NQ
        d1 = tl.arange(0, D1)
        md1 = d1 < D
        q1 = tl.load(q_base + offs_m[:, None] * sqn + d1[None, :] * sqd, mask=mask_m[:, None] & md1[None, :], other=0.0)
        if UPCAST:
            q1 = q1.to(tl.float32)
        acc1 = tl.zeros((BLOCK_M, D1), dtype=tl.float32)
        if D2 > 0:
            d2 = D1 + tl.arange(0, D2)
            md2 = d2 < D
            q2 = tl.load(q_base + offs_m[:, None] * sqn + d2[None, :] * sqd, mask=mask_m[:, None] & md2[None, :],
                         other=0.0)
            if UPCAST:
                q2 = q2.to(tl.float32)
            acc2 = tl.zeros((BLOCK_M, D2), dtype=tl.float32)
        m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for n0 in range(0, NK, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            mask_n = offs_n < NK
            k1 = tl.load(k_base + offs_n[None, :] * skn + d1[:, None] * skd, mask=mask_n[None, :] & md1[:, None],
                         other=0.0)
            if UPCAST:
                k1 = k1.to(tl.float32)
            s = tl.dot(q1, k1, input_precision=PREC)
            if D2 > 0:
                k2 = tl.load(k_base + offs_n[None, :] * skn + d2[:, None] * skd,
                             mask=mask_n[None, :] & md2[:, None], other=0.0)
                if UPCAST:
                    k2 = k2.to(tl.float32)
                s += tl.dot(q2, k2, input_precision=PREC)
            s = tl.where(mask_n[None, :], s * qk_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            alpha = tl.math.exp2(m_i - m_new)
            p = tl.math.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v1 = tl.load(v_base + offs_n[:, None] * svn + d1[None, :] * svd, mask=mask_n[:, None] & md1[None, :],
                         other=0.0)
            if UPCAST:
                v1 = v1.to(tl.float32)
                pv = p
            else:
                pv = p.to(v1.dtype)
            acc1 = acc1 * alpha[:, None] + tl.dot(pv, v1, input_precision=PREC)
            if D2 > 0:
                v2 = tl.load(v_base + offs_n[:, None] * svn + d2[None, :] * svd,
                             mask=mask_n[:, None] & md2[None, :], other=0.0)
                if UPCAST:
                    v2 = v2.to(tl.float32)
                acc2 = acc2 * alpha[:, None] + tl.dot(pv, v2, input_precision=PREC)
            m_i = m_new
        inv_l = 1.0 / l_i
        tl.store(o_base + offs_m[:, None] * son + d1[None, :] * sod,
                 (acc1 * inv_l[:, None]).to(o_ptr.dtype.element_ty), mask=mask_m[:, None] & md1[None, :])
        if D2 > 0:
            tl.store(o_base + offs_m[:, None] * son + d2[None, :] * sod,
                     (acc2 * inv_l[:, None]).to(o_ptr.dtype.element_ty), mask=mask_m[:, None] & md2[None, :])


def flash_attention_triton(q, k, v, scale=None, *, block_m=None, block_n=None):
    B, H, NQ, D = q.shape
    NK = k.shape[2]
    if D > MAX_HEAD_DIM:
        raise ValueError(f"head_dim {D} > {MAX_HEAD_DIM}")
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    out = torch.empty((B, NQ, H, D), dtype=q.dtype, device=q.device).transpose(1, 2)
    D1, D2 = head_dim_split(D)
    bm, bn, warps, stages = _tiles(D, q.is_cuda)
    bm = block_m or bm
    bn = block_n or bn
    grid = (triton.cdiv(NQ, bm), B * H)
    _attn_fwd[grid](
        q, k, v, out, scale * 1.4426950408889634, H, NQ, NK, D,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        D1=D1, D2=D2, UPCAST=bool(interpreting() and not q.is_cuda),
        PREC="ieee" if q.dtype == torch.float32 else "tf32",  # fp32 inputs: no TF32 rounding
        BLOCK_M=bm, BLOCK_N=bn, num_warps=warps, num_stages=stages,
    )
    return out


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Attention without mask. Triton kernel when allowed, else PyTorch SDPA (the stock path, same as diffusers)."""
    if (q.dtype in (torch.float16, torch.bfloat16, torch.float32) and q.dtype == k.dtype == v.dtype
            and q.dim() == 4 and q.shape[-1] <= MAX_HEAD_DIM and triton_ok(q, k, v)):
        return launch_or_fallback(("flash_attention", q.dtype, q.shape[-1]),
                                  lambda: flash_attention_triton(q, k, v, scale),
                                  lambda: F.scaled_dot_product_attention(q, k, v, scale=scale))
    return F.scaled_dot_product_attention(q, k, v, scale=scale)
