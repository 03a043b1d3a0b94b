"""Run one music request (txt2audio / audio_extend / audio_inpaint / audio2audio) on a LoadedModel of an audio family.

Backends: diffusers' StableAudioPipeline (Stable Audio Open) and the Stable Audio 3 pipelines, AudioLDM2Pipeline, and
transformers' MusicGen / MusicGen-Melody (wrapped in :class:`MusicGenPipeline` so it loads and hashes like a diffusers
pipeline). Each mode uses what the backend itself offers (SA3's inpaint pipeline, Stable Audio Open's
``initial_audio_waveforms``, MusicGen's audio prompt); Stable Audio Open, which has no mask, continues and inpaints
through :mod:`pipelines.audio_masked` (known latent frames re-noised and blended in after every step). Where a backend
cannot guarantee that audio outside the edited span is unchanged, the original is pasted back there with a short
crossfade inside the span.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .loading import AUDIO_FAMILY_NAMES, AUDIO_MODES, LoadedModel, _musicgen_type, _read_json

# scheduler-config key by which a model declares the latent level it was trained at ("unit_rms": each clip's latent
# scaled to unit rms); see _latent_level_gain
LATENT_LEVEL_KEY = "_studio_latent_level"
# with it, how many leading latent channels the level counts (the rest are features the encoder appends, such as
# the mini model's gate channels); the rms stays a mean over all channels
LATENT_LEVEL_CHANNELS_KEY = "_studio_latent_level_channels"
# strength 0.6 keeps the source's rhythm and harmony and still restyles (as video's vid2vid default)
DEFAULT_AUDIO2AUDIO_STRENGTH = 0.6
# seconds of linear crossfade where generated audio meets the original (inside the regenerated span)
CROSSFADE_S = 0.05
# an init clip may fall this much short of the requested duration (rate conversion rounding)
_LENGTH_SLACK_S = 0.01


@dataclass(frozen=True)
class AudioFamily:
    """What an audio family accepts. ``AUDIO_FAMILIES`` holds the released checkpoints' rules;
    :func:`audio_family_for` narrows them to one loaded model (its modes, rate, channels, window)."""

    name: str
    modes: tuple[str, ...]
    sample_rate: int | None  # None: per checkpoint
    default_duration: float
    max_duration: float
    channels: int
    min_duration: float = 0.5
    pipelines: tuple[tuple[str, str], ...] = ()  # (mode, class) of the released checkpoints
    duration_why: str = ""

    def check_mode(self, mode: str) -> None:
        if mode not in AUDIO_MODES:
            raise ValueError(f"unknown audio mode {mode!r}; expected one of {', '.join(AUDIO_MODES)}")
        if mode not in self.modes:
            raise ValueError(f"{self.name} does not do {mode} with this checkpoint; it does {', '.join(self.modes)}")

    def check_duration(self, seconds) -> None:
        ok = (isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds)
              and self.min_duration <= seconds <= self.max_duration)
        if not ok:
            why = f" ({self.duration_why})" if self.duration_why else ""
            raise ValueError(f"{self.name} renders {self.min_duration:g} to {self.max_duration:g} seconds{why}; "
                             f"got {seconds!r}")


AUDIO_FAMILIES: dict[str, AudioFamily] = {
    # Stable Audio Open 1.0: 44.1 kHz stereo, a fixed 1024-latent window (hop 2048) = 47.55 s; the pipeline has
    # init audio (audio2audio) but no mask, so extension and inpainting run its components with a latent frame mask
    # (audio_masked.py). Stable Audio 3 adds audio-to-audio and inpainting pipelines (extension is inpainting of the
    # appended span).
    "stable-audio": AudioFamily(
        "stable-audio", AUDIO_MODES, 44100, 10.0, 47.55, 2,
        pipelines=(("txt2audio", "StableAudioPipeline"), ("audio2audio", "StableAudioPipeline"),
                   ("audio_extend", "StableAudioPipeline"), ("audio_inpaint", "StableAudioPipeline"),
                   ("txt2audio", "StableAudio3Pipeline"), ("audio2audio", "StableAudio3AudioToAudioPipeline"),
                   ("audio_inpaint", "StableAudio3InpaintPipeline"), ("audio_extend", "StableAudio3InpaintPipeline")),
        duration_why="the DiT's latent window"),
    # AudioLDM2 (cvssp/audioldm2-music): 16 kHz mono mel-spectrogram diffusion; trained on 10 s clips.
    "audioldm2": AudioFamily(
        "audioldm2", ("txt2audio",), 16000, 10.0, 30.0, 1, pipelines=(("txt2audio", "AudioLDM2Pipeline"),),
        duration_why="trained on 10 s clips; longer ones lose structure"),
    # MusicGen: 32 kHz EnCodec tokens at 50 Hz, trained on 30 s windows (transformers has no windowed extension
    # past that, unlike audiocraft). Melody checkpoints also take a melody (chroma) as the prompt: audio2audio.
    "musicgen": AudioFamily(
        "musicgen", ("txt2audio", "audio_extend", "audio_inpaint", "audio2audio"), 32000, 10.0, 30.0, 1,
        pipelines=(("txt2audio", "MusicgenForConditionalGeneration"),
                   ("audio2audio", "MusicgenMelodyForConditionalGeneration")),
        duration_why="trained on 30 s windows"),
}
assert tuple(AUDIO_FAMILIES) == AUDIO_FAMILY_NAMES


def _family(name: str) -> AudioFamily:
    if name not in AUDIO_FAMILIES:
        raise ValueError(f"unknown audio family {name!r}; expected one of {', '.join(AUDIO_FAMILIES)}")
    return AUDIO_FAMILIES[name]


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds; got {value!r}")
    return float(value)


def _check_spec(fam: AudioFamily, mode: str, duration, extend, span) -> None:
    fam.check_mode(mode)
    if mode == "audio_extend":
        if extend is None:
            raise ValueError("audio_extend needs extend (seconds to add)")
        _positive("extend", extend)
        fam.check_duration(duration)  # the input used
        total = float(duration) + float(extend)
        if total > fam.max_duration:
            why = f" ({fam.duration_why})" if fam.duration_why else ""
            raise ValueError(f"{fam.name} renders at most {fam.max_duration:g} seconds; {duration:g} s + "
                             f"{float(extend):g} s extension is {total:g}{why}")
    else:
        if extend is not None:
            raise ValueError(f"extend applies to audio_extend only (got extend with {mode})")
        fam.check_duration(duration)
    if mode == "audio_inpaint":
        if span is None or len(span) != 2:
            raise ValueError("audio_inpaint needs span=(start, end) in seconds")
        start, end = (float(s) for s in span)
        if not 0.0 <= start < end <= float(duration):
            raise ValueError(f"span must satisfy 0 <= start < end <= duration ({float(duration):g} s); got {span!r}")
    elif span is not None:
        raise ValueError(f"span applies to audio_inpaint only (got span with {mode})")


def check_audio_request(family: str, mode: str, *, duration, extend=None, span=None) -> None:
    """Refuse, with a one-line ValueError, a request no checkpoint of ``family`` can run (no model needed).
    ``duration`` is the length of audio the request uses: the clip generated (txt2audio) or the part of the
    input used (the other modes; audio_extend returns ``duration + extend`` seconds)."""
    _check_spec(_family(family), mode, duration, extend, span)


# ----------------------------------------------------------------------------------------------- MusicGen
MUSICGEN_TYPES = ("musicgen", "musicgen_melody")
_MELODY_FILE = "melody_features.json"


def melody_feature_config(**kw) -> dict:
    """The settings of transformers' MusicgenMelodyFeatureExtractor (n_fft, hop_length, num_chroma, chunk_length,
    sampling_rate), kept as data: that extractor needs torchaudio, which this install may lack."""
    cfg = dict(sampling_rate=32000, hop_length=4096, n_fft=16384, num_chroma=12, chunk_length=30)
    cfg.update(kw)
    return cfg


class MusicGenPipeline:
    """transformers MusicGen (or MusicGen-Melody) and its text/audio preprocessing, shaped like a diffusers pipeline
    for :class:`LoadedModel` (``components``, ``to``, ``dtype``, ``save_pretrained``; no scheduler: it samples
    tokens)."""

    scheduler = None

    def __init__(self, model, processor=None, *, tokenizer=None, melody_features: dict | None = None):
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer if tokenizer is not None else getattr(processor, "tokenizer", None)
        if self.tokenizer is None:
            raise ValueError("MusicGenPipeline needs a processor or a tokenizer")
        self.melody_features = melody_features
        if self.melody and melody_features is None:
            self.melody_features = melody_feature_config(sampling_rate=self.sample_rate)

    @property
    def melody(self) -> bool:
        return self.model.config.model_type == "musicgen_melody"

    @property
    def components(self) -> dict:
        return {"model": self.model}

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.audio_encoder.sampling_rate)

    @property
    def frame_rate(self) -> int:
        return int(self.model.config.audio_encoder.frame_rate)

    @property
    def channels(self) -> int:
        return int(self.model.config.audio_encoder.audio_channels)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device=None, dtype=None):
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        self.model.to(device=device, dtype=dtype)
        return self

    def save_pretrained(self, folder) -> None:
        folder = Path(folder)
        self.model.save_pretrained(folder, safe_serialization=True)
        (self.processor or self.tokenizer).save_pretrained(folder)
        if self.melody:
            (folder / _MELODY_FILE).write_text(json.dumps(self.melody_features, indent=2))

    @classmethod
    def from_pretrained(cls, folder, *, dtype=None, use_safetensors=None):
        import transformers

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        model_type = cfg.get("model_type")
        if model_type not in MUSICGEN_TYPES:
            raise ValueError(f"{folder} is a {model_type!r} model, not MusicGen")
        kw = dict(local_files_only=True, use_safetensors=use_safetensors)
        if dtype is not None:
            kw["dtype"] = dtype
        if model_type == "musicgen":
            model = transformers.MusicgenForConditionalGeneration.from_pretrained(str(folder), **kw).eval()
            return cls(model, transformers.AutoProcessor.from_pretrained(str(folder), local_files_only=True))
        model = transformers.MusicgenMelodyForConditionalGeneration.from_pretrained(str(folder), **kw).eval()
        tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        feats = None
        for name in (_MELODY_FILE, "preprocessor_config.json"):
            data = _read_json(folder / name)
            if data:
                feats = melody_feature_config(**{k: data[k] for k in ("sampling_rate", "hop_length", "n_fft",
                                                                      "num_chroma", "chunk_length") if k in data})
                break
        return cls(model, tokenizer=tok, melody_features=feats)

    def chroma(self, wave: np.ndarray) -> torch.Tensor:
        """(1, frames, num_chroma) one-hot dominant pitch class per frame of mono ``wave`` at the model's rate.
        transformers' MusicgenMelodyFeatureExtractor when torchaudio is installed; else the same computation
        (its torchaudio Spectrogram is a normalized power STFT) on torch.stft."""
        f = self.melody_features
        try:
            import torchaudio  # noqa: F401
            from transformers import MusicgenMelodyFeatureExtractor

            fe = MusicgenMelodyFeatureExtractor(**f)
            return fe(wave, sampling_rate=f["sampling_rate"], return_tensors="pt").input_features
        except ImportError:
            pass
        from transformers.audio_utils import chroma_filter_bank

        n = f["chunk_length"] * f["sampling_rate"]
        x = torch.zeros(1, max(n, 1), dtype=torch.float32)
        w = torch.as_tensor(wave[:n], dtype=torch.float32)
        x[0, : w.shape[0]] = w
        n_fft = f["n_fft"]
        if x.shape[-1] < n_fft:
            pad = n_fft - x.shape[-1]
            x = torch.nn.functional.pad(x, (pad // 2, pad - pad // 2))
        window = torch.hann_window(n_fft)
        spec = torch.stft(x, n_fft, hop_length=f["hop_length"], win_length=n_fft, window=window, center=True,
                          pad_mode="reflect", normalized=False, return_complex=True)
        spec = (spec.abs() / window.pow(2).sum().sqrt()).pow(2)  # torchaudio's normalized=True ("window")
        filters = torch.from_numpy(chroma_filter_bank(sampling_rate=f["sampling_rate"], num_frequency_bins=n_fft,
                                                      tuning=0, num_chroma=f["num_chroma"])).float()
        raw = torch.einsum("cf,...ft->...ct", filters, spec)
        norm = torch.nn.functional.normalize(raw, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)
        return torch.zeros_like(norm).scatter_(-1, norm.argmax(-1, keepdim=True), 1.0)


def musicgen_type(folder) -> str | None:
    """"musicgen" / "musicgen_melody" when ``folder`` holds a transformers MusicGen checkpoint, else None."""
    return _musicgen_type(Path(folder))


# ----------------------------------------------------------------------------------------------- per model
def _sa_open_spec(fam: AudioFamily, pipe) -> AudioFamily:
    rate = int(pipe.vae.config.sampling_rate)
    window = pipe.transformer.config.sample_size * pipe.vae.hop_length / rate
    top = min(window, float(pipe.projection_model.config.max_value))
    # extension and inpainting run the masked loop (audio_masked.py); an extension's input and new part share the
    # window, so max_duration bounds duration + extend
    return dataclasses.replace(fam, modes=AUDIO_MODES, sample_rate=rate,
                               channels=int(pipe.vae.config.audio_channels), max_duration=round(top, 3),
                               min_duration=min(fam.min_duration, top / 4),
                               default_duration=min(fam.default_duration, round(top, 3)))


def _sa3_spec(fam: AudioFamily, pipe) -> AudioFamily:
    local = getattr(pipe.transformer.config, "local_add_cond_dim", None) or getattr(
        pipe.transformer, "to_local_embed", None) is not None
    modes = AUDIO_MODES if local else ("txt2audio", "audio2audio")
    return dataclasses.replace(fam, modes=modes, sample_rate=int(pipe.vae.config.sampling_rate),
                               channels=int(getattr(pipe.vae.config, "audio_channels", fam.channels)))


def _audioldm2_spec(fam: AudioFamily, pipe) -> AudioFamily:
    return dataclasses.replace(fam, sample_rate=int(pipe.vocoder.config.sampling_rate))


def _musicgen_spec(fam: AudioFamily, pipe: MusicGenPipeline) -> AudioFamily:
    modes = ("txt2audio", "audio_extend", "audio_inpaint") + (("audio2audio",) if pipe.melody else ())
    dec = pipe.model.decoder.config
    # every token (prompt audio included) takes a position; the delay pattern adds num_codebooks - 1
    fits = (dec.max_position_embeddings - dec.num_codebooks) / pipe.frame_rate
    return dataclasses.replace(fam, modes=modes, sample_rate=pipe.sample_rate, channels=pipe.channels,
                               max_duration=round(min(fam.max_duration, fits), 3),
                               min_duration=min(fam.min_duration, 2.0 / pipe.frame_rate))


def audio_family_for(model: LoadedModel) -> AudioFamily:
    """The family's rules narrowed to this model: its modes, sample rate, channels and longest clip."""
    if model.family not in AUDIO_FAMILIES:
        raise ValueError(f"{model.source} is a {model.family} model, not an audio model "
                         f"(audio families: {', '.join(AUDIO_FAMILIES)})")
    fam = AUDIO_FAMILIES[model.family]
    pipe = model.pipe
    name = type(pipe).__name__
    if model.family == "musicgen":
        return _musicgen_spec(fam, pipe)
    if model.family == "audioldm2":
        return _audioldm2_spec(fam, pipe)
    if name.startswith("StableAudio3"):
        return _sa3_spec(fam, pipe)
    return _sa_open_spec(fam, pipe)


