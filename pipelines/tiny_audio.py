"""Tiny random-weight music models, built fully offline, for tests.

Sizes follow diffusers' / transformers' own test configs; tokenizers are the in-memory ones of :mod:`pipelines.tiny`
(Gemma's built the same way, from a vocab). Sample rates and latent hops are small but keep the released models'
shape rules (stereo Stable Audio, a 50 Hz MusicGen token rate at 32 kHz) so the duration rules checked are real.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .tiny import _t5_encoder, save_tiny, tiny_t5_tokenizer

# Stable Audio: 4 kHz, hop 32 (125 latent frames a second), a 256-frame window: up to 2.048 s
_SA_RATE = 4000
_SA_RATIOS = [2, 4, 4]
_SA_FRAMES = 256


def tiny_stable_audio(seed: int = 0):
    """StableAudioPipeline (the Stable Audio Open layout: Oobleck VAE, T5, DiT, CosineDPMSolver as released)."""
    from diffusers import (AutoencoderOobleck, CosineDPMSolverMultistepScheduler, StableAudioDiTModel,
                           StableAudioPipeline, StableAudioProjectionModel)

    torch.manual_seed(seed)
    transformer = StableAudioDiTModel(sample_size=_SA_FRAMES, in_channels=4, num_layers=2, attention_head_dim=4,
                                      num_attention_heads=2, num_key_value_attention_heads=1, out_channels=4,
                                      cross_attention_dim=8, time_proj_dim=8, global_states_input_dim=16,
                                      cross_attention_input_dim=8).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderOobleck(encoder_hidden_size=8, downsampling_ratios=_SA_RATIOS, channel_multiples=[1, 2, 2],
                             decoder_channels=4, decoder_input_channels=4, audio_channels=2,
                             sampling_rate=_SA_RATE).eval()
    te = _t5_encoder(32, seed + 2)
    torch.manual_seed(seed + 3)
    projection = StableAudioProjectionModel(text_encoder_dim=32, conditioning_dim=8, min_value=0,
                                            max_value=512).eval()
    sched = CosineDPMSolverMultistepScheduler(solver_order=2, prediction_type="v_prediction", sigma_data=1.0,
                                              sigma_schedule="exponential", sigma_min=0.3, sigma_max=500.0)
    return StableAudioPipeline(vae=vae, text_encoder=te, projection_model=projection,
                               tokenizer=tiny_t5_tokenizer(model_max_length=32), transformer=transformer,
                               scheduler=sched)


# MusicGen: 32 kHz, EnCodec hop 640 -> 50 frames a second, 4 codebooks of 64 codes (released: 2048)
_MG_RATE = 32000
# transformers' 0.02 init gives near-uniform logits: every prompt then samples the same tokens for a seed
_MG_INIT = 0.5


def _musicgen_configs(melody: bool):
    from transformers import EncodecConfig, T5Config

    t5 = T5Config(vocab_size=200, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                  relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    # bandwidth 1.2 kbps at 50 Hz with 6-bit codebooks = 4 codebooks, as the released models have
    enc = EncodecConfig(hidden_size=16, num_filters=4, codebook_size=64, sampling_rate=_MG_RATE,
                        upsampling_ratios=[8, 5, 4, 4], audio_channels=1, target_bandwidths=[1.2], codebook_dim=16,
                        num_residual_layers=1, num_lstm_layers=1)
    assert enc.num_quantizers == 4 and enc.frame_rate == 50
    return t5, enc


def tiny_musicgen(seed: int = 0):
    """transformers MusicgenForConditionalGeneration (T5 text encoder + EnCodec + decoder) and its processor,
    wrapped as :class:`pipelines.audio.MusicGenPipeline`."""
    from transformers import (EncodecFeatureExtractor, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, MusicgenProcessor)

    from .audio import MusicGenPipeline

    t5, enc = _musicgen_configs(False)
    dec = MusicgenDecoderConfig(vocab_size=64, pad_token_id=64, bos_token_id=64, hidden_size=16,
                                num_hidden_layers=2, num_attention_heads=2, ffn_dim=32, num_codebooks=4,
                                max_position_embeddings=1024, initializer_factor=_MG_INIT)
    cfg = MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=enc.to_dict(), decoder=dec.to_dict())
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(cfg).eval()
    _random_codebooks(model, seed + 1)
    _generation_defaults(model)
    proc = MusicgenProcessor(feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=_MG_RATE),
                             tokenizer=tiny_t5_tokenizer())
    return MusicGenPipeline(model, proc)


def tiny_musicgen_melody(seed: int = 0):
    """transformers MusicgenMelodyForConditionalGeneration: text + a 12-bin chroma of a melody as the prompt."""
    from transformers import MusicgenMelodyConfig, MusicgenMelodyDecoderConfig, MusicgenMelodyForConditionalGeneration

    from .audio import MusicGenPipeline, melody_feature_config

    t5, enc = _musicgen_configs(True)
    dec = MusicgenMelodyDecoderConfig(vocab_size=64, pad_token_id=64, bos_token_id=64, hidden_size=16,
                                      num_hidden_layers=2, num_attention_heads=2, ffn_dim=32, num_codebooks=4,
                                      max_position_embeddings=1024, initializer_factor=_MG_INIT)
    cfg = MusicgenMelodyConfig(text_encoder=t5.to_dict(), audio_encoder=enc.to_dict(), decoder=dec.to_dict(),
                               num_chroma=12, chroma_length=64)
    torch.manual_seed(seed)
    model = MusicgenMelodyForConditionalGeneration(cfg).eval()
    _random_codebooks(model, seed + 1)
    _generation_defaults(model)
    # the released extractor's settings, scaled to a short chroma (hop 4096 at 32 kHz = 7.8 frames a second)
    return MusicGenPipeline(model, tokenizer=tiny_t5_tokenizer(),
                            melody_features=melody_feature_config(sampling_rate=_MG_RATE, hop_length=4096,
                                                                  n_fft=16384, num_chroma=12, chunk_length=8))


def _random_codebooks(model, seed: int) -> None:
    # EnCodec's codebooks start as zeros (they are learned by k-means): random ones make each code a distinct sound
    g = torch.Generator().manual_seed(seed)
    for layer in model.audio_encoder.quantizer.layers:
        cb = layer.codebook
        cb.embed.copy_(torch.randn(cb.embed.shape, generator=g))
        cb.embed_avg.copy_(cb.embed)
        cb.inited.fill_(True)


def _generation_defaults(model) -> None:
    # the released checkpoints ship this generation config: sampling, top-k 250, guidance 3
    gc = model.generation_config
    gc.do_sample, gc.top_k, gc.guidance_scale = True, 250, 3.0
    gc.decoder_start_token_id = gc.pad_token_id = gc.bos_token_id = model.decoder.config.pad_token_id


def save_tiny_audio(model, folder) -> Path:
    """Any builder's output (or a LoadedModel's ``.pipe``) as a folder ``load_model`` reads (safetensors)."""
    pipe = getattr(model, "pipe", model)
    folder = Path(folder)
    if hasattr(pipe, "components") and type(pipe).__name__ != "MusicGenPipeline":
        return save_tiny(pipe, folder)
    pipe.save_pretrained(folder)
    return folder


__all__ = ["tiny_stable_audio", "tiny_musicgen", "tiny_musicgen_melody", "save_tiny_audio"]
