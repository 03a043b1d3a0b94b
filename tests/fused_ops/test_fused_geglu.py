import pytest
import torch
import torch.nn.functional as F

from fused_ops.kernels.geglu import geglu, geglu_linear, geglu_linear_reference, geglu_reference

from fused_testutil import assert_close

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def test_reference_matches_diffusers():
    from diffusers.models.activations import GEGLU

    torch.manual_seed(0)
    m = GEGLU(12, 10)
    x = torch.randn(2, 3, 12)
    with torch.no_grad():
        assert torch.equal(geglu_linear_reference(x, m.proj.weight, m.proj.bias), m(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_geglu_elementwise(kernel_device, dtype):
    h = torch.randn(2, 5, 2 * 24).to(kernel_device, dtype) * 2
    y = geglu(h)
    assert y.shape == (2, 5, 24) and y.dtype == dtype
    assert_close(y, geglu_reference(h.float()), dtype)


def test_geglu_elementwise_strided(kernel_device):
    h = torch.randn(7, 3, 2 * 20).to(kernel_device).transpose(0, 1)  # rows not uniformly strided -> copy path
    assert_close(geglu(h), geglu_reference(h), torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(2, 7, 40, 24), (1, 33, 17, 20)], ids=["m14_k40_d24", "m33_k17_d20"])
def test_geglu_dual_gemm(kernel_device, dtype, shape):
    b_, m_, k_, d_ = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b_, m_, k_, generator=g).to(kernel_device, dtype)
    w = (torch.randn(2 * d_, k_, generator=g) / k_ ** 0.5).to(kernel_device, dtype)
    b = torch.randn(2 * d_, generator=g).to(kernel_device, dtype)
    y = geglu_linear(x, w, b)
    assert y.shape == (b_, m_, d_)
    ref = geglu_linear_reference(x.float(), w.float(), b.float())
    assert_close(y, ref, dtype, scale=4)
    y_nb = geglu_linear(x, w, None)
    assert_close(y_nb, geglu_linear_reference(x.float(), w.float(), None), dtype, scale=4)


def test_reference_gelu_is_exact_erf():
    h = torch.tensor([[1.0, -1.0, 0.5, 2.0]])
    assert torch.equal(geglu_reference(h), h[:, :2] * F.gelu(h[:, 2:], approximate="none"))