_SA3 = {"txt2audio": "StableAudio3Pipeline", "audio2audio": "StableAudio3AudioToAudioPipeline",
        "audio_inpaint": "StableAudio3InpaintPipeline", "audio_extend": "StableAudio3InpaintPipeline"}


def audio_pipeline_for(model: LoadedModel, mode: str):
    """The pipeline object that runs ``mode`` (SA3's mode pipelines are built with ``from_pipe``: shared modules)."""
    spec = audio_family_for(model)
    spec.check_mode(mode)
    name = type(model.pipe).__name__
    if not name.startswith("StableAudio3"):
        return model.pipe
    cls_name = _SA3[mode]
    if cls_name == name:
        return model.pipe
    if cls_name not in model._pipes:
        import diffusers

        model._pipes[cls_name] = getattr(diffusers, cls_name).from_pipe(model.pipe)
    return model._pipes[cls_name]


# ----------------------------------------------------------------------------------------------- audio helpers
def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling along axis 0 (scipy's resample_poly: anti-aliased, exact length n * target / rate)."""
    if int(rate) == int(target):
        return samples
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), int(target))
    return resample_poly(samples, int(target) // g, int(rate) // g, axis=0).astype(np.float32)


def _as_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """(n, channels) float32: mono duplicated, stereo averaged, as the pipelines themselves do."""
    x = samples[:, None] if samples.ndim == 1 else samples
    if x.shape[1] == channels:
        return x
    if channels == 1:
        return x.mean(axis=1, keepdims=True)
    if x.shape[1] == 1:
        return np.repeat(x, channels, axis=1)
    raise ValueError(f"cannot map {x.shape[1]}-channel audio to {channels} channels")


def _input_audio(init_audio, spec: AudioFamily, duration: float) -> np.ndarray:
    """init_audio -> (n, channels) float32 at the model's rate, cut to ``duration`` seconds."""
    if not isinstance(init_audio, (tuple, list)) or len(init_audio) != 2:
        raise ValueError("init_audio must be (samples, sample_rate)")
    samples, rate = init_audio
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] in (1, 2) and x.shape[1] > 2:
        raise ValueError(f"init_audio samples must be (n,) or (n, channels); got shape {x.shape}")
    if x.ndim not in (1, 2) or x.shape[0] == 0 or not np.isfinite(x).all():
        raise ValueError(f"init_audio samples must be a finite (n,) or (n, channels) array; got shape {x.shape}")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"init_audio sample rate must be a positive int; got {rate!r}")
    have = x.shape[0] / float(rate)
    if have + _LENGTH_SLACK_S < duration:
        raise ValueError(f"init_audio is {have:.3f} s; the request uses {duration:g} s")
    x = _as_channels(resample(x, int(rate), spec.sample_rate), spec.channels)
    n = int(round(duration * spec.sample_rate))
    if x.shape[0] < n:
        x = np.pad(x, ((0, n - x.shape[0]), (0, 0)))
    return np.clip(x[:n], -1.0, 1.0)


