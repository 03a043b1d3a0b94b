"""The mini music model's components, assembled as a stock diffusers ``StableAudioPipeline``.

- ``vae``: the closed-form MDCT ``AutoencoderOobleck`` (``codec.py``), 16 kHz mono, 125 latent frames/s;
- ``text_encoder`` / ``tokenizer``: the hand-made ``T5EncoderModel`` (``text.py``), frozen;
- ``projection_model``: ``StableAudioProjectionModel`` (text: identity, since the widths match; the
  seconds-start/-end number embeddings are learnt);
- ``transformer``: ``StableAudioDiTModel`` on ``SAMPLE_SIZE`` = 1000 frames (8 s);
- ``scheduler``: ``CosineDPMSolverMultistepScheduler`` (EDM preconditioning, v-prediction, sigma 0.02-80).

Training (``train.py``) follows the scheduler's own preconditioning, so the stock pipeline samples it.
"""

from __future__ import annotations

from pathlib import Path

from . import codec as C
from . import text as T
from . import world as W

SAMPLE_SIZE = int(W.DURATION * W.SR / C.HOP)  # 1000 latent frames = 8 s
# Not Stable Audio's 0.3-500: GAIN gives the world unit latent std on average, but a clip's own level spans
# 16 dB (plucked clips, a quarter of the world, have latent rms 0.09-0.27; sine and square ~1.1-1.4).  At
# sigma 0.3 a plucked clip is at -6 dB latent SNR, so the sampler's last step had to denoise it in one shot
# from there and training never showed the model a cleaner one; notes survive noise only above ~10-20 dB
# (docs/mini-music-plan.md, 2026-12-02).  0.02 keeps the quietest clip >= 13 dB at the last step.  80 is
# already -34 dB for the loudest clip: sigma up to 500 spent steps and training on pure noise.
SIGMA_MIN, SIGMA_MAX, SIGMA_DATA = 0.02, 80.0, 1.0


def dit_config(layers: int = 2, width: int = 128, heads: int = 4, sample_size: int = SAMPLE_SIZE, patch: int = 1,
               extra: int = 0) -> dict:
    """``sample_size`` counts latent frames; with ``patch`` > 1 a token holds ``patch`` frames (``codec.patchify``);
    ``extra`` channels follow the latent's (the envelope probe, ``codec.envelope``)."""
    if width % heads or (width // heads) % 4:
        raise ValueError(f"width {width} must split into {heads} heads of a multiple of 4 channels")
    if sample_size % patch:
        raise ValueError(f"{sample_size} frames do not split into patches of {patch}")
    ch = C.LATENT * patch + extra
    return dict(sample_size=sample_size // patch, in_channels=ch, num_layers=layers,
                attention_head_dim=width // heads, num_attention_heads=heads,
                num_key_value_attention_heads=max(1, heads // 2), out_channels=ch,
                cross_attention_dim=width, time_proj_dim=256, global_states_input_dim=2 * T.DIM,
                cross_attention_input_dim=T.DIM)


def make_dit(layers: int = 2, width: int = 128, heads: int = 4, sample_size: int = SAMPLE_SIZE, patch: int = 1,
             extra: int = 0):
    """``sample_size`` frames is the longest clip the pipeline renders (it always samples that many and crops)."""
    from diffusers import StableAudioDiTModel

    return StableAudioDiTModel(**dit_config(layers, width, heads, sample_size, patch, extra))


def patch_of(transformer) -> int:
    return transformer.config.in_channels // C.LATENT


def window_seconds(transformer) -> float:
    return transformer.config.sample_size * patch_of(transformer) * C.HOP / W.SR


def make_projection():
    from diffusers import StableAudioProjectionModel

    return StableAudioProjectionModel(text_encoder_dim=T.DIM, conditioning_dim=T.DIM, min_value=0,
                                      max_value=int(W.DURATION))


def make_scheduler():
    from diffusers import CosineDPMSolverMultistepScheduler

    return CosineDPMSolverMultistepScheduler(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sigma_data=SIGMA_DATA,
                                             prediction_type="v_prediction", solver_order=2,
                                             final_sigmas_type="zero")


def build_pipeline(transformer, projection, vae=None, text_encoder=None, tokenizer=None):
    from diffusers import StableAudioPipeline

    tok = tokenizer or T.build_tokenizer()
    return StableAudioPipeline(vae=vae or C.build_vae(), text_encoder=text_encoder or T.build_text_encoder(tok),
                               tokenizer=tok, projection_model=projection, transformer=transformer,
                               scheduler=make_scheduler())


def load_pipeline(path, dtype=None):
    import torch
    from diffusers import StableAudioPipeline

    return StableAudioPipeline.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype or torch.float32)


def weights_path() -> Path:
    return Path(__file__).resolve().parent / "weights"


# ------------------------------------------------------------------ the training side of the preconditioning
def precondition(sigma):
    """EDM factors for v-prediction, as ``CosineDPMSolverMultistepScheduler`` applies them at sampling:
    denoised = c_skip * x + c_out * F(c_in * x, t(sigma)), t = atan(sigma) * 2 / pi."""
    import math

    s2 = sigma**2 + SIGMA_DATA**2
    c_skip = SIGMA_DATA**2 / s2
    c_out = -sigma * SIGMA_DATA / s2**0.5
    c_in = 1 / s2**0.5
    t = sigma.atan() / math.pi * 2
    return c_skip, c_out, c_in, t


def conditioning(projection, text_hidden, seconds_end: float = W.DURATION):
    """(cross-attention states, global states) exactly as ``StableAudioPipeline`` builds them for
    audio_start_in_s = 0 and audio_end_in_s = ``seconds_end``."""
    import torch

    b = text_hidden.shape[0]
    dev = text_hidden.device
    out = projection(text_hidden_states=text_hidden, start_seconds=torch.zeros(b, device=dev),
                     end_seconds=torch.full((b,), float(seconds_end), device=dev))
    start, end = out.seconds_start_hidden_states, out.seconds_end_hidden_states
    return torch.cat([out.text_hidden_states, start, end], dim=1), torch.cat([start, end], dim=2)


def rotary(transformer, frames: int = SAMPLE_SIZE):
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    return get_1d_rotary_pos_embed(transformer.config.attention_head_dim // 2, frames + 1, use_real=True,
                                   repeat_interleave_real=False)
