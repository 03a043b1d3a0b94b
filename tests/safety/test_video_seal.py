"""Clips: MP4 and GIF sealed and verified, WebM refused, tamper caught, parents recorded, decode bounded."""
import subprocess

import numpy as np
import pytest

from safety import SealError, seal_image, seal_video, verify
from safety import media as M
from safety.config import COMPOSITE
from safety.watermark import ImageWatermarker, VideoWatermarker, decode_codeword
from safety_testkit import CG, frames, photo

NEEDLE = "needle-7f3a"      # a params value whose bytes sit inside the signed manifest


def flat_clip(n: int = 8, size: int = 256, seed: int = 0, bg=(255, 255, 255)) -> np.ndarray:
    """The studio's mini-world look: flat-colour shapes gliding over a plain (here saturated) background."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    shapes = [(r.uniform(40, size - 40), r.uniform(40, size - 40), r.uniform(15, 40), r.integers(0, 255, 3),
               r.uniform(-4, 4, 2)) for _ in range(2)]
    out = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        f = np.empty((size, size, 3), np.uint8)
        f[:] = bg
        for cx, cy, rad, col, v in shapes:
            f[(xx - cx - v[0] * k) ** 2 + (yy - cy - v[1] * k) ** 2 < rad ** 2] = col
        out[k] = f
    return out


def _ff(args, data: bytes = None) -> bytes:
    return subprocess.run([M.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], input=data,
                          capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def sealed(dev_cfg):
    """One sealed clip per format (module scope: sealing a GIF costs ~1 s)."""
    return {fmt: seal_video(frames(12, 256, seed=3), fps=12, fmt=fmt, params={"tag": NEEDLE}, claim_generator=CG,
                            config=dev_cfg) for fmt in ("mp4", "gif")}


@pytest.mark.parametrize("fmt, mime", [("mp4", "video/mp4"), ("gif", "image/gif")])
def test_clip_formats_seal_and_verify(dev_cfg, sealed, fmt, mime):
    s = sealed[fmt]
    assert s.fmt == fmt and s.mime == mime and M.sniff(s.data) == fmt
    assert s.watermark_status == "embedded" and s.watermark_id
    rep = verify(s.data, dev_cfg)
    assert rep.state == "trusted" and rep.exit_code == 0, rep.render()
    assert rep.fmt == fmt and rep.watermark_id == s.watermark_id and rep.ledger_match
    assert rep.video["frames"] == 12 and rep.video["width"] == 256 and abs(rep.video["fps"] - 12) < 0.6
    assert "voted across frames" in rep.render()


def test_gif_is_an_animated_gif(sealed):
    from PIL import Image
    import io
    im = Image.open(io.BytesIO(sealed["gif"].data))
    assert im.format == "GIF" and im.n_frames == 12


@pytest.mark.parametrize("fmt", ["webm", "video/webm", "mkv"])
def test_webm_is_refused_in_one_line_naming_why(dev_cfg, fmt):
    with pytest.raises(SealError, match=r"cannot carry C2PA content credentials .* use fmt='mp4'") as e:
        seal_video(frames(2, 256), fps=2, fmt=fmt, params={}, claim_generator=CG, config=dev_cfg)
    assert "\n" not in str(e.value)


def test_gif_with_audio_fails_closed(dev_cfg):
    with pytest.raises(SealError, match="GIF has no audio track"):
        seal_video(frames(2, 256), fps=2, fmt="gif", audio=(np.zeros(44100, np.float32), 44100), params={},
                   claim_generator=CG, config=dev_cfg)


def _pixel_offset(data: bytes, fmt: str) -> int:
    if fmt == "mp4":
        return data.index(b"mdat") + 400
    first_image = data.index(b"\x2c\x00\x00\x00\x00")      # image descriptor at (0, 0): LZW pixel data follows
    return first_image + 200


@pytest.mark.parametrize("fmt", ["mp4", "gif"])
@pytest.mark.parametrize("where", ["pixels", "manifest"])
def test_one_flipped_byte_is_caught(dev_cfg, sealed, fmt, where):
    data = bytearray(sealed[fmt].data)
    pos = _pixel_offset(data, fmt) if where == "pixels" else data.index(NEEDLE.encode()) + 3
    data[pos] ^= 0x01
    rep = verify(bytes(data), dev_cfg)
    assert rep.state == "invalid" and rep.exit_code == 1, rep.render()


@pytest.mark.parametrize("parent_kind", ["png", "mp4"])
def test_image_to_video_and_video_to_video_record_the_parent(dev_cfg, parent_kind):
    if parent_kind == "png":
        parent = seal_image(photo(256, seed=9), fmt="png", params={}, claim_generator=CG, config=dev_cfg).data
    else:
        parent = seal_video(frames(4, 256, seed=9), fps=4, params={}, claim_generator=CG, config=dev_cfg).data
    s = seal_video(frames(4, 256, seed=10), fps=4, params={"mode": f"{parent_kind}-to-video"}, claim_generator=CG,
                   parent=parent, config=dev_cfg)
    rep = verify(s.data, dev_cfg)
    assert rep.exit_code == 0, rep.render()
    assert [a["action"] for a in rep.manifest["actions"]] == ["c2pa.opened", "c2pa.edited"]
    assert rep.manifest["digital_source_type"] == COMPOSITE
    (ing,) = rep.manifest["ingredients"]
    assert ing["relationship"] == "parentOf" and ing["has_manifest"]
    assert ing["format"] == M.MIME[parent_kind] and ing["title"] == f"parent.{parent_kind}"


def test_unsigned_user_clip_parent_is_recorded(dev_cfg):
    """A user's own clip (no credentials of its own) as vid2vid input still becomes the ingredient."""
    parent = M.encode_mp4(frames(4, 256, seed=11), 4.0, None)
    s = seal_video(frames(4, 256, seed=12), fps=4, params={}, claim_generator=CG, parent=parent,
                   parent_format="mp4", config=dev_cfg)
    (ing,) = verify(s.data, dev_cfg).manifest["ingredients"]
    assert ing["relationship"] == "parentOf" and not ing["has_manifest"]