def _fade(n: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n + 2, dtype=np.float32)[1:-1, None]


def _paste_outside(orig: np.ndarray, gen: np.ndarray, a: int, b: int, fade: int) -> np.ndarray:
    """``orig`` outside [a, b), ``gen`` inside, with the joins crossfaded inside the span (outside stays exact)."""
    out = orig.copy()
    out[a:b] = gen[a:b]
    f = min(fade, (b - a) // 2)
    if f > 0 and a > 0:
        w = _fade(f)
        out[a:a + f] = orig[a:a + f] * (1 - w) + gen[a:a + f] * w
    if f > 0 and b < orig.shape[0]:
        w = _fade(f)
        out[b - f:b] = gen[b - f:b] * (1 - w) + orig[b - f:b] * w
    return out


def _append(orig: np.ndarray, gen: np.ndarray, fade: int) -> np.ndarray:
    """``orig`` then ``gen`` past its end; the last ``fade`` samples of ``orig`` blend into ``gen`` (``gen`` is a
    continuation rendered over the whole clip, so only the join moves)."""
    n = orig.shape[0]
    out = gen.copy()
    out[:n] = orig
    f = min(fade, n)
    if f > 0:
        w = _fade(f)
        out[n - f:n] = orig[n - f:n] * (1 - w) + gen[n - f:n] * w
    return out


def _out(x: np.ndarray, spec: AudioFamily, n: int) -> tuple[np.ndarray, int]:
    """(samples, rate) as run_audio returns them: float32 in [-1, 1], (n,) mono or (n, channels), exactly n long."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] < n:
        x = np.pad(x, ((0, n - x.shape[0]), (0, 0)))
    x = np.clip(np.nan_to_num(x[:n]), -1.0, 1.0)
    return (x[:, 0].copy() if x.shape[1] == 1 else x), int(spec.sample_rate)


def _np_channels_last(t) -> np.ndarray:
    """A pipeline's (1, channels, n) tensor/array -> (n, channels) numpy."""
    a = t.detach().float().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float32)
    if a.ndim == 3:
        a = a[0]
    if a.ndim == 1:
        return a[:, None]
    return a.T


