"""Music: text-to-music, continuation, span inpainting and audio-to-audio through `pipelines.run_audio`,
sealed by `safety.seal_audio` (the mark in the samples, then the container, then the C2PA manifest)."""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import numpy as np

from ..errors import RequestError
from ..inputs import read_audio
from .base import Inputs, MediaModality, SealedMedia, family_rules


def samples_sha256(samples, rate: int) -> str:
    """Hash of a clip's samples (float32, shape and rate), the audio counterpart of an image's pixel hash."""
    x = np.ascontiguousarray(np.asarray(samples, dtype=np.float32))
    h = hashlib.sha256(f"f32:{rate}:{'x'.join(map(str, x.shape))}:".encode())
    h.update(x.tobytes())
    return h.hexdigest()


def _family(name: str):
    import pipelines

    return family_rules(pipelines.AUDIO_FAMILIES, name, "audio")


class AudioModality(MediaModality):
    name = "audio"
    noun = "clip"
    folder = "music"
    working = "generating"  # MusicGen samples tokens rather than denoising; true of every audio backend
    sized = False
    extensions = {"wav": ".wav", "flac": ".flac", "mp3": ".mp3"}
    suffixes = {".wav": "wav", ".flac": "flac", ".mp3": "mp3"}

    def read_inputs(self, request, *, init_value=None, mask_value=None, video_value=None, audio_value=None) -> Inputs:
        if not request.init_audio:
            return Inputs()
        clip = read_audio(audio_value if audio_value is not None else request.init_audio)
        if request.span is not None and request.span.end > clip.seconds + 1e-6:
            raise RequestError(f"span {request.span.start:g}:{request.span.end:g} s ends after the init audio "
                               f"({clip.seconds:.2f} s)")
        return Inputs(audio=(_without_mark(clip.samples, clip.rate), clip.rate), parent=clip.data,
                      parent_format=clip.fmt,
                      hashes={"init_audio": hashlib.sha256(clip.data).hexdigest()})

    def sampler_family(self, family: Optional[str]) -> Optional[str]:
        return None  # each audio backend runs its own scheduler (or, MusicGen, none)

    def pixels(self, request, width: int, height: int) -> int:
        return 0

    def check(self, request, entry, source, inputs: Inputs, *, scale: int) -> None:
        import pipelines

        family = getattr(source, "family", None) or entry.family
        if family is None:
            return
        _family(family)
        duration = request.duration or getattr(entry, "duration", None) or _family(family).default_duration
        span = request.span.as_tuple() if request.span else None
        try:
            if hasattr(source, "pipe"):  # after the load: this checkpoint's modes, rate and window
                rules = pipelines.audio_family_for(source)
                rules.check_mode(request.mode)
                rules.check_duration(duration + (request.extend or 0.0))
            pipelines.check_audio_request(family, request.mode, duration=duration, extend=request.extend,
                                          span=span)
        except ValueError as exc:
            raise RequestError(f"model {entry.name}: {exc}") from None

    def resolve(self, fields: dict, request, entry, family: str, inputs: Inputs) -> None:
        spec = _family(family)
        fields["width"] = fields["height"] = None  # a clip of sound has no size
        if request.mode == "txt2audio":
            fields["duration"] = request.duration or getattr(entry, "duration", None) or spec.default_duration
        elif request.mode == "audio2audio" and fields["strength"] is None and family != "musicgen":
            # MusicGen-Melody keeps the source's melody, not its waveform: it takes no strength
            import pipelines

            fields["strength"] = pipelines.DEFAULT_AUDIO2AUDIO_STRENGTH

    def run(self, model, request, inputs: Inputs, seeds: Sequence[int], callback) -> list:
        import pipelines

        duration = request.duration
        if duration is None and inputs.audio is not None:
            duration = len(inputs.audio[0]) / inputs.audio[1]
        return pipelines.run_audio(
            model, mode=request.mode, prompt=request.prompt, negative_prompt=request.negative_prompt,
            duration=duration, steps=request.steps, guidance=request.guidance, sampler=request.sampler,
            seeds=list(seeds), init_audio=inputs.audio, extend=request.extend,
            span=request.span.as_tuple() if request.span else None, strength=request.strength,
            callback=callback)

    def seal(self, media, *, fmt, params, claim_generator, parent, parent_format, png_text, config,
             watermark_id) -> SealedMedia:
        import safety
        from safety.media import decode_audio

        samples, rate = media
        sealed = safety.seal_audio(samples, sample_rate=int(rate), fmt=fmt, params=params,
                                   claim_generator=claim_generator, parent=parent, parent_format=parent_format,
                                   config=config, watermark_id=watermark_id)
        delivered, delivered_rate = decode_audio(sealed.data, fmt)
        x = np.asarray(samples)
        return SealedMedia(data=sealed.data, manifest=sealed.manifest, watermark_id=sealed.watermark_id,
                           watermark_status=sealed.watermark_status,
                           pixel_sha256=samples_sha256(delivered, delivered_rate),
                           generated_sha256=samples_sha256(x, int(rate)), duration_s=round(len(x) / rate, 4),
                           sample_rate=int(rate), channels=1 if x.ndim == 1 else int(x.shape[1]))

    def decode(self, data: bytes):
        from safety.media import decode_audio, sniff

        return decode_audio(data, sniff(data) or "wav")


AUDIO = AudioModality()


def _without_mark(samples, rate: int):
    """The source clip with its own watermark taken out before the model hears it. A model that continues or
    inpaints a marked clip copies the mark's pattern into what it writes, at another alignment; the seal then
    cannot locate the old mark to take it out, and the new one cancels against it (measured on mini-music
    continuations and inpaints: read back in 0 of 5, in 5 of 5 with the source unmarked first). The output is
    marked once, at the seal; a clip with no readable mark passes unchanged."""
    import numpy as np
    from safety.seal import WATERMARKERS

    remove = getattr(WATERMARKERS["audio"], "remove", None)
    if remove is None:
        return samples
    return np.asarray(remove((samples, rate))[0], dtype=np.float32).reshape(np.shape(samples))
