"""GEGLU: ``hidden * gelu(gate)`` where ``proj(x) = [hidden | gate]`` (diffusers ``GEGLU``, exact erf GELU).

Two fusions:
* :func:`geglu` - the elementwise part in one pass over the projection output (reads 2D, writes D per row;
  stock runs chunk + gelu + mul: reads 3D, writes 2D). The projection stays a cuBLAS GEMM. Used by ``"safe"``.
* :func:`geglu_linear` - dual-GEMM: one Triton matmul computes both halves of the projection for a tile and applies
  bias + GELU + product in the epilogue, so the 2D-wide intermediate never reaches memory (the stable-fast /
  TensorRT "SplitGeLU" idea). Used by ``"max"``; whether it beats cuBLAS + :func:`geglu` is unmeasured.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._runtime import HAS_TRITON, interpreting, launch_or_fallback, next_pow2, triton_ok


def geglu_reference(h: torch.Tensor) -> torch.Tensor:
    hidden, gate = h.chunk(2, dim=-1)
    return hidden * F.gelu(gate)


def geglu_linear_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return geglu_reference(F.linear(x, weight, bias))


if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _gelu_f32(x):
        return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))

    @triton.jit
    def _geglu_kernel(h_ptr, out_ptr, D, shr, sor, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < D
        hv = tl.load(h_ptr + row * shr + offs, mask=mask, other=0.0).to(tl.float32)
        gv = tl.load(h_ptr + row * shr + D + offs, mask=mask, other=0.0).to(tl.float32)
        y = hv * _gelu_f32(gv)
        tl.store(out_ptr + row * sor + offs, y.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _geglu_linear_kernel(
        x_ptr, w_ptr, b_ptr, out_ptr, M, D, K,
        sxm, sxk, swn, swk, som, son,
        HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        mask_m = offs_m < M
        mask_n = offs_n < D
        acc_h = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + offs_k
            mask_k = kk < K
            a = tl.load(x_ptr + offs_m[:, None] * sxm + kk[None, :] * sxk,
                        mask=mask_m[:, None] & mask_k[None, :], other=0.0)
            # weight rows [0, D) are the hidden half, [D, 2D) the gate half; load both as (K, N) tiles
            wmask = mask_k[:, None] & mask_n[None, :]
            wh = tl.load(w_ptr + offs_n[None, :] * swn + kk[:, None] * swk, mask=wmask, other=0.0)
            wg = tl.load(w_ptr + (offs_n[None, :] + D) * swn + kk[:, None] * swk, mask=wmask, other=0.0)
            if UPCAST:  # the CPU interpreter cannot dot bf16 (numpy has no bf16)
                a = a.to(tl.float32)
                wh = wh.to(tl.float32)
                wg = wg.to(tl.float32)
            acc_h += tl.dot(a, wh, input_precision=PREC)
            acc_g += tl.dot(a, wg, input_precision=PREC)
        if HAS_BIAS:
            bh = tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
            bg = tl.load(b_ptr + D + offs_n, mask=mask_n, other=0.0).to(tl.float32)
            acc_h += bh[None, :]
            acc_g += bg[None, :]
        y = acc_h * _gelu_f32(acc_g)
        tl.store(out_ptr + offs_m[:, None] * som + offs_n[None, :] * son, y.to(out_ptr.dtype.element_ty),
                 mask=mask_m[:, None] & mask_n[None, :])


def geglu_triton(h: torch.Tensor) -> torch.Tensor:
    two_d = h.shape[-1]
    if two_d % 2:
        raise ValueError("last dim of a GEGLU projection must be even")
    D = two_d // 2
    if h.stride(-1) != 1:
        h = h.contiguous()
    h2 = h.reshape(-1, two_d)  # view when rows are uniformly strided, else a copy
    M = h2.shape[0]
    out = torch.empty((M, D), dtype=h.dtype, device=h.device)
    if M:
        BLOCK = min(1024, max(16, next_pow2(D)))
        _geglu_kernel[(M, triton.cdiv(D, BLOCK))](h2, out, D, h2.stride(0), out.stride(0), BLOCK=BLOCK)
    return out.reshape(*h.shape[:-1], D)


def geglu(h: torch.Tensor) -> torch.Tensor:
    """``hidden * gelu(gate)`` of a projection output ``h = [hidden | gate]``."""
    if h.dtype in (torch.float16, torch.bfloat16, torch.float32) and triton_ok(h):
        return launch_or_fallback(("geglu", h.dtype), lambda: geglu_triton(h), lambda: geglu_reference(h))
    return geglu_reference(h)


def geglu_linear_triton(x, weight, bias=None, *, block_m=None, block_n=None, block_k=None):
    K = x.shape[-1]
    two_d = weight.shape[0]
    D = two_d // 2
    x2 = x.reshape(-1, K)
    M = x2.shape[0]
    out = torch.empty((M, D), dtype=x.dtype, device=x.device)
    if M == 0:
        return out.reshape(*x.shape[:-1], D)
    BM = block_m or (64 if x.is_cuda else 16)
    BN = block_n or (64 if x.is_cuda else 16)
    BK = block_k or (32 if x.is_cuda else 16)
    grid = (triton.cdiv(M, BM), triton.cdiv(D, BN))
    _geglu_linear_kernel[grid](
        x2, weight, bias if bias is not None else weight, out, M, D, K,
        x2.stride(0), x2.stride(1), weight.stride(0), weight.stride(1), out.stride(0), out.stride(1),
        HAS_BIAS=bias is not None, UPCAST=bool(interpreting() and x.dtype == torch.bfloat16),
        PREC="ieee" if x.dtype == torch.float32 else "tf32",
        BLOCK_M=BM, BLOCK_N=BN, BLOCK_K=BK,
    )
    return out.reshape(*x.shape[:-1], D)


def geglu_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``GEGLU(x) = (x W_h^T + b_h) * gelu(x W_g^T + b_g)`` with ``weight = [W_h; W_g]`` (diffusers layout)."""
    if (x.dtype in (torch.float16, torch.bfloat16, torch.float32) and weight.dtype == x.dtype
            and weight.shape[0] % 2 == 0 and triton_ok(x, weight, bias)):
        return launch_or_fallback(("geglu_linear", x.dtype), lambda: geglu_linear_triton(x, weight, bias),
                                  lambda: geglu_linear_reference(x, weight, bias))
    return geglu_linear_reference(x, weight, bias)