# ----------------------------------------------------------------------------------------------- samplers
def _scheduler(model: LoadedModel, spec: AudioFamily, pipe, sampler: str | None, **overrides):
    from .video import _own_sampler

    own = type(pipe.scheduler)
    base = {**model.base_scheduler_config, **overrides}
    if sampler is None:
        return own.from_config(base)
    from schedulers import resolve_sampler

    return _own_sampler(spec, own, base, resolve_sampler(sampler))


# ----------------------------------------------------------------------------------------------- run
def run_audio(model: LoadedModel, *, mode: str, prompt: str, negative_prompt: str | None = None,
              duration: float, steps: int, guidance: float, sampler: str | None = None, seeds: Sequence[int],
              init_audio: tuple[np.ndarray, int] | None = None, extend: float | None = None,
              span: tuple[float, float] | None = None, strength: float | None = None,
              callback: Callable[[int, int, Any], None] | None = None) -> list[tuple[np.ndarray, int]]:
    """Generate one clip per seed: ``(samples, sample_rate)`` with float32 samples in [-1, 1], shape (n,) for
    mono models or (n, channels).

    ``duration`` is the length used: the clip generated (txt2audio) or the first ``duration`` seconds of
    ``init_audio`` (any rate; resampled to the model's). audio_extend returns that input plus ``extend`` seconds;
    audio_inpaint returns the input with ``span`` = [start, end) seconds regenerated; audio2audio re-renders the input
    at ``strength`` (0 = unchanged, 1 = ignore it; default :data:`DEFAULT_AUDIO2AUDIO_STRENGTH`). Clip i is rendered
    on its own from seed i (a CPU ``torch.Generator`` for diffusers backends, torch's global RNG in a fork for
    MusicGen), so it equals a single run of that seed. ``callback(step, total, latents_or_None)`` counts over the
    whole batch. ``steps`` and ``sampler`` do not apply to MusicGen (it samples tokens; ``sampler`` must be None).
    """
    spec = audio_family_for(model)
    _check_spec(spec, mode, duration, extend, span)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    duration = float(duration)
    src = None
    if mode == "txt2audio":
        if init_audio is not None:
            raise ValueError("init_audio applies to audio_extend, audio_inpaint and audio2audio (got it with "
                             "txt2audio)")
    else:
        if init_audio is None:
            raise ValueError(f"{mode} needs init_audio: (samples, sample_rate)")
        src = _input_audio(init_audio, spec, duration)
    if mode == "audio2audio" and not (spec.name == "musicgen"):
        strength = DEFAULT_AUDIO2AUDIO_STRENGTH if strength is None else float(strength)
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1]; got {strength}")
    elif strength is not None:
        what = "musicgen-melody keeps the input's melody, not its waveform" if mode == "audio2audio" else mode
        raise ValueError(f"strength does not apply here ({what})")
    if negative_prompt == "":
        negative_prompt = None
    ctx = _Run(model, spec, mode, prompt, negative_prompt, duration, steps, float(guidance), sampler, src,
               None if extend is None else float(extend),
               None if span is None else (float(span[0]), float(span[1])), strength, callback, len(seeds))
    if mode == "audio2audio" and strength == 0.0:
        return [_out(src, spec, src.shape[0]) for _ in seeds]  # strength 0 = the input unchanged
    runner = _musicgen if spec.name == "musicgen" else _diffusers
    return [runner(ctx, i, seed) for i, seed in enumerate(seeds)]


