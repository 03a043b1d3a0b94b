"""Container encoding/decoding and format sniffing (Pillow for images, imageio-ffmpeg's static ffmpeg for A/V)."""
from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

MIME = {
    "png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp",
    "wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "mp4": "video/mp4", "gif": "image/gif",
}
# An animated GIF is a clip: seal_video writes it, verify reads its mark across frames (a one-frame GIF too).
KIND = {"png": "image", "jpeg": "image", "webp": "image", "wav": "audio", "flac": "audio", "mp3": "audio",
        "mp4": "video", "gif": "video"}
_ALIASES = {"jpg": "jpeg", "image/jpg": "jpeg", "wave": "wav", "audio/x-wav": "wav", "audio/wave": "wav",
            "audio/vnd.wave": "wav", "audio/mp3": "mp3", "m4v": "mp4", "video/webm": "webm",
            "video/x-matroska": "mkv"}
for _k, _v in list(MIME.items()):
    _ALIASES[_v] = _k
UNSUPPORTED_NAMES = {"bmp": "BMP", "ogg": "Ogg", "webm": "WebM/Matroska", "tiff": "TIFF",
                     "m4a": "M4A (audio-only MP4)"}
# Formats a user may ask for that cannot leave sealed, with why and what to use instead (measured with
# c2pa-python 0.38.1: signing WebM raises "NotSupported: type is unsupported" for video/webm and
# video/x-matroska, and the BMFF parser rejects it as video/mp4).
UNSIGNABLE = {"webm": "WebM cannot carry C2PA content credentials (c2pa-python 0.38 has no Matroska/WebM support); "
                      "use fmt='mp4' (H.264) or 'gif'",
              "mkv": "Matroska cannot carry C2PA content credentials (c2pa-python 0.38 has no Matroska support); "
                     "use fmt='mp4' (H.264)"}


class MediaError(Exception):
    pass


# Decoding is where a small file becomes a large allocation (an 8 kbit/s MP3 of 60 MB is ~17 h of float32
# samples; a 16k x 16k H.264 stream is 768 MB a frame), so these bounds apply before the samples exist.
MAX_AUDIO_SECONDS = 20 * 60
MAX_VIDEO_FRAME_PIXELS = 4096 * 4096


def normalize_fmt(fmt: str) -> str:
    f = (fmt or "").lower().lstrip(".")
    f = _ALIASES.get(f, f)
    if f in UNSIGNABLE:
        raise MediaError(UNSIGNABLE[f])
    if f not in MIME:
        raise MediaError(f"unsupported format {fmt!r}; supported: {', '.join(MIME)}")
    return f


