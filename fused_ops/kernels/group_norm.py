"""GroupNorm fused with an optional pre-add (time embedding / skip) and SiLU, NCHW or channels-last.

    y = act(GroupNorm(x + add))      add: None, per-(N, C) (a ResNet time embedding) or same shape as x

Two Triton kernels (2 reads of x + 1 write, instead of GN's 2 reads + 1 write plus SiLU's 1 + 1 and the add's 2 + 1):
  1. ``_gn_stats``: grid (N*G, SPLITS); each program computes count/mean/M2 of one chunk of its group (Welford/Chan
     combination over tiles, fp32), written to a small partials buffer.
  2. ``_gn_apply``: grid (N*G, SPLITS); each program combines its group's partials and normalises its chunk.
Splitting each group over several programs keeps the GPU busy when N*G is small (VAE decode: N=1, G=32).
Addressing is by strides with H and W flattened into one spatial index, so NCHW and channels-last (NHWC in memory)
go through the same kernel without copies; the output keeps the input's memory format.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._runtime import HAS_TRITON, launch_or_fallback, next_pow2, triton_ok

ACTIVATIONS = (None, "silu")


def group_norm_act_reference(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    activation: str | None = "silu",
    add: torch.Tensor | None = None,
) -> torch.Tensor:
    """PyTorch semantics of :func:`group_norm_act` (the same ops diffusers runs, in the same order)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if add is not None:
        x = x + _broadcast_add(add, x)
    y = F.group_norm(x, num_groups, weight, bias, eps)
    if activation == "silu":
        y = F.silu(y)
    return y


