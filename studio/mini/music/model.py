"""The mini music model's components, assembled as a stock diffusers ``StableAudioPipeline``.

- ``vae``: the closed-form MDCT ``AutoencoderOobleck`` (``codec.py``), 16 kHz mono, 125 latent frames/s;
- ``text_encoder`` / ``tokenizer``: the hand-made ``T5EncoderModel`` (``text.py``), frozen;
- ``projection_model``: ``StableAudioProjectionModel`` (text: identity, since the widths match; the
  seconds-start/-end number embeddings are learnt);
- ``transformer``: ``StableAudioDiTModel`` on ``SAMPLE_SIZE`` = 1000 frames (8 s);
- ``scheduler``: ``CosineDPMSolverMultistepScheduler`` (EDM preconditioning, v-prediction, sigma 0.3-500).

Training (``train.py``) follows the scheduler's own preconditioning, so the stock pipeline samples it.
"""

from __future__ import annotations

from pathlib import Path

from . import codec as C
from . import text as T
from . import world as W

SAMPLE_SIZE = int(W.DURATION * W.SR / C.HOP)  # 1000 latent frames = 8 s
SIGMA_MIN, SIGMA_MAX, SIGMA_DATA = 0.3, 500.0, 1.0


def dit_config(layers: int = 2, width: int = 128, heads: int = 4, sample_size: int = SAMPLE_SIZE) -> dict:
    if width % heads or (width // heads) % 4:
        raise ValueError(f"width {width} must split into {heads} heads of a multiple of 4 channels")
    return dict(sample_size=sample_size, in_channels=C.LATENT, num_layers=layers, attention_head_dim=width // heads,
                num_attention_heads=heads, num_key_value_attention_heads=max(1, heads // 2), out_channels=C.LATENT,
                cross_attention_dim=width, time_proj_dim=256, global_states_input_dim=2 * T.DIM,
                cross_attention_input_dim=T.DIM)


def make_dit(layers: int = 2, width: int = 128, heads: int = 4, sample_size: int = SAMPLE_SIZE):
    """``sample_size`` frames is the longest clip the pipeline renders (it always samples that many and crops)."""
    from diffusers import StableAudioDiTModel

    return StableAudioDiTModel(**dit_config(layers, width, heads, sample_size))


def window_seconds(transformer) -> float:
    return transformer.config.sample_size * C.HOP / W.SR


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