@dataclass
class _Run:
    model: LoadedModel
    spec: AudioFamily
    mode: str
    prompt: str
    negative_prompt: str | None
    duration: float
    steps: int
    guidance: float
    sampler: str | None
    src: np.ndarray | None
    extend: float | None
    span: tuple[float, float] | None
    strength: float | None
    callback: Callable | None
    count: int

    @property
    def rate(self) -> int:
        return int(self.spec.sample_rate)

    def samples(self, seconds: float) -> int:
        return int(round(seconds * self.rate))

    @property
    def fade(self) -> int:
        return self.samples(CROSSFADE_S)


def _finish(ctx: _Run, gen: np.ndarray) -> tuple[np.ndarray, int]:
    """Apply the mode's contract to a clip the backend rendered over the whole output length."""
    if ctx.mode == "audio_extend":
        n = ctx.samples(ctx.duration + ctx.extend)
        gen = _as_channels(np.asarray(gen, np.float32), ctx.spec.channels)
        gen = np.pad(gen, ((0, max(0, n - gen.shape[0])), (0, 0)))[:n]
        return _out(_append(ctx.src, gen, ctx.fade), ctx.spec, n)
    if ctx.mode == "audio_inpaint":
        n = ctx.src.shape[0]
        gen = _as_channels(np.asarray(gen, np.float32), ctx.spec.channels)
        gen = np.pad(gen, ((0, max(0, n - gen.shape[0])), (0, 0)))[:n]
        a, b = ctx.samples(ctx.span[0]), min(n, ctx.samples(ctx.span[1]))
        return _out(_paste_outside(ctx.src, gen, a, b, ctx.fade), ctx.spec, n)
    n = ctx.src.shape[0] if ctx.src is not None else ctx.samples(ctx.duration)
    return _out(gen, ctx.spec, n)


