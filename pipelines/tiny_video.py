"""Tiny random-weight video pipelines, built fully offline, for tests.

Sizes follow diffusers' own ``get_dummy_components``; tokenizers are the in-memory ones of :mod:`pipelines.tiny`.
Where it stays cheap, the VAEs compress like the released checkpoints (LTX 32x spatial / 8x temporal, Wan and
CogVideoX 4x temporal) so the frame and size rules the studio checks are the real ones, not tiny-model quirks.
"""
from __future__ import annotations

import torch

from .tiny import _t5_encoder, save_tiny, tiny_sd, tiny_t5_tokenizer

# tiny_sd's UNet: a motion adapter must mirror its block widths and layers per block
_SD_BLOCKS = (16, 32)


def tiny_motion_adapter(seed: int = 0, max_seq_length: int = 32):
    """A MotionAdapter that fits :func:`pipelines.tiny.tiny_sd`'s UNet (so base + adapter combine)."""
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    return MotionAdapter(block_out_channels=_SD_BLOCKS, motion_layers_per_block=1, motion_norm_num_groups=4,
                         motion_num_attention_heads=2, motion_max_seq_length=max_seq_length).eval()


def tiny_animatediff(seed: int = 0, adapter_seed: int | None = None):
    """AnimateDiffPipeline = tiny_sd(seed) components + tiny_motion_adapter, DDIM as AnimateDiff's examples use."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler

    sd = tiny_sd(seed=seed)
    adapter = tiny_motion_adapter(seed + 10 if adapter_seed is None else adapter_seed)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                          steps_offset=1, timestep_spacing="linspace")
    return AnimateDiffPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
                               motion_adapter=adapter, scheduler=sched)


def tiny_svd(seed: int = 0):
    """StableVideoDiffusionPipeline; the image encoder takes 224 px because SVD resizes its input to 224.
    Widths 32/64: SVD's UNet and temporal VAE hard-code 32 norm groups."""
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
        num_attention_heads=4, projection_class_embeddings_input_dim=96, addition_time_embed_dim=32,
        num_frames=4).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                       down_block_types=["DownEncoderBlock2D"] * 2, latent_channels=4).eval()
    torch.manual_seed(seed + 2)
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        intermediate_size=37, patch_size=32)).eval()
    fe = CLIPImageProcessor(crop_size=224, size=224)
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   interpolation_type="linear", num_train_timesteps=1000,
                                   prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
                                   timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)
    return StableVideoDiffusionPipeline(vae=vae, image_encoder=enc, unet=unet, scheduler=sched, feature_extractor=fe)


def tiny_cogvideox(seed: int = 0, i2v: bool = False):
    """CogVideoXPipeline, or with ``i2v=True`` CogVideoXImageToVideoPipeline (its transformer takes the image
    latents as extra channels, as the released I2V checkpoints do)."""
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline,
                           CogVideoXPipeline, CogVideoXTransformer3DModel)

    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=16 if i2v else 8, in_channels=8 if i2v else 4, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=1, sample_width=2, sample_height=2, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=16, use_rotary_positional_embeddings=i2v).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLCogVideoX(in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
                                 up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                 latent_channels=4, layers_per_block=1, norm_num_groups=2,
                                 temporal_compression_ratio=4).eval()
    cls = CogVideoXImageToVideoPipeline if i2v else CogVideoXPipeline
    return cls(tokenizer=tiny_t5_tokenizer(), text_encoder=_t5_encoder(32, seed + 2), vae=vae,
               transformer=transformer, scheduler=CogVideoXDDIMScheduler())


def tiny_ltx(seed: int = 0):
    """LTXPipeline with the real VAE's compression (patch 4 x three 2x stages = 32 px, 8 frames per latent)."""
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline,
                           LTXVideoTransformer3DModel)

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                             num_layers=1, caption_channels=32).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False), decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False, patch_size=4,
        patch_size_t=1, encoder_causal=True, decoder_causal=False).eval()
    # diffusers' dummy components do the same: framewise decoding only pays off for long real clips
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    return LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=_t5_encoder(32, seed + 2),
                       tokenizer=tiny_t5_tokenizer(), transformer=transformer)


def tiny_wan(seed: int = 0, i2v: bool = False):
    """WanPipeline (2.1 layout), or with ``i2v=True`` WanImageToVideoPipeline (CLIP image encoder + 36-channel
    transformer input, as Wan2.1-I2V)."""
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanPipeline,
                           WanTransformer3DModel)

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True]).eval()
    torch.manual_seed(seed + 1)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36 if i2v else 16,
        out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, image_dim=4 if i2v else None).eval()
    kw = dict(tokenizer=tiny_t5_tokenizer(), text_encoder=_t5_encoder(32, seed + 2), vae=vae,
              scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), transformer=transformer, transformer_2=None)
    if not i2v:
        return WanPipeline(**kw)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed + 3)
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2,
                                                         num_attention_heads=2, image_size=32, intermediate_size=16,
                                                         patch_size=1)).eval()
    return WanImageToVideoPipeline(image_encoder=enc, image_processor=CLIPImageProcessor(crop_size=32, size=32),
                                   **kw)


def save_tiny_video(pipe, directory):
    """Any of the above as a diffusers folder (safetensors), the layout ``load_model`` reads."""
    return save_tiny(pipe, directory)


__all__ = ["tiny_motion_adapter", "tiny_animatediff", "tiny_svd", "tiny_cogvideox", "tiny_ltx", "tiny_wan",
           "save_tiny_video"]