# ---------------------------------------------------------------------------------------------- the mark
@pytest.mark.parametrize("bg", [(255, 255, 255), (0, 0, 0), (128, 128, 128)])
def test_flat_shapes_on_plain_backgrounds_take_the_mark(dev_cfg, bg):
    s = seal_video(flat_clip(8, 256, seed=1, bg=bg), fps=8, params={}, claim_generator=CG, config=dev_cfg)
    assert s.watermark_status == "embedded", bg


def test_low_frequency_layer_survives_crf28_half_size_and_trim(tmp_path):
    vw = VideoWatermarker()
    wid = bytes.fromhex("0123456789abcdef")
    marked = vw.embed(flat_clip(16, 256, seed=2, bg=(225, 210, 170)), wid)
    src = tmp_path / "a.mp4"
    src.write_bytes(M.encode_mp4(marked, 8.0, None))
    x264 = ["-c:v", "libx264", "-crf", "28", "-pix_fmt", "yuv420p"]
    for pre, post in (([], x264), ([], ["-vf", "scale=128:128", *x264]), (["-ss", "1"], x264)):
        out = tmp_path / "b.mp4"
        _ff([*pre, "-i", str(src), *post, str(out)])
        fr, _ = M.decode_video(out)
        assert decode_codeword(vw.lf.soft(fr), vw.key)[0] == wid.hex(), (pre, post)


def test_clips_marked_by_the_v1_per_frame_mark_still_read():
    img = ImageWatermarker()
    wid = bytes.fromhex("fedcba9876543210")
    v1 = np.stack([img.embed(f, wid) for f in frames(6, 256, seed=4)])
    assert VideoWatermarker().detect(v1)[0] == wid.hex()


