"""Tiny random-weight pipelines, built fully offline (no hub, no tokenizer files), for tests.

Each builder is deterministic for a given ``seed`` and takes well under a second on CPU.
Tokenizers are built in memory: a byte-level CLIP BPE with no merges (514 ids) and a character Unigram T5.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch

_CLIP_VOCAB_SIZE = 514  # 2 specials + 256 byte chars + 256 byte chars with "</w>"


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's byte-to-character map, in its own order."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def tiny_clip_tokenizer(model_max_length: int = 77):
    """Byte-level CLIP tokenizer with no merges: lossless on any text, 514 ids, no files."""
    from transformers import CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)
    return tok


def tiny_t5_tokenizer(model_max_length: int = 77):
    """Character-level Unigram T5 tokenizer (no sentencepiece, no spiece.model)."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for c in [chr(i) for i in range(33, 127)]:
        vocab.append((c, -3.0))
        vocab.append(("▁" + c, -3.5))
    tok = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)
    return tok


def _clip_text_config(hidden=32, projection_dim=32, layers=2):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden,
                          intermediate_size=2 * hidden, num_attention_heads=4, num_hidden_layers=layers,
                          vocab_size=_CLIP_VOCAB_SIZE, max_position_embeddings=77, projection_dim=projection_dim,
                          layer_norm_eps=1e-5, hidden_act="gelu")


def _t5_encoder(d_model=32, seed=0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=200, d_model=d_model, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(cfg).eval()


def _sd_vae(seed, **kw):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    args = dict(block_out_channels=[8, 16], in_channels=3, out_channels=3,
                down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4, norm_num_groups=2,
                sample_size=32)
    args.update(kw)
    return AutoencoderKL(**args).eval()


def tiny_sd(inpaint_channels: int = 4, seed: int = 0, prediction_type: str = "epsilon", vae_scale: int = 2):
    """Tiny StableDiffusionPipeline (SD1-style). ``inpaint_channels=9`` builds a 9-channel inpaint UNet
    (returned as StableDiffusionInpaintPipeline, as with real inpaint checkpoints). ``vae_scale=8`` gives a
    4-block VAE that downsamples 8x like the real one (fast at 256+ px); the default 2 keeps 32 px tests cheap."""
    from diffusers import (PNDMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextModel

    if inpaint_channels not in (4, 9):
        raise ValueError("inpaint_channels must be 4 or 9")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16,
                                in_channels=inpaint_channels, out_channels=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=4).eval()
    if vae_scale not in (2, 8):
        raise ValueError("vae_scale must be 2 or 8")
    if vae_scale == 8:
        vae = _sd_vae(seed + 1, block_out_channels=[8, 8, 8, 8], down_block_types=["DownEncoderBlock2D"] * 4,
                      up_block_types=["UpDecoderBlock2D"] * 4)
    else:
        vae = _sd_vae(seed + 1)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_clip_text_config()).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, set_alpha_to_one=False,
                              steps_offset=1, prediction_type=prediction_type)
    cls = StableDiffusionInpaintPipeline if inpaint_channels == 9 else StableDiffusionPipeline
    return cls(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tiny_clip_tokenizer(), scheduler=scheduler,
               safety_checker=None, feature_extractor=None, requires_safety_checker=False, image_encoder=None)


def tiny_sdxl(seed: int = 0):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(4, 8),
                                use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
                                projection_class_embeddings_input_dim=80, cross_attention_dim=64,
                                norm_num_groups=4).eval()
    vae = _sd_vae(seed + 1)
    torch.manual_seed(seed + 2)
    te = CLIPTextModel(_clip_text_config()).eval()
    torch.manual_seed(seed + 3)
    te2 = CLIPTextModelWithProjection(_clip_text_config()).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading", interpolation_type="linear",
                                       prediction_type="epsilon")
    return StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tiny_clip_tokenizer(),
                                     tokenizer_2=tiny_clip_tokenizer(), unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)


