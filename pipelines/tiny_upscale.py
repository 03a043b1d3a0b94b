"""Tiny random-weight upscaler pipelines for tests (the component sizes diffusers' own upscaler tests use)."""
from __future__ import annotations

import torch

from .tiny import tiny_clip_tokenizer


def _text_encoder(act: str):
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = tiny_clip_tokenizer()
    cfg = CLIPTextConfig(bos_token_id=0, eos_token_id=1, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
                         num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=len(tok),
                         hidden_act=act, projection_dim=32)
    return CLIPTextModel(cfg).eval(), tok


def tiny_latent_upscaler(seed: int = 0):
    """A `StableDiffusionLatentUpscalePipeline` (x2) with a 4-channel, 8x VAE like SD's."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionLatentUpscalePipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        act_fn="gelu", attention_head_dim=8, norm_num_groups=None, block_out_channels=[32, 32, 64, 64],
        time_cond_proj_dim=160, conv_in_kernel=1, conv_out_kernel=1, cross_attention_dim=32,
        down_block_types=("KDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D"),
        in_channels=8, mid_block_type=None, only_cross_attention=False, out_channels=5,
        resnet_time_scale_shift="scale_shift", time_embedding_type="fourier", timestep_post_act="gelu",
        up_block_types=("KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KUpBlock2D")).eval()
    vae = AutoencoderKL(block_out_channels=[8, 8, 8, 8], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        latent_channels=4, norm_num_groups=2).eval()
    text_encoder, tokenizer = _text_encoder("quick_gelu")
    return StableDiffusionLatentUpscalePipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                                scheduler=EulerDiscreteScheduler(prediction_type="sample"))


def tiny_x4_upscaler(seed: int = 0):
    """A `StableDiffusionUpscalePipeline` (x4: its VAE downsamples 4x)."""
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline,
                           UNet2DConditionModel)

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64), layers_per_block=1, sample_size=32, in_channels=7, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, use_linear_projection=True, only_cross_attention=(True, True, False),
        num_class_embeds=100).eval()
    vae = AutoencoderKL(block_out_channels=[8, 8, 8], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                        latent_channels=4, norm_num_groups=2, scaling_factor=0.08333).eval()
    text_encoder, tokenizer = _text_encoder("gelu")
    return StableDiffusionUpscalePipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                          low_res_scheduler=DDPMScheduler(),
                                          scheduler=DDIMScheduler(prediction_type="v_prediction"),
                                          max_noise_level=350)


__all__ = ["tiny_latent_upscaler", "tiny_x4_upscaler"]
