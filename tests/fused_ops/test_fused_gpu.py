"""CUDA-only checks: every kernel at realistic (small) shapes compiled for the GPU, and the end-to-end image test
(accelerated pipeline vs stock, PSNR >= 40 dB in fp16). Skipped cleanly without CUDA."""
import pytest
import torch

from fused_ops import accelerate
from fused_testutil import psnr, run_pipeline, sd_pipeline
from fused_ops.kernels import (
    flash_attention,
    flash_attention_reference,
    geglu_linear,
    geglu_linear_reference,
    group_norm_act,
    group_norm_act_reference,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("channels_last", [False, True])
def test_gn_vae_shape(dtype, channels_last):
    x = torch.randn(1, 256, 128, 128, device="cuda", dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(256, device="cuda", dtype=dtype)
    b = torch.randn(256, device="cuda", dtype=dtype)
    y = group_norm_act(x, 32, w, b, 1e-6, "silu")
    r = group_norm_act_reference(x.float(), 32, w.float(), b.float(), 1e-6, "silu")
    torch.testing.assert_close(y.float(), r, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("shape", [(2, 8, 4096, 40), (2, 8, 1024, 80), (2, 20, 1024, 64), (1, 1, 4096, 512)])
def test_flash_sd_shapes(shape):
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.float16) for _ in range(3))
    torch.testing.assert_close(flash_attention(q, k, v).float(), flash_attention_reference(q, k, v).float(),
                               atol=1e-2, rtol=1e-2)


def test_geglu_sdxl_shape():
    x = torch.randn(2, 1024, 1280, device="cuda", dtype=torch.float16)
    w = torch.randn(2 * 5120, 1280, device="cuda", dtype=torch.float16) / 36
    b = torch.randn(2 * 5120, device="cuda", dtype=torch.float16)
    torch.testing.assert_close(geglu_linear(x, w, b).float(), geglu_linear_reference(x, w, b).float(),
                               atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("mode", ["safe", "max"])
def test_pipeline_image_psnr(mode):
    """Random-weight SD1.5-architecture pipeline (real widths, no downloads), 10 steps, fp16: accelerated vs stock."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=32, block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8,
                                cross_attention_dim=768, layers_per_block=2)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    pipe = sd_pipeline(unet, vae).to("cuda", torch.float16)
    run = lambda: run_pipeline(pipe, 768, steps=10, size=256, device="cuda", dtype=torch.float16)  # noqa: E731
    stock = run()
    h = accelerate(pipe, mode)
    assert h.applied
    fast = run()
    h.undo()
    assert psnr(run(), stock) > 60  # undo restores stock behaviour
    assert psnr(fast, stock) >= 40.0
