"""Tiny random-weight diffusers models (real block types, toy widths) for CPU tests."""
import torch


def tol(dtype):
    return {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]


def assert_close(actual, expected, dtype, scale=1.0):
    t = tol(dtype) * scale
    torch.testing.assert_close(actual.float(), expected.float(), atol=t, rtol=t)


def tiny_unet(seed=0, **over):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    cfg = dict(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24, attention_head_dim=8, norm_num_groups=4,
    )
    cfg.update(over)
    return UNet2DConditionModel(**cfg).eval()


def tiny_vae(seed=0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
        sample_size=16,
    ).eval()


def unet_inputs(seed=1, batch=1, size=8, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, size, size, generator=g).to(device, dtype)
    ctx = torch.randn(batch, 5, 24, generator=g).to(device, dtype)
    t = torch.tensor(500, device=device)
    return x, t, ctx


def sd_pipeline(unet, vae):
    """StableDiffusionPipeline from given models, no text encoder/tokenizer (callers pass prompt embeddings)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    return StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet,
                                   scheduler=EulerDiscreteScheduler(steps_offset=1), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def run_pipeline(pipe, ctx_dim, *, steps, size, device, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(1, 7, ctx_dim, generator=g).to(device, dtype)
    neg = torch.randn(1, 7, ctx_dim, generator=g).to(device, dtype)
    return pipe(prompt_embeds=emb, negative_prompt_embeds=neg, num_inference_steps=steps, height=size, width=size,
                generator=torch.Generator().manual_seed(seed + 1), output_type="pt").images


def psnr(a, b):
    import math

    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)