# ---- diffusers backends
def _diffusers(ctx: _Run, index: int, seed: int) -> tuple[np.ndarray, int]:
    model, spec, mode = ctx.model, ctx.spec, ctx.mode
    pipe = copy.copy(audio_pipeline_for(model, mode))  # shallow: shares modules, own scheduler per clip
    gen = torch.Generator("cpu").manual_seed(seed)
    name = type(pipe).__name__
    steps = ctx.steps
    kw: dict[str, Any] = dict(prompt=ctx.prompt, generator=gen)
    total = ctx.duration + (ctx.extend or 0.0)
    gain = _latent_level_gain(model, pipe, ctx.src) if name == "StableAudioPipeline" else 1.0
    run = dataclasses.replace(ctx, src=ctx.src * gain) if gain != 1.0 else ctx
    if name == "StableAudioPipeline" and mode in ("audio_extend", "audio_inpaint"):
        return _finish(ctx, _sa_open_masked(run, pipe, gen, index) / gain)
    if name == "StableAudioPipeline":
        overrides = {}
        if mode == "audio2audio":
            # the pipeline adds the encoded input to noise of the scheduler's sigma_max: lowering sigma_max
            # (log-linearly, as its exponential schedule is spaced) is SDEdit's strength
            c = model.base_scheduler_config
            lo, hi = float(c.get("sigma_min", 0.3)), float(c.get("sigma_max", 500.0))
            overrides["sigma_max"] = max(lo * 1.0001, lo * (hi / lo) ** ctx.strength)
            steps = max(1, math.ceil(steps * ctx.strength))
            kw["initial_audio_waveforms"] = torch.from_numpy(run.src.T.copy())[None].to(model.device, model.dtype)
            kw["initial_audio_sampling_rate"] = ctx.rate
        pipe.scheduler = _scheduler(model, spec, pipe, ctx.sampler, **overrides)
        kw.update(audio_end_in_s=ctx.duration, audio_start_in_s=0.0, guidance_scale=ctx.guidance,
                  negative_prompt=ctx.negative_prompt)
        if ctx.callback is not None:
            kw["callback"] = lambda i, t, lat: ctx.callback(index * steps + i + 1, ctx.count * steps, lat)
    elif name.startswith("StableAudio3"):
        pipe.scheduler = _scheduler(model, spec, pipe, ctx.sampler)
        kw["duration"] = total
        if mode == "txt2audio":
            kw.update(guidance_scale=ctx.guidance, negative_prompt=ctx.negative_prompt)
        else:
            if ctx.negative_prompt:
                raise ValueError(f"{name} takes no negative_prompt (its {mode} has no guidance)")
            audio = ctx.src if mode != "audio_extend" else np.pad(
                ctx.src, ((0, ctx.samples(total) - ctx.src.shape[0]), (0, 0)))
            kw["audio"] = torch.from_numpy(audio.T.copy())[None].to(model.device, model.dtype)
            if mode == "audio2audio":
                kw["init_noise_level"] = max(ctx.strength, 1e-3)
            else:
                start, end = ctx.span if mode == "audio_inpaint" else (ctx.duration, total)
                kw.update(mask_start_seconds=start, mask_end_seconds=end)
        _step_end(kw, ctx, index, steps)
    elif name == "AudioLDM2Pipeline":
        _audioldm2_lm_step(pipe.language_model)
        pipe.scheduler = _scheduler(model, spec, pipe, ctx.sampler)
        kw.update(audio_length_in_s=ctx.duration, guidance_scale=ctx.guidance, negative_prompt=ctx.negative_prompt,
                  num_waveforms_per_prompt=1)
        if ctx.callback is not None:
            kw["callback"] = lambda i, t, lat: ctx.callback(index * steps + i + 1, ctx.count * steps, lat)
    else:
        raise ValueError(f"{name} is not a supported audio pipeline")
    kw["num_inference_steps"] = steps
    with torch.inference_mode():
        audio = pipe(output_type="pt" if name != "AudioLDM2Pipeline" else "np", **kw).audios
    return _finish(ctx, _np_channels_last(audio[:1] if not isinstance(audio, np.ndarray) else audio[0]) / gain)