def sniff(data: bytes) -> Optional[str]:
    """Our format name from magic bytes; 'unsupported:<name>' for known-unsupported types; None if unknown."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[4:8] == b"ftyp":
        if data[8:11] in (b"M4A", b"M4B"):
            return "unsupported:m4a"
        return "mp4"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0):
        return "mp3"
    if data[:2] == b"BM":
        return "unsupported:bmp"
    if data[:4] == b"OggS":
        return "unsupported:ogg"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "unsupported:webm"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "unsupported:tiff"
    return None


def ffmpeg_exe() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(args, data: Optional[bytes] = None, timeout: float = 600) -> bytes:
    try:
        p = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", *args],
                           input=data, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MediaError(f"ffmpeg failed to run: {e}")
    if p.returncode != 0:
        raise MediaError(f"ffmpeg exited {p.returncode}: {p.stderr.decode(errors='replace').strip()[-500:]}")
    return p.stdout


# -------------------------------------------------------------------------------------------------- images
# PNG: the studio's outputs are written by a small writer (``_png_fast``): one filter (Up) for every row,
# vectorised in numpy, then zlib level 1 with the Z_RLE strategy; when that leaves less than a fifth of the raw
# size (flat, graphic content, where run-length matching is weak) the default strategy at level 1 is tried too
# and the smaller kept. Measured on 1024x1024 marked procedural images (bench/seal_bench.py --png): the same
# size as Pillow's compress_level=6 on photo-like, texture and noise content (0.96-1.07x), 1.5x on flat
# shapes, 4-7x faster. Images with anything in ``img.info`` (ICC profile, dpi, transparency ...) or another mode
# keep Pillow's encoder so those chunks are written as before.
# Where python-isal is installed, its ISA-L deflate (level 1) replaces zlib: a standard zlib stream, 3-4x faster
# on the same data at 1.00-1.04x zlib's size here (bench/seal_bench.py --png); without it, zlib as above.
PNG_RLE_FALLBACK_RATIO = 0.2
try:
    from isal import isal_zlib as _isal_zlib
except ImportError:     # optional accelerator
    _isal_zlib = None


def _png_chunk(cid: bytes, data: bytes) -> bytes:
    import struct
    import zlib
    return struct.pack(">I", len(data)) + cid + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(cid)))


def _png_idat(arr: np.ndarray) -> bytes:
    """zlib stream of the Up-filtered scanlines of an HxWxC uint8 array (filter byte 2 on every row)."""
    import zlib
    h = arr.shape[0]
    rows = np.ascontiguousarray(arr).reshape(h, -1)
    raw = np.empty((h, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 2
    raw[:, 1:] = rows
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])      # uint8 arithmetic wraps mod 256, as PNG's Up does
    data = raw.data
    if _isal_zlib is not None:
        return _isal_zlib.compress(data, 1)

    def deflate(level: int, strategy: int) -> bytes:
        c = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
        return c.compress(data) + c.flush()

    z = deflate(1, zlib.Z_RLE)
    if len(z) < PNG_RLE_FALLBACK_RATIO * raw.size:
        z2 = deflate(1, zlib.Z_DEFAULT_STRATEGY)
        if len(z2) < len(z):
            z = z2
    return z


def _png_fast(img, info) -> bytes:
    import struct
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6 if img.mode == "RGBA" else 2, 0, 0, 0)
    out = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", ihdr)]
    out += [_png_chunk(c[0], c[1]) for c in info.chunks if not (len(c) == 3 and c[2])]
    out.append(_png_chunk(b"IDAT", _png_idat(arr)))
    out += [_png_chunk(c[0], c[1]) for c in info.chunks if len(c) == 3 and c[2]]
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def encode_image(img, fmt: str, png_text: Optional[Dict[str, str]] = None, quality: Optional[int] = None) -> bytes:
    from PIL import PngImagePlugin
    buf = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        for k, v in (png_text or {}).items():
            v = str(v)
            try:
                v.encode("latin-1")
                info.add_text(str(k), v)
            except UnicodeEncodeError:
                info.add_itxt(str(k), v)
        if img.mode in ("RGB", "RGBA") and not img.info:
            return _png_fast(img, info)
        img.save(buf, "PNG", pnginfo=info, compress_level=6)
    elif fmt == "jpeg":
        img.convert("RGB").save(buf, "JPEG", quality=quality or 95, subsampling=0)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality or 95, method=4)
    else:
        raise MediaError(f"{fmt} is not an image format")
    return buf.getvalue()


def decode_image(data: bytes):
    from PIL import Image
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def pixels_sha256(im) -> str:
    """sha256 of a decoded image's mode, size and pixel bytes: the studio's ``pixel_sha256`` of a file (the
    definition in studio/modalities/image.py; a test holds the two equal)."""
    import hashlib
    h = hashlib.sha256(f"{im.mode}:{im.width}x{im.height}:".encode())
    h.update(im.tobytes())
    return h.hexdigest()


def _png_chunk_list(data: bytes) -> Optional[list]:
    """The raw chunks (length, type, data, CRC) of a PNG, or None if ``data`` is not a well-formed PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    out, i = [], 8
    while i < len(data):
        if i + 12 > len(data):
            return None
        n = int.from_bytes(data[i:i + 4], "big")
        if i + 12 + n > len(data):
            return None
        out.append(data[i:i + 12 + n])
        i += 12 + n
    return out


def png_same_but_c2pa(signed: bytes, unsigned: bytes) -> bool:
    """Whether ``signed`` is ``unsigned`` with only the C2PA manifest chunk (caBX) added: every other chunk,
    image data included, byte for byte in the same order, so both decode to the same pixels."""
    a, b = _png_chunk_list(signed), _png_chunk_list(unsigned)
    return a is not None and b is not None and [c for c in a if c[4:8] != b"caBX"] == b


