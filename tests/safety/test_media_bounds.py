"""Decoding bounds: a small file must not turn into an unbounded allocation when the studio decodes it."""
import io
import subprocess
import wave

import numpy as np
import pytest

from safety import media as M

SR = 8000


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_audio_longer_than_the_limit_is_refused_naming_it(fmt):
    data = M.encode_audio(_tone(3.0), SR, fmt) if fmt == "mp3" else M.wav_bytes(_tone(3.0), SR)
    with pytest.raises(M.MediaError, match=r"audio is (3\.\d s long|longer than 1\.0 s): at most 1\.0 s"):
        M.decode_audio(data, fmt, max_seconds=1.0)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_audio_within_the_limit_decodes_whole(fmt):
    data = M.encode_audio(_tone(2.0), SR, fmt) if fmt == "mp3" else M.wav_bytes(_tone(2.0), SR)
    x, sr = M.decode_audio(data, fmt, max_seconds=5.0)
    assert sr == SR and abs(len(x) / sr - 2.0) < 0.25  # MP3 adds encoder padding


def test_video_frames_over_the_pixel_limit_are_refused(monkeypatch):
    frames = np.zeros((2, 64, 96, 3), np.uint8)
    data = M.encode_mp4(frames, 8, None)
    assert M.decode_mp4_frames(data).shape == (2, 64, 96, 3)
    monkeypatch.setattr(M, "MAX_VIDEO_FRAME_PIXELS", 64 * 64)
    with pytest.raises(M.MediaError, match="96x64"):
        M.decode_mp4_frames(data)


def test_streamed_wav_with_a_placeholder_length_decodes():
    """ffmpeg writing WAV to a pipe cannot seek back to fill in the length: the header says ~4 G frames."""
    raw = M.wav_bytes(_tone(2.0), SR)
    streamed = subprocess.run([M.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "wav", "-i", "pipe:0",
                               "-f", "wav", "pipe:1"], input=raw, capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(streamed)) as w:
        assert w.getnframes() / SR > 20 * 60  # the placeholder this test is about
    x, sr = M.decode_audio(streamed, "wav")
    assert sr == SR and abs(len(x) / sr - 2.0) < 0.05
