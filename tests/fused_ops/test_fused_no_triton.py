import subprocess
import sys
import textwrap


def test_package_works_without_triton():
    """With triton unimportable, fused_ops imports and every op is its reference."""
    code = textwrap.dedent("""
        import sys
        sys.modules["triton"] = None  # makes `import triton` raise ImportError
        import torch, torch.nn.functional as F
        import fused_ops
        from fused_ops.kernels import group_norm_act, geglu, geglu_linear, flash_attention
        assert not fused_ops.HAS_TRITON and fused_ops.TRITON_VERSION is None
        x = torch.randn(2, 8, 4, 4)
        assert torch.equal(group_norm_act(x, 4), F.silu(F.group_norm(x, 4)))
        h = torch.randn(3, 10)
        assert torch.equal(geglu(h), h[:, :5] * F.gelu(h[:, 5:]))
        w = torch.randn(10, 6); xx = torch.randn(3, 6)
        assert torch.equal(geglu_linear(xx, w), geglu(F.linear(xx, w)))
        q = torch.randn(1, 2, 5, 40)
        assert torch.equal(flash_attention(q, q, q), F.scaled_dot_product_attention(q, q, q))
        assert fused_ops.select_backend((1, 2, 5, 40), torch.float16, "cuda") in ("sdpa", "xformers")
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")