# -------------------------------------------------------------------------------------------------- audio
def as_audio(samples) -> np.ndarray:
    x = np.asarray(samples)
    if x.dtype.kind in "iu":
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    x = x.astype(np.float32)
    if x.ndim == 2 and x.shape[0] in (1, 2) and x.shape[1] > 8:   # (channels, n) -> (n, channels)
        x = x.T
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim not in (1, 2) or x.size == 0:
        raise MediaError("audio must be a non-empty array shaped (n,) or (n, channels)")
    if not np.all(np.isfinite(x)):
        raise MediaError("audio contains NaN or inf")
    return np.clip(x, -1.0, 1.0)


def wav_bytes(x: np.ndarray, sr: int) -> bytes:
    ch = 1 if x.ndim == 1 else x.shape[1]
    pcm = (np.clip(x, -1, 1) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(ch)
        w.setsampwidth(2)
        w.setframerate(int(sr))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def encode_audio(x: np.ndarray, sr: int, fmt: str, bitrate: str = "192k") -> bytes:
    wav = wav_bytes(x, sr)
    if fmt == "wav":
        return wav
    if fmt == "flac":
        return _run(["-f", "wav", "-i", "pipe:0", "-map_metadata", "-1", "-c:a", "flac", "-f", "flac", "pipe:1"],
                    wav)
    if fmt == "mp3":
        return _run(["-f", "wav", "-i", "pipe:0", "-map_metadata", "-1", "-c:a", "libmp3lame", "-b:a", bitrate,
                     "-f", "mp3", "pipe:1"], wav)
    raise MediaError(f"{fmt} is not an audio format")


def probe_audio_rate(path: str) -> Tuple[int, int]:
    p = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path], capture_output=True)
    m = re.search(r"Audio: [^\n]*?(\d+) Hz(?:, ([a-z0-9.]+))?", p.stderr.decode(errors="replace"))
    if not m:
        raise MediaError("no audio stream found")
    ch = {"mono": 1, "stereo": 2}.get(m.group(2) or "", 2)
    return int(m.group(1)), ch


def _check_duration(seconds: float, max_seconds: float, *, truncated: bool = False) -> None:
    if seconds > max_seconds:
        length = f"longer than {_duration(max_seconds)}" if truncated else f"{_duration(seconds)} long"
        raise MediaError(f"audio is {length}: at most {_duration(max_seconds)} can be decoded")


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def decode_audio(data: bytes, fmt: str, max_seconds: float = MAX_AUDIO_SECONDS) -> Tuple[np.ndarray, int]:
    """-> (float32 samples (n,) or (n, ch), sample rate) at the file's native rate. Longer audio than
    `max_seconds` is refused (MediaError) before its samples are allocated."""
    if fmt == "wav":
        try:
            with wave.open(io.BytesIO(data)) as w:
                if w.getsampwidth() == 2:
                    sr, ch = w.getframerate(), w.getnchannels()
                    # A streamed WAV (ffmpeg to a pipe) declares a placeholder length of ~4 G frames: the bytes
                    # actually present bound the real length.
                    frames = min(w.getnframes(), len(data) // (2 * max(1, ch)))
                    _check_duration(frames / max(1, sr), max_seconds)
                    x = np.frombuffer(w.readframes(frames), "<i2").astype(np.float32) / 32768.0
                    return (x if ch == 1 else x.reshape(-1, ch)), sr
        except (wave.Error, EOFError):
            pass
    with tempfile.TemporaryDirectory() as td:
        path = os.path.join(td, "in." + fmt)
        Path(path).write_bytes(data)
        sr, ch = probe_audio_rate(path)
        # One sample past the limit tells "too long" apart from "exactly the limit" without decoding the rest.
        raw = _run(["-i", path, "-vn", "-t", f"{max_seconds + 1.0 / sr:.6f}", "-f", "f32le", "-acodec",
                    "pcm_f32le", "-ac", str(ch), "pipe:1"])
    x = np.frombuffer(raw, "<f4")
    _check_duration(len(x) / ch / sr, max_seconds, truncated=True)
    return (x if ch == 1 else x.reshape(-1, ch)), sr


# -------------------------------------------------------------------------------------------------- video
def as_frames(frames) -> np.ndarray:
    from PIL import Image
    if isinstance(frames, (list, tuple)):
        frames = np.stack([np.asarray(f.convert("RGB")) if isinstance(f, Image.Image) else np.asarray(f)
                           for f in frames])
    a = np.asarray(frames)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8) if a.dtype.kind == "f" else a.astype(np.uint8)
    if a.ndim != 4 or a.shape[-1] != 3 or len(a) == 0:
        raise MediaError("video frames must be shaped (T, H, W, 3) RGB")
    if a.shape[1] % 2 or a.shape[2] % 2:
        raise MediaError(f"H.264 (yuv420p) needs even width and height, got {a.shape[2]}x{a.shape[1]}")
    return a


