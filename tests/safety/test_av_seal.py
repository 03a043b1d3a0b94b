import subprocess

import numpy as np
import pytest

from safety import SealError, seal_audio, seal_video, verify
from safety.config import COMPOSITE, TRAINED
from safety.media import ffmpeg_exe
from safety_testkit import CG, frames, music

SR = 44100


@pytest.mark.parametrize("fmt, mime", [("wav", "audio/wav"), ("flac", "audio/flac"), ("mp3", "audio/mpeg")])
def test_audio_formats_seal_and_verify(dev_cfg, fmt, mime):
    s = seal_audio(music(6.0, SR, seed=1, stereo=(fmt == "flac")), sample_rate=SR, fmt=fmt,
                   params={"model": "tiny-audio", "seed": 3}, claim_generator=CG, config=dev_cfg)
    assert s.mime == mime
    assert s.watermark_status == "embedded", s.watermark_status
    rep = verify(s.data, dev_cfg)
    assert rep.state == "trusted" and rep.exit_code == 0, rep.render()
    assert [a["action"] for a in rep.manifest["actions"]] == ["c2pa.created"]
    assert rep.manifest["digital_source_type"] == TRAINED
    assert rep.watermark_id == s.watermark_id and rep.ledger_match


def test_audio_too_short_recorded(dev_cfg):
    s = seal_audio(music(0.5, SR), sample_rate=SR, fmt="wav", params={}, claim_generator=CG, config=dev_cfg)
    assert s.watermark_status == "too_short" and s.watermark_id is None
    assert verify(s.data, dev_cfg).manifest["watermark_status"] == "too_short"


def test_audio_edit_with_parent(dev_cfg):
    src = seal_audio(music(6.0, SR, seed=2), sample_rate=SR, fmt="wav", params={}, claim_generator=CG,
                     config=dev_cfg)
    e = seal_audio(music(6.0, SR, seed=3), sample_rate=SR, fmt="mp3", params={"mode": "continuation"},
                   claim_generator=CG, parent=src.data, config=dev_cfg)
    rep = verify(e.data, dev_cfg)
    assert rep.exit_code == 0
    assert [a["action"] for a in rep.manifest["actions"]] == ["c2pa.opened", "c2pa.edited"]
    assert rep.manifest["digital_source_type"] == COMPOSITE
    assert rep.manifest["ingredients"][0]["relationship"] == "parentOf"
    assert rep.manifest["ingredients"][0]["has_manifest"]


def test_flip_one_byte_wav_is_tampered(dev_cfg):
    s = seal_audio(music(3.0, SR, seed=4), sample_rate=SR, fmt="wav", params={}, claim_generator=CG,
                   config=dev_cfg)
    data = bytearray(s.data)
    pos = data.index(b"data") + 8 + 20000
    data[pos] ^= 0x01
    rep = verify(bytes(data), dev_cfg)
    assert rep.state == "invalid" and rep.exit_code == 1, rep.render()


def test_audio_mark_survives_mp3_reencode_and_traces(dev_cfg, tmp_path):
    s = seal_audio(music(8.0, SR, seed=5), sample_rate=SR, fmt="wav", params={"seed": 5}, claim_generator=CG,
                   config=dev_cfg)
    src, dst = tmp_path / "a.wav", tmp_path / "b.mp3"
    src.write_bytes(s.data)
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(src), "-map_metadata", "-1", "-c:a",
                    "libmp3lame", "-b:a", "128k", str(dst)], check=True)
    rep = verify(dst, dev_cfg)
    assert rep.state == "none" and rep.exit_code == 2
    assert rep.watermark_id == s.watermark_id and rep.ledger_match
    assert rep.recovered_manifest["params"] == {"seed": 5}


@pytest.mark.parametrize("with_audio", [False, True])
def test_mp4_seal_and_verify(dev_cfg, with_audio):
    audio = (music(1.0, SR, seed=6), SR) if with_audio else None
    s = seal_video(frames(12, 256), fps=12, audio=audio, params={"frames": 12}, claim_generator=CG,
                   config=dev_cfg)
    assert s.fmt == "mp4" and s.mime == "video/mp4"
    assert s.watermark_status == "embedded"
    rep = verify(s.data, dev_cfg)
    assert rep.state == "trusted" and rep.exit_code == 0, rep.render()
    assert rep.manifest["digital_source_type"] == TRAINED
    assert rep.watermark_id == s.watermark_id
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", "pipe:0"], input=s.data, capture_output=True)
    err = probe.stderr.decode()
    assert "h264" in err and (("aac" in err) == with_audio)


def test_flip_one_byte_mp4_is_tampered(dev_cfg):
    s = seal_video(frames(6, 256, seed=2), fps=6, params={}, claim_generator=CG, config=dev_cfg)
    data = bytearray(s.data)
    pos = data.index(b"mdat") + 400
    data[pos] ^= 0x01
    rep = verify(bytes(data), dev_cfg)
    assert rep.state == "invalid" and rep.exit_code == 1, rep.render()


def test_video_odd_size_and_wrong_kind_fail_closed(dev_cfg):
    with pytest.raises(SealError, match="even"):
        seal_video(np.zeros((2, 257, 256, 3), np.uint8), fps=2, params={}, claim_generator=CG, config=dev_cfg)
    with pytest.raises(SealError, match="not an audio format"):
        seal_audio(music(1.0), sample_rate=SR, fmt="png", params={}, claim_generator=CG, config=dev_cfg)
