"""fused_ops tests: Triton kernels run on CUDA when present, else on CPU through TRITON_INTERPRET=1.

Triton reads TRITON_INTERPRET when a kernel is decorated (when fused_ops.kernels is imported), so it is set here,
before any test module imports fused_ops. If fused_ops was imported earlier in the session without it (and there is no
CUDA), the kernel tests skip with a message instead of failing; run ``pytest tests/fused_ops`` alone then.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import fused_ops  # noqa: E402


@pytest.fixture(scope="session")
def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="session")
def kernel_device(device):
    """Device on which the Triton kernels can run here; skips the test if none."""
    if not fused_ops.HAS_TRITON:
        pytest.skip("triton not installed")
    if not fused_ops.triton_ok(torch.empty(1, device=device)):
        pytest.skip("no CUDA and fused_ops was imported without TRITON_INTERPRET=1; run pytest tests/fused_ops alone")
    return device