def _broadcast_add(add: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if add.shape == x.shape:
        return add
    if add.dim() == 2 and add.shape == x.shape[:2]:
        return add.reshape(*add.shape, *([1] * (x.dim() - 2)))
    return add  # let broadcasting decide (or fail) like the reference would


def _spatial_strides(t: torch.Tensor):
    """(stride_n, stride_c, stride_s) when t's spatial dims flatten to one strided index, else None."""
    if t.dim() == 2:
        return t.stride(0), t.stride(1), 0
    if t.dim() == 3:
        return t.stride(0), t.stride(1), t.stride(2)
    if t.dim() == 4:
        h, w = t.shape[2], t.shape[3]
        if h == 1:
            return t.stride(0), t.stride(1), t.stride(3)
        if w == 1:
            return t.stride(0), t.stride(1), t.stride(2)
        if t.stride(2) == w * t.stride(3):
            return t.stride(0), t.stride(1), t.stride(3)
    return None


if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _gn_stats(
        x_ptr, add_ptr, part_ptr,
        C, S, G, CG, CHUNK,
        sxn, sxc, sxs, san, sac, sas,
        HAS_ADD: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
    ):
        pid_ng = tl.program_id(0)
        pid_sp = tl.program_id(1)
        n_sp = tl.num_programs(1)
        n = pid_ng // G
        g = pid_ng % G
        offs_c = tl.arange(0, BLOCK_C)
        ch = g * CG + offs_c
        mask_c = offs_c < CG
        s_begin = pid_sp * CHUNK
        s_end = tl.minimum(s_begin + CHUNK, S)
        zero = tl.sum(tl.zeros([BLOCK_C], dtype=tl.float32), axis=0)  # fp32 scalar (loop-carried, not constexpr)
        cnt = zero
        mean = zero
        m2 = zero
        for s0 in range(s_begin, s_end, BLOCK_S):
            offs_s = s0 + tl.arange(0, BLOCK_S)
            mask = (offs_s < s_end)[:, None] & mask_c[None, :]
            v = tl.load(x_ptr + n * sxn + ch[None, :] * sxc + offs_s[:, None] * sxs, mask=mask, other=0.0)
            v = v.to(tl.float32)
            if HAS_ADD:
                a = tl.load(add_ptr + n * san + ch[None, :] * sac + offs_s[:, None] * sas, mask=mask, other=0.0)
                v += a.to(tl.float32)
            t_cnt = tl.sum(tl.sum(mask.to(tl.float32), axis=1), axis=0)
            t_mean = tl.sum(tl.sum(v, axis=1), axis=0) / t_cnt
            d = tl.where(mask, v - t_mean, 0.0)
            t_m2 = tl.sum(tl.sum(d * d, axis=1), axis=0)
            new_cnt = cnt + t_cnt
            delta = t_mean - mean
            mean += delta * (t_cnt / new_cnt)
            m2 += t_m2 + delta * delta * (cnt * t_cnt / new_cnt)
            cnt = new_cnt
        base = (pid_ng * n_sp + pid_sp) * 3
        tl.store(part_ptr + base, cnt)
        tl.store(part_ptr + base + 1, mean)
        tl.store(part_ptr + base + 2, m2)

    @triton.jit
    def _gn_apply(
        x_ptr, add_ptr, w_ptr, b_ptr, out_ptr, part_ptr,
        C, S, G, CG, CHUNK, eps,
        sxn, sxc, sxs, san, sac, sas, son, soc, sos,
        HAS_ADD: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, ACT: tl.constexpr,
        BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
    ):
        pid_ng = tl.program_id(0)
        pid_sp = tl.program_id(1)
        n_sp = tl.num_programs(1)
        n = pid_ng // G
        g = pid_ng % G
        # combine this group's partial statistics (Chan et al.)
        offs_p = tl.arange(0, BLOCK_P)
        mask_p = offs_p < n_sp
        pbase = part_ptr + (pid_ng * n_sp + offs_p) * 3
        p_cnt = tl.load(pbase, mask=mask_p, other=0.0)
        p_mean = tl.load(pbase + 1, mask=mask_p, other=0.0)
        p_m2 = tl.load(pbase + 2, mask=mask_p, other=0.0)
        tot = tl.sum(p_cnt, axis=0)
        mean = tl.sum(p_cnt * p_mean, axis=0) / tot
        dm = p_mean - mean
        var = (tl.sum(p_m2, axis=0) + tl.sum(p_cnt * dm * dm, axis=0)) / tot
        rstd = 1.0 / tl.sqrt(var + eps)

        offs_c = tl.arange(0, BLOCK_C)
        ch = g * CG + offs_c
        mask_c = offs_c < CG
        if HAS_W:
            w = tl.load(w_ptr + ch, mask=mask_c, other=1.0).to(tl.float32)
        else:
            w = tl.full([BLOCK_C], 1.0, tl.float32)
        if HAS_B:
            b = tl.load(b_ptr + ch, mask=mask_c, other=0.0).to(tl.float32)
        else:
            b = tl.zeros([BLOCK_C], tl.float32)
        scale = w * rstd
        shift = b - mean * scale
        s_begin = pid_sp * CHUNK
        s_end = tl.minimum(s_begin + CHUNK, S)
        for s0 in range(s_begin, s_end, BLOCK_S):
            offs_s = s0 + tl.arange(0, BLOCK_S)
            mask = (offs_s < s_end)[:, None] & mask_c[None, :]
            v = tl.load(x_ptr + n * sxn + ch[None, :] * sxc + offs_s[:, None] * sxs, mask=mask, other=0.0)
            v = v.to(tl.float32)
            if HAS_ADD:
                a = tl.load(add_ptr + n * san + ch[None, :] * sac + offs_s[:, None] * sas, mask=mask, other=0.0)
                v += a.to(tl.float32)
            y = v * scale[None, :] + shift[None, :]
            if ACT == 1:
                y = y * tl.sigmoid(y)
            tl.store(out_ptr + n * son + ch[None, :] * soc + offs_s[:, None] * sos,
                     y.to(out_ptr.dtype.element_ty), mask=mask)


def _choose_split(ng: int, s: int, block_s: int, target_programs: int) -> int:
    max_split = max(1, -(-s // block_s))
    want = max(1, -(-target_programs // ng))
    return int(min(64, max_split, next_pow2(want)))


def group_norm_act_triton(x, num_groups, weight=None, bias=None, eps=1e-5, activation="silu", add=None,
                          *, splits: int | None = None, block_s: int | None = None):
    """The Triton path, no fallback (raises if the layout is unsupported). Prefer :func:`group_norm_act`."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    N, C = x.shape[0], x.shape[1]
    if C % num_groups:
        raise ValueError(f"channels {C} not divisible by num_groups {num_groups}")
    S = 1
    for d in x.shape[2:]:
        S *= d
    xs = _spatial_strides(x)
    if xs is None:
        x = x.contiguous()
        xs = _spatial_strides(x)
    out = torch.empty_like(x)  # preserves channels-last
    os_ = _spatial_strides(out)
    if os_ is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        os_ = _spatial_strides(out)
    if add is not None:
        if add.dim() == 2 and add.shape == (N, C):
            as_ = (add.stride(0), add.stride(1), 0)
        elif add.shape == x.shape:
            as_ = _spatial_strides(add)
            if as_ is None:
                add = add.contiguous()
                as_ = _spatial_strides(add)
        elif add.dim() == x.dim() and tuple(add.shape[:2]) == (N, C) and all(d == 1 for d in add.shape[2:]):
            add = add.reshape(N, C)
            as_ = (add.stride(0), add.stride(1), 0)
        else:
            raise ValueError(f"add of shape {tuple(add.shape)} does not fit x {tuple(x.shape)}")
    else:
        as_ = (0, 0, 0)
    G = num_groups
    CG = C // G
    BLOCK_C = max(2, next_pow2(CG))
    if block_s is None:
        block_s = max(2, min(next_pow2(S), max(2, 4096 // BLOCK_C)))
    BLOCK_S = block_s
    if splits is None:
        splits = _choose_split(N * G, S, BLOCK_S, 1024 if x.is_cuda else 1)
    chunk = -(-S // splits)
    chunk = -(-chunk // BLOCK_S) * BLOCK_S
    splits = max(1, -(-S // chunk))
    part = torch.empty((N * G, splits, 3), dtype=torch.float32, device=x.device)
    add_arg = add if add is not None else x
    grid = (N * G, splits)
    _gn_stats[grid](x, add_arg, part, C, S, G, CG, chunk, *xs, *as_,
                    HAS_ADD=add is not None, BLOCK_S=BLOCK_S, BLOCK_C=BLOCK_C)
    w_arg = weight if weight is not None else x
    b_arg = bias if bias is not None else x
    _gn_apply[grid](x, add_arg, w_arg, b_arg, out, part, C, S, G, CG, chunk, float(eps),
                    *xs, *as_, *os_,
                    HAS_ADD=add is not None, HAS_W=weight is not None, HAS_B=bias is not None,
                    ACT=1 if activation == "silu" else 0,
                    BLOCK_S=BLOCK_S, BLOCK_C=BLOCK_C, BLOCK_P=max(2, next_pow2(splits)))
    return out


def group_norm_act(x, num_groups, weight=None, bias=None, eps=1e-5, activation="silu", add=None):
    """``act(GroupNorm(x + add))``; Triton when possible, :func:`group_norm_act_reference` otherwise."""
    if x.dim() >= 2 and x.dtype in (torch.float16, torch.bfloat16, torch.float32) and triton_ok(x, add, weight, bias):
        return launch_or_fallback(
            ("group_norm_act", x.dtype, x.shape[1] // num_groups, activation, add is not None),
            lambda: group_norm_act_triton(x, num_groups, weight, bias, eps, activation, add),
            lambda: group_norm_act_reference(x, num_groups, weight, bias, eps, activation, add))
    return group_norm_act_reference(x, num_groups, weight, bias, eps, activation, add)