def test_unmarked_clips_give_no_id():
    vw = VideoWatermarker()
    clips = [frames(8, 256, seed=20 + i) for i in range(3)] + [flat_clip(8, 256, seed=30 + i, bg=bg)
                                                                for i, bg in enumerate([(255,) * 3, (0,) * 3])]
    for c in clips:
        fr = M.decode_video_frames(M.encode_mp4(c, 8.0, None), "mp4")
        assert vw.detect(fr) == (None, 0.0)


def test_verify_of_an_unmarked_unsigned_clip(dev_cfg):
    rep = verify(M.encode_mp4(frames(6, 256, seed=40), 6.0, None), dev_cfg)
    assert rep.state == "none" and rep.exit_code == 2 and not rep.watermark_found
    assert rep.video["frames"] == 6


# ---------------------------------------------------------------------------------------------- decode
@pytest.fixture(scope="module")
def small_clips(tmp_path_factory):
    """The same 5-frame 64x48 clip in every container a user may upload."""
    d = tmp_path_factory.mktemp("clips")
    raw = np.zeros((5, 48, 64, 3), np.uint8)
    raw[:, :, :32] = (200, 40, 40)
    src = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48", "-r", "10", "-i", "pipe:0"]
    outs = {"mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p"], "mov": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
            "webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"], "gif": []}
    paths = {}
    for ext, args in outs.items():
        paths[ext] = d / f"clip.{ext}"
        _ff([*src, *args, str(paths[ext])], raw.tobytes())
    return paths


@pytest.mark.parametrize("ext", ["mp4", "mov", "webm", "gif"])
def test_decode_video_reads_user_containers(small_clips, ext):
    data = small_clips[ext].read_bytes()
    assert M.sniff_video(data) == ("mov" if ext == "mov" else ext)
    fr, fps = M.decode_video(data)
    assert fr.shape == (5, 48, 64, 3) and fr.dtype == np.uint8 and abs(fps - 10) < 0.5
    assert abs(int(fr[0, 24, 10, 0]) - 200) < 30 and fr[0, 24, 50].max() < 30       # red left, black right
    assert M.decode_video(small_clips[ext])[0].shape == fr.shape                     # a path works too


def test_decode_video_refuses_too_many_frames(small_clips):
    with pytest.raises(M.MediaError, match="more than 4 frames: at most 4"):
        M.decode_video(small_clips["mp4"], max_frames=4)
    assert len(M.decode_video(small_clips["mp4"], max_frames=5)[0]) == 5


def test_decode_video_refuses_large_frames_and_totals(small_clips):
    with pytest.raises(M.MediaError, match="64x48: at most 2,048 pixels"):
        M.decode_video(small_clips["webm"], max_pixels=2048)
    with pytest.raises(M.MediaError, match="more than 18,432 bytes of frames"):
        M.decode_video(small_clips["gif"], max_bytes=64 * 48 * 3 * 2)


def test_decode_video_refuses_non_clips_and_huge_files(small_clips, monkeypatch, tmp_path):
    with pytest.raises(M.MediaError, match="not a video clip we can read"):
        M.decode_video(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(M.MediaError, match="empty"):
        M.decode_video(b"")
    with pytest.raises(M.MediaError, match="cannot decode video"):
        data = small_clips["mp4"].read_bytes()
        M.decode_video(data[: len(data) // 2])                 # ffmpeg's moov box is at the end: cut off
    with pytest.raises(M.MediaError, match="cannot read video file"):
        M.decode_video(tmp_path / "missing.mp4")
    monkeypatch.setattr(M, "MAX_VIDEO_INPUT_BYTES", 1000)
    with pytest.raises(M.MediaError, match="at most 1,000 bytes can be decoded"):
        M.decode_video(small_clips["mp4"])