def encode_mp4(frames: np.ndarray, fps: float, audio: Optional[Tuple[np.ndarray, int]], crf: int = 18) -> bytes:
    t, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "out.mp4")
        args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps}", "-i", "pipe:0"]
        if audio is not None:
            ap = os.path.join(td, "a.wav")
            Path(ap).write_bytes(wav_bytes(audio[0], audio[1]))
            args += ["-i", ap, "-c:a", "aac", "-b:a", "160k", "-shortest"]
        args += ["-map_metadata", "-1", "-c:v", "libx264", "-preset", "medium", "-crf", str(int(crf)),
                 "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", out]
        _run(args, frames.tobytes())
        return Path(out).read_bytes()


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """Animated GIF, looping. One palette for the whole clip (palettegen over every frame), so flat colours keep
    one index from frame to frame (no palette flicker) and the watermark's small colour offsets get palette
    entries of their own; Floyd-Steinberg error diffusion keeps local mean colours, which is what the
    low-frequency video mark is read from. GIF delays are whole centiseconds: fps is rounded to that."""
    t, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "out.gif")
        _run(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps}", "-i", "pipe:0",
              "-map_metadata", "-1", "-vf",
              "split[a][b];[a]palettegen=max_colors=256:stats_mode=full[p];[b][p]paletteuse=dither=floyd_steinberg",
              "-loop", "0", "-f", "gif", out], frames.tobytes())
        return Path(out).read_bytes()


def encode_video(frames: np.ndarray, fps: float, fmt: str, audio: Optional[Tuple[np.ndarray, int]] = None,
                 crf: int = 18) -> bytes:
    if fmt == "mp4":
        return encode_mp4(frames, fps, audio, crf=crf)
    if fmt == "gif":
        if audio is not None:
            raise MediaError("GIF has no audio track; seal the clip with its soundtrack as fmt='mp4'")
        return encode_gif(frames, fps)
    raise MediaError(f"{fmt} is not a video format we can seal (use mp4 or gif)")


# Bounds for clips from users (vid2vid input, previews of uploads): a short WebM can declare 8k frames or decode
# to tens of thousands of frames, so frames, pixels a frame and decoded bytes are all capped, counted while
# decoding and refused the moment one is passed.
MAX_DECODE_FRAMES = 1200
MAX_DECODE_BYTES = 2 << 30
MAX_VIDEO_INPUT_BYTES = 512 << 20
_VIDEO_CONTAINERS = {"mp4": "mp4", "mov": "mov", "webm": "webm", "gif": "gif"}


def sniff_video(data: bytes) -> Optional[str]:
    """Container of a clip from its magic bytes: 'mp4' | 'mov' | 'webm' (also Matroska) | 'gif', else None."""
    if data[4:8] == b"ftyp":
        return "mov" if data[8:12] == b"qt  " else "mp4"
    if data[4:8] in (b"moov", b"mdat", b"wide", b"free"):     # old QuickTime files start without ftyp
        return "mov"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def _size(n: float) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{int(n):,} bytes"


def _read_frames(path: str, *, max_frames: int, max_pixels: int, max_bytes: int, refuse_more: bool):
    """(frames list, meta). ``refuse_more``: more than ``max_frames`` frames is an error (else: the first ones)."""
    import imageio_ffmpeg
    gen = None
    try:
        gen = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24",
                                         output_params=["-frames:v", str(max_frames + int(refuse_more))])
        meta = next(gen)
        w, h = meta["size"]
        if w * h > max_pixels:
            raise MediaError(f"video frames are {w}x{h}: at most {max_pixels:,} pixels a frame can be decoded")
        frames = []
        for f in gen:
            if len(frames) == max_frames:
                raise MediaError(f"video has more than {max_frames} frames: at most {max_frames} can be decoded")
            if (len(frames) + 1) * w * h * 3 > max_bytes:
                raise MediaError(f"video decodes to more than {_size(max_bytes)} of frames ({w}x{h}): "
                                 f"at most {_size(max_bytes)} can be decoded")
            frames.append(np.frombuffer(f, np.uint8).reshape(h, w, 3))
    except (RuntimeError, StopIteration, OSError, KeyError, ValueError) as e:
        msg = " ".join(str(e).split())[:300]
        raise MediaError(f"cannot decode video: {msg or type(e).__name__}")
    finally:
        if gen is not None:
            gen.close()
    if not frames:
        raise MediaError("video has no decodable frames")
    return frames, meta


