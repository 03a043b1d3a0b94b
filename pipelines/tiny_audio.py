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


# AudioLDM2: 16 kHz mono, a HiFi-GAN hop of 160 (100 mel frames a second) as released; 8 mel bins (released: 64)
_ALDM2_RATE = 16000


def tiny_roberta_tokenizer(model_max_length: int = 77):
    """Byte-level RoBERTa (CLAP) tokenizer with no merges: lossless on any text, ids below 262, no files."""
    from transformers import RobertaTokenizer

    from .tiny import _bytes_to_unicode

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in _bytes_to_unicode():
        vocab[c] = len(vocab)
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_audioldm2(seed: int = 0):
    """AudioLDM2Pipeline (CLAP text branch + T5 + GPT-2 language model + two-cross-attention UNet + mel VAE +
    SpeechT5 HiFi-GAN), sized as diffusers' own AudioLDM2 tests; tokenizers built in memory."""
    from diffusers import (AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel,
                           AutoencoderKL, DDIMScheduler)
    from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig,
                              GPT2Config, GPT2Model, SpeechT5HifiGan, SpeechT5HifiGanConfig)

    torch.manual_seed(seed)
    unet = AudioLDM2UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=32,
                                         in_channels=4, out_channels=4, norm_num_groups=4,
                                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                         cross_attention_dim=([None, 16, 32], [None, 16, 32])).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, latent_channels=4,
                        norm_num_groups=4, down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"]).eval()
    torch.manual_seed(seed + 2)
    text_cfg = ClapTextConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=16, intermediate_size=37,
                              layer_norm_eps=1e-5, num_attention_heads=2, num_hidden_layers=2, vocab_size=300,
                              projection_dim=16)
    audio_cfg = ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=37,
                                layer_norm_eps=1e-5, depths=[2, 2], num_attention_heads=[2, 2], num_hidden_layers=2,
                                hidden_size=192, projection_dim=16, patch_size=2, patch_stride=2,
                                patch_embed_input_channels=4)
    clap = ClapModel(ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(),
                                projection_dim=16)).eval()
    t5 = _t5_encoder(32, seed + 3)
    torch.manual_seed(seed + 4)
    lm = GPT2Model(GPT2Config(n_embd=16, n_head=2, n_layer=2, vocab_size=1000, n_ctx=99, n_positions=99,
                                bos_token_id=0, eos_token_id=0)).eval()
    lm.config.max_new_tokens = 8
    torch.manual_seed(seed + 5)
    projection = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16).eval()
    torch.manual_seed(seed + 6)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=8, sampling_rate=_ALDM2_RATE, upsample_initial_channel=16, upsample_rates=[8, 5, 4],
        upsample_kernel_sizes=[16, 10, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False)).eval()
    # SpeechT5HifiGan's 0.01-std init renders ~1e-8 amplitude: torch's default conv init makes audible noise
    for mod in vocoder.modules():
        if isinstance(mod, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            mod.reset_parameters()
    sched = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False)
    return AudioLDM2Pipeline(vae=vae, text_encoder=clap, text_encoder_2=t5, projection_model=projection,
                             language_model=lm, tokenizer=tiny_roberta_tokenizer(),
                             tokenizer_2=tiny_t5_tokenizer(model_max_length=77),
                             feature_extractor=ClapFeatureExtractor(hop_length=7900), unet=unet, scheduler=sched,
                             vocoder=vocoder)


# Stable Audio 3: 4 kHz stereo, SAME VAE hop 32 (patch 8 x stride 4: 125 latent frames a second)
_SA3_RATE = 4000
_SA3_LATENT = 8
_SA3_COND = 16  # text-encoder width = DiT cross/global conditioning = duration embedding (an extra text token)


def tiny_gemma_tokenizer(model_max_length: int = 64):
    """Character-level BPE Gemma tokenizer with no merges (what SA3's T5Gemma reads); no files, no sentencepiece."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "\u2581": 4}
    for c in [chr(i) for i in range(33, 127)]:
        vocab[c] = len(vocab)
    return GemmaTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_stable_audio3(seed: int = 0):
    """StableAudio3Pipeline (SAME VAE, T5Gemma encoder, duration embedder, DiT with the inpainting model's local
    conditioning input, so all four music modes run), sized as diffusers' own SA3 tests."""
    from diffusers import (AutoencoderSAME, FlowMatchEulerDiscreteScheduler, StableAudio3DiTModel,
                           StableAudio3Pipeline)
    from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import StableAudio3DurationEmbedder
    from transformers import T5GemmaConfig, T5GemmaEncoderModel
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaModuleConfig

    tok = tiny_gemma_tokenizer()
    torch.manual_seed(seed)
    transformer = StableAudio3DiTModel(io_channels=_SA3_LATENT, patch_size=1, embed_dim=32, depth=2, num_heads=4,
                                       cond_token_dim=_SA3_COND, global_cond_dim=_SA3_COND,
                                       local_add_cond_dim=_SA3_LATENT + 1, timestep_features_dim=16, ff_mult=2,
                                       num_memory_tokens=3, use_differential_attention=False).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderSAME(audio_channels=2, patch_size=8, encoder_channels=8, encoder_c_mults=(2,),
                          encoder_strides=(4,), encoder_transformer_depths=(1,), latent_dim=_SA3_LATENT,
                          use_differential_attention=False, dim_heads=4, ff_mult=2, sampling_rate=_SA3_RATE).eval()
    torch.manual_seed(seed + 2)
    module = T5GemmaModuleConfig(vocab_size=len(tok), hidden_size=_SA3_COND, intermediate_size=32,
                                 num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                 max_position_embeddings=64, sliding_window=64,
                                 layer_types=["full_attention", "full_attention"])
    te = T5GemmaEncoderModel(T5GemmaConfig(encoder=module.to_dict(), decoder=module.to_dict(),
                                           is_encoder_decoder=False)).eval()
    torch.manual_seed(seed + 3)
    duration = StableAudio3DurationEmbedder(output_dim=_SA3_COND, fourier_dim=16).eval()
    _fill_zero_init(transformer, seed + 4)
    _fill_zero_init(vae, seed + 5)
    return StableAudio3Pipeline(vae=vae, text_encoder=te, tokenizer=tok, duration_embedder=duration,
                                transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler())


def _fill_zero_init(module, seed: int) -> None:
    """SA3's DiT and SAME VAE start with zero DynamicTanh gains and zero residual outputs (trained weights replace
    them): the random model would ignore its latents and conditioning. Gains -> 1, other all-zero tensors -> small
    random values, so every input reaches the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point() or t.numel() == 0 or t.abs().max() != 0:
                continue
            if name.rsplit(".", 1)[-1] in ("gamma", "running_std"):
                t.fill_(1.0)
            else:
                t.copy_(0.2 * torch.randn(t.shape, generator=g))


def save_tiny_audio(model, folder) -> Path:
    """Any builder's output (or a LoadedModel's ``.pipe``) as a folder ``load_model`` reads (safetensors)."""
    pipe = getattr(model, "pipe", model)
    folder = Path(folder)
    if hasattr(pipe, "components") and type(pipe).__name__ != "MusicGenPipeline":
        return save_tiny(pipe, folder)
    pipe.save_pretrained(folder)
    return folder


__all__ = ["tiny_stable_audio", "tiny_audioldm2", "tiny_roberta_tokenizer", "tiny_stable_audio3",
           "tiny_gemma_tokenizer", "tiny_musicgen", "tiny_musicgen_melody", "save_tiny_audio"]