def _latent_level_gain(model: LoadedModel, pipe, src: np.ndarray | None) -> float:
    """The gain that brings a source clip's latent to the level the model was trained at (1.0 when it declares none).

    A model trained on per-clip unit-rms latents (the mini music model: its world's instruments span 16 dB of latent
    level) declares it with ``LATENT_LEVEL_KEY`` in its scheduler config, which diffusers keeps with every load and
    copy of the pipeline (a private key, ignored by the scheduler). Fed a quiet source at its own level, such a model
    reads it as nearly silent at every sigma and regenerates it (audio-to-audio kept the register of 50%). Only valid
    for a linear codec, which is why it is the model's declaration, not a default."""
    if src is None or model.base_scheduler_config.get(LATENT_LEVEL_KEY) != "unit_rms":
        return 1.0
    wave = torch.from_numpy(np.ascontiguousarray(np.asarray(src, np.float32).reshape(src.shape[0], -1).T))[None]
    with torch.inference_mode():
        z = pipe.vae.encode(wave.to(model.device, model.dtype)).latent_dist.mean.float()
    kept = int(model.base_scheduler_config.get(LATENT_LEVEL_CHANNELS_KEY) or z.shape[1])
    rms = float((z[:, :kept].pow(2).sum() / (z.shape[1] * z.shape[2])).sqrt())
    return 1.0 / max(rms, 1e-4)


def _sa_open_masked(ctx: _Run, pipe, gen: torch.Generator, index: int) -> np.ndarray:
    """Stable Audio Open continuation / inpainting: the source's latent frames kept through a frame mask; the raw
    render over the whole output length, channels last (the caller applies the mode's contract)."""
    from .audio_masked import masked_sample

    pipe.scheduler = _scheduler(ctx.model, ctx.spec, pipe, ctx.sampler)
    steps = ctx.steps
    if ctx.mode == "audio_extend":
        total = ctx.duration + ctx.extend
        n = ctx.src.shape[0]
        end = ctx.samples(total)
        wave, start = np.pad(ctx.src, ((0, end - n), (0, 0))), n
    else:
        total, wave = ctx.duration, ctx.src
        start, end = ctx.samples(ctx.span[0]), min(ctx.src.shape[0], ctx.samples(ctx.span[1]))
    cb = None
    if ctx.callback is not None:
        cb = lambda i, t, lat: ctx.callback(index * steps + i + 1, ctx.count * steps, lat)  # noqa: E731
    audio = masked_sample(pipe, wave, start, end, prompt=ctx.prompt, negative_prompt=ctx.negative_prompt,
                          audio_end_in_s=total, num_inference_steps=steps, guidance_scale=ctx.guidance,
                          generator=gen, callback=cb)
    return _np_channels_last(audio[:1])