def tiny_sd3(seed: int = 0):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    # 16 latent channels like the real SD3 (its inpaint pipeline insists on 16 or 33 input channels)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=16, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=32, pooled_projection_dim=64, out_channels=16).eval()
    torch.manual_seed(seed + 1)
    te = CLIPTextModelWithProjection(_clip_text_config()).eval()
    torch.manual_seed(seed + 2)
    te2 = CLIPTextModelWithProjection(_clip_text_config()).eval()
    te3 = _t5_encoder(32, seed + 3)
    vae = _sd_vae(seed + 4, latent_channels=16, shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False,
                  use_post_quant_conv=False)
    return StableDiffusion3Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), text_encoder=te,
                                    text_encoder_2=te2, text_encoder_3=te3, tokenizer=tiny_clip_tokenizer(),
                                    tokenizer_2=tiny_clip_tokenizer(), tokenizer_3=tiny_t5_tokenizer(), vae=vae,
                                    transformer=transformer, image_encoder=None, feature_extractor=None)


def tiny_flux(seed: int = 0, guidance_embeds: bool = False):
    """Tiny FluxPipeline; ``guidance_embeds=True`` mimics FLUX.1-dev (distilled guidance), else schnell."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
                                         guidance_embeds=guidance_embeds).eval()
    torch.manual_seed(seed + 1)
    te = CLIPTextModel(_clip_text_config()).eval()
    te2 = _t5_encoder(32, seed + 2)
    torch.manual_seed(seed + 3)
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        layers_per_block=1, latent_channels=4, norm_num_groups=2, use_quant_conv=False,
                        use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035).eval()
    sched = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                            base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(scheduler=sched, text_encoder=te, text_encoder_2=te2, tokenizer=tiny_clip_tokenizer(),
                        tokenizer_2=tiny_t5_tokenizer(), transformer=transformer, vae=vae)


def save_tiny(pipe, directory) -> Path:
    """``save_pretrained`` (safetensors) into ``directory``; returns the path."""
    directory = Path(directory)
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


def save_config_folder(pipe, directory, *, with_tokenizers: bool = True) -> Path:
    """Write only the configs (model_index.json, component configs, optionally tokenizers) of ``pipe``:
    the layout ``from_single_file(config=...)`` expects. Weight files are removed."""
    directory = Path(directory)
    pipe.save_pretrained(directory, safe_serialization=True)
    for p in list(directory.rglob("*")):
        if p.is_file() and p.suffix in (".safetensors", ".bin"):
            p.unlink()
    if not with_tokenizers:
        import shutil

        for sub in directory.iterdir():
            if sub.is_dir() and sub.name.startswith("tokenizer"):
                shutil.rmtree(sub)
    return directory


def make_tiny_lora(pipe, path, *, rank: int = 4, seed: int = 0, scale: float = 0.3,
                   target_modules=("to_q", "to_k", "to_v", "to_out.0")) -> Path:
    """Write a random LoRA (peft format, diffusers naming) for ``pipe.unet`` to ``path`` (.safetensors).
    The pipeline's own UNet is left untouched (the adapter is built on a copy)."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    unet = copy.deepcopy(pipe.unet)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(target_modules),
                                init_lora_weights=True))
    state = get_peft_model_state_dict(unet)
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g, dtype=torch.float32) * scale for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(save_directory=str(path.parent), unet_lora_layers=state,
                                              weight_name=path.name, safe_serialization=True)
    return path


def save_tiny_single_file(pipe, path) -> Path:
    """Export an SD1-style tiny pipeline as ONE ``.safetensors`` in the original (LDM/CompVis) key layout
    (``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.*``), which is what
    ``from_single_file`` reads and what ``infer_diffusers_model_type`` classifies."""
    from safetensors.torch import save_file

    from ._ldm_export import diffusers_sd_to_ldm

    path = Path(path)
    sd = diffusers_sd_to_ldm(pipe.unet, pipe.vae, pipe.text_encoder)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


__all__ = ["tiny_sd", "tiny_sdxl", "tiny_sd3", "tiny_flux", "save_tiny", "save_config_folder", "make_tiny_lora",
           "save_tiny_single_file", "tiny_clip_tokenizer", "tiny_t5_tokenizer"]
