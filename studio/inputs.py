"""Reading a request's source media (init images, masks, init videos) within `studio.limits`, before any model
loads: the byte size before reading, the declared pixel size before decoding."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from . import limits
from .errors import RequestError

ImageInput = Union[str, Path, bytes, "PIL.Image.Image"]  # noqa: F821


@dataclass
class SourceImage:
    image: "PIL.Image.Image"  # noqa: F821
    data: bytes  # the original bytes, kept so a re-edited studio output keeps its manifest as the ingredient
    fmt: Optional[str]
    label: str


def too_many_pixels(what: str, label: str, w: int, h: int) -> RequestError:
    return RequestError(f"{what} {label} is {w}x{h} = {w * h:,} pixels, over the input limit of "
                        f"{limits.MAX_INPUT_PIXELS:,} ({side_for(limits.MAX_INPUT_PIXELS)}x"
                        f"{side_for(limits.MAX_INPUT_PIXELS)}): downscale it first")


def side_for(pixels: int) -> int:
    return int(pixels ** 0.5) // 8 * 8


def size_from_source(width: int, height: int, scale: int = 8) -> tuple[int, int]:
    """The output size of an edit with no size given: the source's, each side down to a multiple of `scale`
    (the model's VAE factor)."""
    return max(scale, width // scale * scale), max(scale, height // scale * scale)


def read_image(value: ImageInput, what: str, mode: str, shown: Optional[str] = None) -> SourceImage:
    """Read an init image or mask within limits.MAX_INPUT_BYTES / MAX_INPUT_PIXELS: the byte size before
    reading, the declared pixel size before decoding (a tiny PNG can declare 20000x20000). `shown` names a
    path in messages as the user wrote it (a job file's relative path) instead of as resolved."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    cap = limits.MAX_INPUT_BYTES
    if isinstance(value, (str, Path, bytes, bytearray)):
        data, label = _read_bytes(value, what, cap, shown)
    elif isinstance(value, Image.Image):
        label = "(PIL image)"
        if value.width * value.height > limits.MAX_INPUT_PIXELS:
            raise too_many_pixels(what, label, value.width, value.height)
        buf = io.BytesIO()
        try:
            value.save(buf, format="PNG")
        except (OSError, ValueError):
            raise RequestError(f"{what} {label} in mode {value.mode} cannot be stored as PNG: convert it to RGB "
                               "or L first") from None
        data = buf.getvalue()
    else:
        raise RequestError(f"{what} must be a path, bytes or a PIL image, not {type(value).__name__}")
    try:
        with warnings.catch_warnings():
            # PIL warns past its own limit and raises past twice that; the named limit below is lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise RequestError(f"{what} {label} declares more than {limits.MAX_INPUT_PIXELS:,} pixels, the input "
                           "limit: downscale it first") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise RequestError(f"{what} {label} is not a readable image (PNG, JPEG, WebP, ...)") from None
    if img.width * img.height > limits.MAX_INPUT_PIXELS:
        raise too_many_pixels(what, label, img.width, img.height)
    try:
        img.load()
        converted = img.convert(mode)
    except (OSError, ValueError, SyntaxError):  # truncated or corrupt pixel data (PIL raises all three)
        raise RequestError(f"{what} {label} is corrupt or truncated: its pixels cannot be decoded") from None
    fmt = (img.format or "").lower() or None
    return SourceImage(converted, data, {"jpg": "jpeg"}.get(fmt, fmt), label)


def _read_bytes(value, what: str, cap: int, shown: Optional[str]) -> tuple[bytes, str]:
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise RequestError(f"{what} {str(value)!r} does not exist or is not a file")
        label = repr(shown if shown is not None else str(value))
        size = path.stat().st_size
        if size > cap:
            raise RequestError(f"{what} {label} is {size / limits.MiB:.0f} MiB, over the input limit of "
                               f"{cap // limits.MiB} MiB")
        try:
            return path.read_bytes(), label
        except OSError as exc:
            raise RequestError(f"{what} {label} cannot be read ({exc.strerror or 'I/O error'})") from None
    if isinstance(value, (bytes, bytearray)):
        # never the object's repr in messages: "<_io.BytesIO object at 0x...>" tells the user nothing
        if len(value) > cap:
            raise RequestError(f"{what} (bytes) is {len(value) / limits.MiB:.0f} MiB, over the input limit of "
                               f"{cap // limits.MiB} MiB")
        return bytes(value), "(bytes)"
    raise RequestError(f"{what} must be a path or bytes, not {type(value).__name__}")


@dataclass
class SourceVideo:
    frames: list  # PIL RGB frames
    fps: float
    data: bytes  # the original bytes: the output's C2PA ingredient
    fmt: Optional[str]
    label: str


def read_video(value, what: str = "init video", shown: Optional[str] = None,
               max_frames: int = limits.MAX_INPUT_FRAMES) -> SourceVideo:
    """A user's clip (MP4, WebM, GIF, MOV; a path or bytes), at most `max_frames` frames of at most
    `limits.MAX_INPUT_PIXELS` each, decoded by the safety layer's bounded decoder."""
    from PIL import Image

    from safety.media import MediaError, decode_video, sniff

    data, label = _read_bytes(value, what, limits.MAX_INPUT_VIDEO_BYTES, shown)
    try:
        frames, fps = decode_video(data, max_frames=max_frames, max_pixels=limits.MAX_INPUT_PIXELS)
    except MediaError as exc:
        raise RequestError(f"{what} {label}: {exc}") from None
    fmt = sniff(data)
    return SourceVideo([Image.fromarray(f) for f in frames], float(fps), data,
                       fmt if fmt and not fmt.startswith("unsupported") else None, label)


@dataclass
class SourceAudio:
    samples: "numpy.ndarray"  # noqa: F821 - float32 (n,) or (n, channels)
    rate: int
    data: bytes  # the original bytes: the output's C2PA ingredient
    fmt: Optional[str]
    label: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def read_audio(value, what: str = "init audio", shown: Optional[str] = None) -> SourceAudio:
    """A user's audio clip (WAV, FLAC, MP3; a path or bytes) within `limits.MAX_INPUT_AUDIO_BYTES` and
    `limits.MAX_INPUT_AUDIO_SECONDS`, decoded by the safety layer's bounded decoder."""
    from safety.media import KIND, MediaError, decode_audio, sniff

    data, label = _read_bytes(value, what, limits.MAX_INPUT_AUDIO_BYTES, shown)
    fmt = sniff(data)
    if fmt is None or KIND.get(fmt) != "audio":
        raise RequestError(f"{what} {label} is not a readable audio file (WAV, FLAC or MP3)")
    try:
        samples, rate = decode_audio(data, fmt, max_seconds=limits.MAX_INPUT_AUDIO_SECONDS)
    except MediaError as exc:
        raise RequestError(f"{what} {label}: {exc}") from None
    if len(samples) == 0:
        raise RequestError(f"{what} {label} has no samples")
    return SourceAudio(samples, int(rate), data, fmt, label)