def _audioldm2_lm_step(lm) -> None:
    """AudioLDM2's GPT-2 loop (diffusers 0.42.1 ``generate_language_model``) calls
    ``language_model._update_model_kwargs_for_generation``, a GenerationMixin method the bare ``GPT2Model`` it loads
    no longer has in transformers 5. Give that instance one: extend the attention mask by the new position and keep no
    cache, so each step re-reads the whole sequence (the same hidden states as the cached loop; 8 steps)."""
    if hasattr(lm, "_update_model_kwargs_for_generation"):
        return

    def _update(outputs, model_kwargs, **_):
        kw = {k: v for k, v in model_kwargs.items() if k not in ("past_key_values", "cache", "cache_position")}
        mask = kw.get("attention_mask")
        if mask is not None:
            kw["attention_mask"] = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        return kw
    object.__setattr__(lm, "_update_model_kwargs_for_generation", _update)


def _step_end(kw: dict, ctx: _Run, index: int, steps: int) -> None:
    if ctx.callback is None:
        return

    def _cb(p, i, t, cbkw):
        per = getattr(p, "_num_timesteps", None) or steps
        ctx.callback(index * per + i + 1, ctx.count * per, cbkw.get("latents"))
        return {}
    kw["callback_on_step_end"] = _cb
    kw["callback_on_step_end_tensor_inputs"] = ["latents"]


# ---- MusicGen
class _TokenProgress:
    """Per generated token step, as a logits processor: transformers 5's MusicGen generate() hands its streamer
    only the prompt, but runs the logits processors once a step."""

    def __init__(self, ctx: _Run, index: int, new_tokens: int):
        self.ctx, self.index, self.total, self.seen = ctx, index, new_tokens, 0

    def __call__(self, input_ids, scores):
        self.seen = min(self.seen + 1, self.total)
        self.ctx.callback(self.index * self.total + self.seen, self.ctx.count * self.total, None)
        return scores


def _musicgen(ctx: _Run, index: int, seed: int) -> tuple[np.ndarray, int]:
    pipe: MusicGenPipeline = ctx.model.pipe
    if ctx.sampler is not None:
        raise ValueError("musicgen samples tokens; it takes no sampler (pass sampler=None)")
    if ctx.negative_prompt:
        raise ValueError("musicgen takes no negative_prompt (its guidance is against an empty prompt)")
    fr, rate = pipe.frame_rate, ctx.rate
    mono = ctx.src.mean(axis=1) if ctx.src is not None and pipe.channels == 1 else None
    prompt_audio = None
    if ctx.mode == "audio_extend":
        prompt_audio, seconds = ctx.src, ctx.extend
    elif ctx.mode == "audio_inpaint":
        a = ctx.samples(ctx.span[0])
        # continue from the audio before the span; the crossfade back into the original needs its overlap
        prompt_audio = ctx.src[:a] if a > 0 else None
        seconds = ctx.span[1] - ctx.span[0]
    else:
        seconds = ctx.duration
    new_tokens = int(math.ceil(seconds * fr)) + pipe.model.decoder.config.num_codebooks - 1
    inputs: dict[str, Any] = {}
    tok = pipe.tokenizer([ctx.prompt or ""], padding=True, return_tensors="pt")
    inputs.update(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
    if prompt_audio is not None:
        if pipe.processor is None:
            raise ValueError("this MusicGen checkpoint has no audio processor for an audio prompt")
        wav = prompt_audio.mean(axis=1) if pipe.channels == 1 else prompt_audio.T
        feats = pipe.processor.feature_extractor(wav, sampling_rate=rate, return_tensors="pt")
        inputs.update(input_values=feats.input_values, padding_mask=feats.padding_mask)
    if ctx.mode == "audio2audio":
        inputs["input_features"] = pipe.chroma(mono if mono is not None else ctx.src.mean(axis=1))
    inputs = {k: (v.to(pipe.device, pipe.dtype) if v.is_floating_point() else v.to(pipe.device))
              for k, v in inputs.items()}
    from transformers import LogitsProcessorList

    progress = LogitsProcessorList([_TokenProgress(ctx, index, new_tokens)] if ctx.callback is not None else [])
    devices = [pipe.device] if pipe.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        torch.manual_seed(seed)
        audio = pipe.model.generate(**inputs, do_sample=True, guidance_scale=ctx.guidance,
                                    max_new_tokens=new_tokens, logits_processor=progress)
    gen = _np_channels_last(audio)
    if ctx.mode == "audio_inpaint":
        a = ctx.samples(ctx.span[0])
        body = gen if prompt_audio is not None else np.concatenate([np.zeros((a, gen.shape[1]), np.float32), gen])
        return _finish(ctx, body)
    return _finish(ctx, gen)


__all__ = ["AUDIO_MODES", "AUDIO_FAMILIES", "AudioFamily", "DEFAULT_AUDIO2AUDIO_STRENGTH", "CROSSFADE_S",
           "MusicGenPipeline", "audio_family_for", "audio_pipeline_for", "check_audio_request", "melody_feature_config",
           "musicgen_type", "resample", "run_audio"]
