"""Regenerate the shipped single-file component configs (python -m pipelines.configs.build_configs).

Values reconstructed from the public diffusers-format repos (stable-diffusion-v1-5, stable-diffusion-2-1,
stable-diffusion-xl-base-1.0, stable-diffusion-3-medium-diffusers, FLUX.1-dev / FLUX.1-schnell). Each model is built
on the meta device and ``save_config`` writes the full config (every default filled in). Parameter counts are
checked in tests/pipelines/test_shipped_configs.py against the published sizes.
Tokenizers are NOT shipped (vocab files are MBs and licensed separately): see pipelines.loading.TOKENIZERS.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

HERE = Path(__file__).parent

CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
              projection_dim=768, hidden_act="quick_gelu", max_position_embeddings=77, vocab_size=49408,
              bos_token_id=0, eos_token_id=2, pad_token_id=1, layer_norm_eps=1e-5)
CLIP_H = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
              projection_dim=512, hidden_act="gelu", max_position_embeddings=77, vocab_size=49408,
              bos_token_id=0, eos_token_id=2, pad_token_id=1, layer_norm_eps=1e-5)
CLIP_BIGG = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                 projection_dim=1280, hidden_act="gelu", max_position_embeddings=77, vocab_size=49408,
                 bos_token_id=0, eos_token_id=2, pad_token_id=1, layer_norm_eps=1e-5)
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, feed_forward_proj="gated-gelu",
              vocab_size=32128, relative_attention_num_buckets=32, relative_attention_max_distance=128,
              layer_norm_epsilon=1e-6, tie_word_embeddings=False, dropout_rate=0.1, decoder_start_token_id=0,
              pad_token_id=0, eos_token_id=1, is_encoder_decoder=True)
VAE4 = dict(block_out_channels=[128, 256, 512, 512], in_channels=3, out_channels=3, layers_per_block=2,
            down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
            norm_num_groups=32, act_fn="silu")
SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                clip_sample=False, set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)

SD_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
               block_out_channels=[320, 640, 1280, 1280],
               down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
               up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, cross_attention_dim=768,
               attention_head_dim=8, norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0)

FAMILIES = {
    "sd1": dict(
        pipeline="StableDiffusionPipeline",
        unet=SD_UNET, vae=dict(VAE4, sample_size=512, scaling_factor=0.18215),
        text_encoder=("CLIPTextModel", CLIP_L),
        scheduler=("PNDMScheduler", dict(SD_BETAS, prediction_type="epsilon")),
        extra=dict(safety_checker=[None, None], feature_extractor=[None, None], image_encoder=[None, None],
                   requires_safety_checker=False)),
    "sd2": dict(
        pipeline="StableDiffusionPipeline",
        unet=dict(SD_UNET, sample_size=96, cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20],
                  use_linear_projection=True),
        vae=dict(VAE4, sample_size=768, scaling_factor=0.18215),
        text_encoder=("CLIPTextModel", CLIP_H),
        scheduler=("DDIMScheduler", dict(SD_BETAS, prediction_type="v_prediction")),
        extra=dict(safety_checker=[None, None], feature_extractor=[None, None], image_encoder=[None, None],
                   requires_safety_checker=False)),
    "sdxl": dict(
        pipeline="StableDiffusionXLPipeline",
        unet=dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                  block_out_channels=[320, 640, 1280],
                  down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                  up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                  attention_head_dim=[5, 10, 20], transformer_layers_per_block=[1, 2, 10],
                  cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                  addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, norm_num_groups=32),
        vae=dict(VAE4, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
        text_encoder=("CLIPTextModel", CLIP_L),
        text_encoder_2=("CLIPTextModelWithProjection", CLIP_BIGG),
        scheduler=("EulerDiscreteScheduler", dict(SD_BETAS, prediction_type="epsilon", interpolation_type="linear",
                                                  timestep_spacing="leading", use_karras_sigmas=False)),
        extra=dict(force_zeros_for_empty_prompt=True, add_watermarker=None, image_encoder=[None, None],
                   feature_extractor=[None, None])),
    "sd3": dict(
        pipeline="StableDiffusion3Pipeline",
        transformer=("SD3Transformer2DModel", dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24,
                                                   attention_head_dim=64, num_attention_heads=24,
                                                   joint_attention_dim=4096, caption_projection_dim=1536,
                                                   pooled_projection_dim=2048, out_channels=16,
                                                   pos_embed_max_size=192)),
        vae=dict(VAE4, latent_channels=16, sample_size=1024, scaling_factor=1.5305, shift_factor=0.0609,
                 use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=("CLIPTextModelWithProjection", CLIP_L),
        text_encoder_2=("CLIPTextModelWithProjection", CLIP_BIGG),
        text_encoder_3=("T5EncoderModel", T5_XXL),
        scheduler=("FlowMatchEulerDiscreteScheduler", dict(num_train_timesteps=1000, shift=3.0)),
        extra=dict(image_encoder=[None, None], feature_extractor=[None, None])),
}
_FLUX_T = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
               num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
               axes_dims_rope=[16, 56, 56])
_FLUX_VAE = dict(VAE4, latent_channels=16, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
                 use_quant_conv=False, use_post_quant_conv=False)
for _name, _guid, _sched in [
    ("flux-dev", True, dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                            max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)),
    ("flux-schnell", False, dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False,
                                 base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096))]:
    FAMILIES[_name] = dict(
        pipeline="FluxPipeline",
        transformer=("FluxTransformer2DModel", dict(_FLUX_T, guidance_embeds=_guid)), vae=_FLUX_VAE,
        text_encoder=("CLIPTextModel", CLIP_L), text_encoder_2=("T5EncoderModel", T5_XXL),
        scheduler=("FlowMatchEulerDiscreteScheduler", _sched),
        extra=dict(image_encoder=[None, None], feature_extractor=[None, None]))

TOKENIZER_CLASSES = {"sd1": {"tokenizer": "CLIPTokenizer"}, "sd2": {"tokenizer": "CLIPTokenizer"},
                     "sdxl": {"tokenizer": "CLIPTokenizer", "tokenizer_2": "CLIPTokenizer"},
                     "sd3": {"tokenizer": "CLIPTokenizer", "tokenizer_2": "CLIPTokenizer",
                             "tokenizer_3": "T5TokenizerFast"},
                     "flux-dev": {"tokenizer": "CLIPTokenizer", "tokenizer_2": "T5TokenizerFast"},
                     "flux-schnell": {"tokenizer": "CLIPTokenizer", "tokenizer_2": "T5TokenizerFast"}}


def build(name: str, spec: dict) -> None:
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    out = HERE / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    index = {"_class_name": spec["pipeline"], "_diffusers_version": diffusers.__version__}
    if "unet" in spec:
        with init_empty_weights():
            diffusers.UNet2DConditionModel(**spec["unet"]).save_config(out / "unet")
        index["unet"] = ["diffusers", "UNet2DConditionModel"]
    if "transformer" in spec:
        cls, kw = spec["transformer"]
        with init_empty_weights():
            getattr(diffusers, cls)(**kw).save_config(out / "transformer")
        index["transformer"] = ["diffusers", cls]
    with init_empty_weights():
        diffusers.AutoencoderKL(**spec["vae"]).save_config(out / "vae")
    index["vae"] = ["diffusers", "AutoencoderKL"]
    for te in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        if te in spec:
            cls, kw = spec[te]
            cfg_cls = transformers.T5Config if cls.startswith("T5") else transformers.CLIPTextConfig
            cfg = cfg_cls(**kw)
            cfg.architectures = [cls]
            cfg.save_pretrained(out / te)
            index[te] = ["transformers", cls]
    for tok, cls in TOKENIZER_CLASSES[name].items():
        index[tok] = ["transformers", cls]
    cls, kw = spec["scheduler"]
    getattr(diffusers, cls).from_config(kw).save_config(out / "scheduler")
    index["scheduler"] = ["diffusers", cls]
    index.update(spec.get("extra", {}))
    (out / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    for n, s in FAMILIES.items():
        build(n, s)
        print("wrote", HERE / n)