def decode_video_frames(data: bytes, fmt: str = "mp4", max_frames: int = 48, with_info: bool = False):
    """The first ``max_frames`` frames of a clip (mp4 / gif / webm / mov bytes) as (T, H, W, 3) uint8 RGB;
    frames over MAX_VIDEO_FRAME_PIXELS are refused before any is decoded. For the watermark read-back and
    verify, which only need a bounded sample. ``with_info``: also {"fps", "duration_s", "width", "height",
    "frames"} from the container header (frames: counted when all were decoded, else fps x duration)."""
    with tempfile.TemporaryDirectory() as td:
        path = os.path.join(td, "in." + _VIDEO_CONTAINERS.get(fmt, "mp4"))
        Path(path).write_bytes(data)
        frames, meta = _read_frames(path, max_frames=max_frames + 1, max_pixels=MAX_VIDEO_FRAME_PIXELS,
                                    max_bytes=MAX_DECODE_BYTES, refuse_more=False)
    arr = np.stack(frames[:max_frames])
    if not with_info:
        return arr
    fps = float(meta.get("fps") or 0.0)
    dur = float(meta.get("duration") or 0.0)
    n = len(frames) if len(frames) <= max_frames else (int(round(fps * dur)) or None)
    return arr, {"frames": n, "fps": round(fps, 3) or None, "duration_s": round(dur, 3) or None,
                 "width": int(arr.shape[2]), "height": int(arr.shape[1])}


def decode_mp4_frames(data: bytes, max_frames: int = 48) -> np.ndarray:
    return decode_video_frames(data, "mp4", max_frames)


def decode_video(data_or_path, *, max_frames: int = MAX_DECODE_FRAMES, max_pixels: int = MAX_VIDEO_FRAME_PIXELS,
                 max_bytes: int = MAX_DECODE_BYTES) -> Tuple[np.ndarray, float]:
    """A whole clip from a user (MP4, MOV, WebM/Matroska, GIF; bytes or a path) -> (frames (T, H, W, 3) uint8
    RGB, fps). Refuses with one-line MediaError: unknown container, a file over MAX_VIDEO_INPUT_BYTES, frames
    over ``max_pixels``, more than ``max_frames`` frames, more than ``max_bytes`` of decoded frames."""
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        data = bytes(data_or_path)
        if len(data) > MAX_VIDEO_INPUT_BYTES:
            raise MediaError(f"video file is {_size(len(data))}: at most {_size(MAX_VIDEO_INPUT_BYTES)} "
                             "can be decoded")
    else:
        p = Path(data_or_path)
        try:
            size = p.stat().st_size
        except OSError as e:
            raise MediaError(f"cannot read video file {p}: {e.strerror or e}")
        if size > MAX_VIDEO_INPUT_BYTES:
            raise MediaError(f"video file {p.name} is {_size(size)}: at most {_size(MAX_VIDEO_INPUT_BYTES)} "
                             "can be decoded")
        data = p.read_bytes()
    if not data:
        raise MediaError("video file is empty")
    fmt = sniff_video(data)
    if fmt is None:
        raise MediaError("not a video clip we can read (MP4, MOV, WebM/Matroska or GIF)")
    with tempfile.TemporaryDirectory() as td:
        path = os.path.join(td, "in." + fmt)
        Path(path).write_bytes(data)
        frames, meta = _read_frames(path, max_frames=max_frames, max_pixels=max_pixels, max_bytes=max_bytes,
                                    refuse_more=True)
    fps = float(meta.get("fps") or 0.0)
    if not (0 < fps <= 1000):
        fps = 0.0       # unknown (ffmpeg found no rate); the caller picks one
    return np.stack(frames), fps
