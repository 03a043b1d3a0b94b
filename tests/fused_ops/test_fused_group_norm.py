import pytest
import torch
import torch.nn.functional as F

import fused_ops
from fused_ops.kernels.group_norm import group_norm_act, group_norm_act_reference, group_norm_act_triton

from fused_testutil import assert_close

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _data(shape, dtype, device, channels_last=False, offset=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, generator=g) * 3 + offset).to(device, dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    C = shape[1]
    w = torch.randn(C, generator=g).to(device, dtype)
    b = torch.randn(C, generator=g).to(device, dtype)
    return x, w, b


def _ref(x, groups, w, b, eps, act, add=None):
    f = lambda t: None if t is None else t.float()  # noqa: E731
    return group_norm_act_reference(x.float(), groups, f(w), f(b), eps, act, f(add))


def test_reference_is_diffusers_order():
    x, w, b = _data((2, 8, 3, 5), torch.float32, "cpu")
    temb = torch.randn(2, 8)
    expect = F.silu(F.group_norm(x + temb[:, :, None, None], 4, w, b, 1e-6))
    assert torch.equal(group_norm_act_reference(x, 4, w, b, 1e-6, "silu", temb), expect)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gn_silu_temb(kernel_device, dtype, channels_last):
    x, w, b = _data((2, 16, 6, 5), dtype, kernel_device, channels_last)
    temb = torch.randn(2, 16).to(kernel_device, dtype)
    y = group_norm_act(x, 4, w, b, 1e-6, "silu", temb)
    assert y.dtype == dtype and y.shape == x.shape
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert_close(y, _ref(x, 4, w, b, 1e-6, "silu", temb), dtype)


@pytest.mark.parametrize("case", ["no_act_no_affine", "full_add_nhwc", "splits", "odd_sizes", "3d_strided"])
def test_gn_variants(kernel_device, case):
    dt = torch.float32
    if case == "no_act_no_affine":
        x, _, _ = _data((2, 8, 4, 4), dt, kernel_device)
        y, r = group_norm_act(x, 2, None, None, 1e-5, None), _ref(x, 2, None, None, 1e-5, None)
    elif case == "full_add_nhwc":
        x, w, b = _data((1, 8, 5, 3), dt, kernel_device, channels_last=True)
        skip = torch.randn(1, 8, 5, 3).to(kernel_device, dt)  # NCHW add onto an NHWC input
        y, r = group_norm_act(x, 4, w, b, 1e-5, "silu", skip), _ref(x, 4, w, b, 1e-5, "silu", skip)
    elif case == "splits":  # several programs per group: exercises the partial-statistics combine
        x, w, b = _data((1, 6, 7, 9), dt, kernel_device, offset=50.0)
        y = group_norm_act_triton(x, 3, w, b, 1e-5, "silu", splits=4, block_s=4)
        r = _ref(x, 3, w, b, 1e-5, "silu")
    elif case == "odd_sizes":  # C/G = 3 (not a power of two), H*W = 1
        x, w, b = _data((3, 12, 1, 1), dt, kernel_device)
        y, r = group_norm_act(x, 4, w, b, 1e-5, "silu"), _ref(x, 4, w, b, 1e-5, "silu")
    else:  # (B, C, L) view with non-unit token stride, as in the VAE attention's group_norm
        base, w, b = _data((2, 10, 8), dt, kernel_device)
        x = base.transpose(1, 2)  # (2, 8, 10) with stride(2) == 8
        y, r = group_norm_act(x, 2, w[:8], b[:8], 1e-6, None), _ref(x, 2, w[:8], b[:8], 1e-6, None)
    assert_close(y, r, dt, scale=5)


def test_fallback_without_triton_is_bitwise_reference():
    x, w, b = _data((2, 8, 4, 4), torch.float16, "cpu")
    prev = fused_ops.set_force_reference(True)
    try:
        y = group_norm_act(x, 4, w, b, 1e-6, "silu")
    finally:
        fused_ops.set_force_reference(prev)
    assert torch.equal(y, F.silu(F.group_norm(x, 4, w, b, 1e-6)))


def test_bad_activation():
    with pytest.raises(ValueError):
        group_norm_act_reference(torch.zeros(1, 2, 2, 2), 1, activation="gelu")


def test_launch_failure_falls_back_once(monkeypatch):
    from fused_ops import _runtime

    monkeypatch.setattr(_runtime, "interpreting", lambda: False)
    key = ("test_kernel", "x")
    calls = []

    def boom():
        calls.append("triton")
        raise RuntimeError("out of resources")

    assert _runtime.launch_or_fallback(key, boom, lambda: "ref") == "ref"
    assert _runtime.launch_or_fallback(key, boom, lambda: "ref") == "ref"
    assert calls == ["triton"] and key in fused_ops.disabled_kernels()
    _runtime._DISABLED.pop(key)
