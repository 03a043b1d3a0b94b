import pytest
import torch
import torch.nn.functional as F

import fused_ops
from fused_ops import attention as A
from fused_ops.kernels.attention import flash_attention, flash_attention_reference, head_dim_split

from fused_testutil import assert_close

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def test_head_dim_split():
    assert head_dim_split(40) == (32, 16)
    assert head_dim_split(80) == (64, 16)
    assert head_dim_split(160) == (128, 32)
    assert head_dim_split(64) == (64, 0)
    assert head_dim_split(512) == (512, 0)
    assert head_dim_split(8) == (16, 0)


def test_reference_matches_sdpa():
    q, k, v = torch.randn(3, 1, 2, 9, 40).unbind(0)
    torch.testing.assert_close(flash_attention_reference(q, k, v), F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize(("d", "dtype"), [(40, dt) for dt in DTYPES] + [(8, torch.float32), (80, torch.float16),
                                                                       (512, torch.float16), (512, torch.bfloat16)],
                         ids=lambda v: str(v).replace("torch.", ""))
def test_flash_self_attention_strided(kernel_device, dtype, d):
    # q/k/v as views of a fused-QKV output (B, N, 3, H, D): non-contiguous, as FusedAttnProcessor passes them
    qkv = torch.randn(2, 37, 3, 2, d).to(kernel_device, dtype)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    o = flash_attention(q, k, v)
    assert o.shape == q.shape and o.dtype == dtype
    assert_close(o, flash_attention_reference(q.float(), k.float(), v.float()), dtype, scale=2)


@pytest.mark.parametrize("dtype", [torch.float16], ids=str)
def test_flash_cross_attention(kernel_device, dtype):
    q = torch.randn(2, 3, 20, 40).to(kernel_device, dtype)
    k = torch.randn(2, 3, 13, 40).to(kernel_device, dtype)  # 13 keys, as text tokens (77 in SD)
    v = torch.randn(2, 3, 13, 40).to(kernel_device, dtype)
    assert_close(flash_attention(q, k, v, scale=0.3), flash_attention_reference(q, k, v, 0.3), dtype, scale=2)


def test_select_backend_rules(monkeypatch):
    cpu = torch.device("cpu")
    assert A.select_backend((2, 8, 4096, 40), torch.float16, cpu) == "sdpa"
    cuda = torch.device("cuda")
    monkeypatch.setattr(A, "HAS_XFORMERS", False)
    monkeypatch.setattr(fused_ops._runtime, "HAS_TRITON", True)
    assert A.select_backend((2, 8, 4096, 40), torch.float16, cuda) == "triton"      # SD1.5: 48 cols vs 64
    assert A.select_backend((2, 10, 4096, 64), torch.float16, cuda) == "sdpa"       # SDXL: FA-friendly
    assert A.select_backend((2, 8, 1024, 80), torch.bfloat16, cuda) == "sdpa"
    assert A.select_backend((1, 1, 16384, 512), torch.float16, cuda) == "triton"    # VAE mid-block
    assert A.select_backend((2, 8, 4096, 40), torch.float32, cuda) == "sdpa"
    assert A.select_backend((2, 8, 4096, 40), torch.float16, cuda, has_mask=True) == "sdpa"
    monkeypatch.setattr(A, "HAS_XFORMERS", True)
    assert A.select_backend((1, 1, 16384, 512), torch.float16, cuda) == "xformers"
    monkeypatch.setattr(fused_ops._runtime, "HAS_TRITON", False)
    monkeypatch.setattr(A, "HAS_XFORMERS", False)
    assert A.select_backend((1, 1, 16384, 512), torch.float16, cuda) == "sdpa_efficient"
    assert A.select_backend((2, 8, 4096, 40), torch.float16, cuda) == "sdpa"
    A.set_backend_override("sdpa_efficient")
    try:
        assert A.select_backend((2, 8, 4096, 40), torch.float16, cuda) == "sdpa_efficient"
    finally:
        A.set_backend_override(None)
    with pytest.raises(ValueError):
        A.set_backend_override("nope")


def _attn(kind):
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    torch.manual_seed(0)
    if kind == "vae":  # single head, GroupNorm, 4-D input, residual (VAE mid-block)
        a = Attention(16, heads=1, dim_head=16, norm_num_groups=4, residual_connection=True, bias=True,
                      upcast_softmax=True, _from_deprecated_attn_block=True, rescale_output_factor=1.0)
    elif kind == "cross":
        a = Attention(16, cross_attention_dim=12, heads=2, dim_head=8)
    else:
        a = Attention(16, heads=2, dim_head=8)
    a.set_processor(AttnProcessor2_0())
    return a.eval()


@pytest.mark.parametrize("kind", ["self", "cross", "vae"])
def test_processor_matches_stock_and_unpacks(kernel_device, kind):
    a = _attn(kind)
    x = torch.randn(2, 16, 4, 3) if kind == "vae" else torch.randn(2, 10, 16)
    ctx = torch.randn(2, 6, 12) if kind == "cross" else None
    stock_proc = a.processor
    with torch.no_grad():
        ref = a(x, encoder_hidden_states=ctx)
        p = A.FusedAttnProcessor()
        a.set_processor(p)
        assert p.pack(a)
        assert p.packed["names"] == (["to_k", "to_v"] if kind == "cross" else ["to_q", "to_k", "to_v"])
        A.set_backend_override("triton")  # CPU: select_backend says sdpa; force the kernel through the processor
        try:
            out = a(x, encoder_hidden_states=ctx)
        finally:
            A.set_backend_override(None)
        assert_close(out, ref, torch.float32, scale=5)
        p.unpack(a)
        a.set_processor(stock_proc)
        assert torch.equal(a(x, encoder_hidden_states=ctx), ref)
    assert a.to_k.weight.untyped_storage().nbytes() == a.to_k.weight.numel() * 4  # no longer a view


def test_processor_packing_invalidated_by_new_weights():
    a = _attn("self")
    p = A.FusedAttnProcessor()
    a.set_processor(p)
    p.pack(a)
    assert p._packed_valid(a)
    a.to_q.weight = torch.nn.Parameter(a.to_q.weight.detach().clone())
    assert not p._packed_valid(a)  # falls back to separate projections
    x = torch.randn(1, 5, 16)
    with torch.no_grad():
        a(x)


@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_qkv_projection_matches_reference(with_bias):
    from fused_ops.kernels.qkv import concat_weights, fused_qkv_projection, fused_qkv_projection_reference

    torch.manual_seed(0)
    ws = [torch.randn(n, 12) for n in (16, 16, 8)]
    bs = [torch.randn(n) if with_bias else None for n in (16, 16, 8)]
    x = torch.randn(2, 5, 12)
    w, b = concat_weights(ws, bs)
    outs = fused_qkv_projection(x, w, b, [16, 16, 8])
    for o, r in zip(outs, fused_qkv_projection_reference(x, ws, bs)):
        torch.testing.assert_close(o, r)
    assert outs[0].untyped_storage().data_ptr() == outs[2].untyped_storage().data_ptr()  # views of one GEMM output
