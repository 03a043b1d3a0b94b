"""The fast image seal (issue 19) against the implementation it replaced.

Reference embed = invisible-watermark's own ``WatermarkEncoder(...).encode(bgr, "dwtDctSvd")`` (what
``ImageWatermarker.embed`` called before); reference read = the previous ``ImageWatermarker.votes`` (pywt +
LAPACK SVD per block), kept here verbatim. Old-sealed files must verify with the new code and the reverse.
"""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import pywt
from PIL import Image

from safety import SafetyConfig, seal_image, verify
from safety import media as M
from safety import seal as S
from safety.watermark import (CODEWORD_BITS, ImageWatermarker, _haar_dwt2, _haar_idwt2, decode_codeword,
                              encode_codeword)

from safety_testkit import CG, photo


# ------------------------------------------------------------------------------------ the old implementation
def ref_embed(rgb: np.ndarray, wm_id: bytes) -> np.ndarray:
    from imwatermark import WatermarkEncoder
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2BGR)
    enc = WatermarkEncoder()
    enc.set_watermark("bits", [int(b) for b in encode_codeword(wm_id)])
    out = enc.encode(bgr, "dwtDctSvd")
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB)


def ref_votes(rgb: np.ndarray) -> np.ndarray:
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    ca, _ = pywt.dwt2(yuv[: h // 4 * 4, : w // 4 * 4, 1], "haar")
    r, c = ca.shape[0] // 4, ca.shape[1] // 4
    blocks = ca[: r * 4, : c * 4].reshape(r, 4, c, 4).transpose(0, 2, 1, 3).reshape(-1, 4, 4)
    s0 = np.linalg.svd(blocks, compute_uv=False)[:, 0]
    v = ((s0 % 36.0) > 18.0).astype(np.float64)
    idx = np.arange(v.size) % CODEWORD_BITS
    return np.bincount(idx, weights=v, minlength=CODEWORD_BITS) / np.maximum(
        np.bincount(idx, minlength=CODEWORD_BITS), 1)


def ref_detect(rgb: np.ndarray):
    return decode_codeword(2.0 * ref_votes(rgb) - 1.0)


class RefImageWatermarker(ImageWatermarker):
    """The pre-issue-19 image watermarker (library embed, pywt + LAPACK read), for the old-seal round trips."""

    def embed(self, media, wm_id):
        out = Image.fromarray(ref_embed(self._rgb(media), wm_id))
        if isinstance(media, Image.Image) and media.mode == "RGBA":
            out.putalpha(media.getchannel("A"))
        return out

    def votes(self, media):
        rgb = self._rgb(media)
        return None if rgb.shape[0] * rgb.shape[1] < self.MIN_PIXELS else ref_votes(rgb)


def ref_encode_image(img, fmt, png_text=None, quality=None):
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    for k, v in (png_text or {}).items():
        info.add_text(str(k), str(v))
    b = io.BytesIO()
    img.save(b, "PNG", pnginfo=info, compress_level=6)
    return b.getvalue()


# ------------------------------------------------------------------------------------------------ media
def _gen(kind: str, h: int, w: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    if kind == "photo":
        return np.asarray(photo(max(h, w), seed))[:h, :w].copy()
    if kind == "noise":
        return np.clip(r.normal(128, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    if kind == "shapes":        # flat regions: many blocks with the same, exactly representable singular value
        a = np.zeros((h, w, 3), np.uint8) + r.integers(0, 256, 3).astype(np.uint8)
        for _ in range(12):
            x0, y0 = r.integers(0, w), r.integers(0, h)
            a[y0: y0 + r.integers(10, h // 2), x0: x0 + r.integers(10, w // 2)] = r.integers(0, 256, 3)
        return a
    if kind == "flat126":       # U = 126: s0 of a flat block is 1008 = 28 * 36, the floor boundary of the mark
        px = next(np.array([[[128, 128, b]]], np.uint8) for b in range(256)
                  if cv2.cvtColor(np.array([[[128, 128, b]]], np.uint8), cv2.COLOR_RGB2YUV)[0, 0, 1] == 126)
        a = np.tile(px, (h, w, 1))
        a[::9, ::5] //= 2
        return a
    raise ValueError(kind)


CASES = [("photo", 512, 512, 1), ("photo", 320, 452, 2), ("noise", 384, 384, 3), ("shapes", 512, 512, 4),
         ("shapes", 260, 300, 5), ("flat126", 256, 264, 6), ("photo", 1024, 1024, 7)]


# -------------------------------------------------------------------------------------------------- tests
def test_haar_is_bit_identical_to_pywt():
    x = np.random.default_rng(0).integers(0, 256, (64, 96)).astype(np.uint8)
    ca, (ch, cv, cd) = pywt.dwt2(x, "haar")
    mca, (mch, mcv, mcd) = _haar_dwt2(x)
    for a, b in ((ca, mca), (ch, mch), (cv, mcv), (cd, mcd)):
        assert np.array_equal(a, b)
    ca2 = ca + np.random.default_rng(1).normal(0, 3, ca.shape)
    assert np.array_equal(pywt.idwt2((ca2, (cv, ch, cd)), "haar"), _haar_idwt2(ca2, cv, ch, cd))


@pytest.mark.parametrize("kind,h,w,seed", CASES)
def test_embed_is_bit_identical_to_the_library(kind, h, w, seed):
    rgb = _gen(kind, h, w, seed)
    wm_id = bytes([seed, 1, 2, 3, 4, 5, 6, 7])
    new = ImageWatermarker().embed(rgb, wm_id)
    assert np.array_equal(new, ref_embed(rgb, wm_id))


@pytest.mark.parametrize("kind,h,w,seed", CASES)
def test_old_mark_reads_with_new_detector_and_new_mark_with_old(kind, h, w, seed):
    rgb = _gen(kind, h, w, seed)
    wm_id = bytes([9, seed, 2, 3, 4, 5, 6, 7])
    wm = ImageWatermarker()
    old_marked, new_marked = ref_embed(rgb, wm_id), wm.embed(rgb, wm_id)
    if kind != "flat126":       # a flat image may not take the mark at all (the seal then says so); same both ways
        assert wm.detect(old_marked)[0] == wm_id.hex()
        assert ref_detect(new_marked)[0] == wm_id.hex()
    assert wm.detect(old_marked) == ref_detect(old_marked)
    assert wm.detect(new_marked) == ref_detect(new_marked)


def _attacks(img: Image.Image):
    yield img
    for q in (90, 75):
        b = io.BytesIO()
        img.save(b, "JPEG", quality=q)
        yield Image.open(io.BytesIO(b.getvalue())).convert("RGB")
    w, h = img.size
    yield img.resize((w // 2, h // 2), Image.BICUBIC).resize((w, h), Image.BICUBIC)
    yield img.crop((w // 20, h // 20, w - w // 20, h - h // 20))
    yield Image.fromarray(np.clip(np.asarray(img).astype(int) * 1.1, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("kind,h,w,seed", CASES[:5])
def test_votes_equal_the_old_detector_marked_unmarked_and_attacked(kind, h, w, seed):
    rgb = _gen(kind, h, w, seed)
    wm = ImageWatermarker()
    for src in (rgb, wm.embed(rgb, bytes(8))):
        for img in _attacks(Image.fromarray(src)):
            a = np.asarray(img)
            if a.shape[0] * a.shape[1] < wm.MIN_PIXELS:
                continue
            assert np.array_equal(wm.votes(img), ref_votes(a))


def test_rgba_embed_keeps_alpha_and_matches():
    rgb = _gen("photo", 300, 300, 11)
    img = Image.fromarray(rgb).convert("RGBA")
    img.putalpha(Image.fromarray(rgb[..., 0]))
    out = ImageWatermarker().embed(img, b"\x05" * 8)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], rgb[..., 0])
    assert np.array_equal(np.asarray(out)[..., :3], ref_embed(rgb, b"\x05" * 8))


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_fast_png_is_lossless_and_keeps_text(mode):
    for kind, seed in (("photo", 1), ("shapes", 2), ("noise", 3)):
        img = Image.fromarray(_gen(kind, 200, 310, seed))
        if mode == "RGBA":
            img.putalpha(Image.fromarray(_gen("noise", 200, 310, seed)[..., 1]))
        text = {"parameters": "a cat\nSteps: 20", "unicode": "日本語 prompt", "empty": ""}
        data = M.encode_image(img, "png", png_text=text)
        back = M.decode_image(data)
        assert back.mode == mode and np.array_equal(np.asarray(back), np.asarray(img))
        assert back.text == text
        cv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert cv.shape == (200, 310, 4 if mode == "RGBA" else 3)


def test_png_with_info_keeps_pillows_chunks():
    img = Image.fromarray(_gen("photo", 64, 64, 1))
    img.info["icc_profile"] = b"not really a profile, but Pillow writes what it is given"
    back = M.decode_image(M.encode_image(img, "png"))
    assert back.info["icc_profile"] == img.info["icc_profile"]
    assert np.array_equal(np.asarray(back), np.asarray(img))


def test_old_sealed_file_verifies_with_new_code_and_new_with_old(monkeypatch, tmp_path):
    cfg = SafetyConfig(config_dir=tmp_path)
    img = photo(384, 21)
    new = seal_image(img, params={"seed": 1}, claim_generator=CG, config=cfg, watermark_id="0123456789abcdef")
    with monkeypatch.context() as mp:       # the old seal: library embed, pywt/LAPACK read-back, Pillow level 6
        mp.setitem(S.WATERMARKERS, "image", RefImageWatermarker())
        mp.setattr(M, "encode_image", ref_encode_image)
        old = seal_image(img, params={"seed": 1}, claim_generator=CG, config=cfg, watermark_id="0123456789abcdef")
        assert old.watermark_status == "embedded"
        rep = verify(new.data, cfg)         # new file, old detector
        assert rep.state == "trusted" and rep.watermark_id == "0123456789abcdef"
    rep = verify(old.data, cfg)             # old file, new detector
    assert rep.state == "trusted" and rep.watermark_id == "0123456789abcdef" and rep.ledger_match
    # same pixels either way (only the PNG compression differs)
    assert np.array_equal(np.asarray(M.decode_image(old.data)), np.asarray(M.decode_image(new.data)))


def test_fail_closed_when_the_mark_does_not_read_back(dev_cfg, monkeypatch):
    img = photo(320, 3)
    monkeypatch.setattr(ImageWatermarker, "votes", lambda self, media: np.full(CODEWORD_BITS, 0.5))
    s = seal_image(img, params={}, claim_generator=CG, config=dev_cfg)
    assert s.watermark_status == "not_embeddable" and s.watermark_id is None
    assert "c2pa.soft-binding" not in str(s.manifest)


def test_cached_signer_is_reused_and_each_seal_is_trusted(dev_cfg):
    from safety.pki import _c2pa_local
    outs = [seal_image(photo(256, i), params={"i": i}, claim_generator=CG, config=dev_cfg) for i in range(3)]
    assert len({o.sha256 for o in outs}) == 3
    for o in outs:
        assert verify(o.data, dev_cfg).state == "trusted"
    signers = {id(v[3]) for k, v in _c2pa_local.cache.items() if v[0] is dev_cfg}
    assert len(signers) == 1


def test_top_singular_certifies_only_what_it_got_right():
    from safety.watermark import _top_singular
    r = np.random.default_rng(5)
    B = np.concatenate([r.normal(0, 10, (500, 4, 4)) + 250,         # chroma-like: dominant DC
                        r.normal(0, 10, (200, 4, 4)),                  # zero-mean: small gaps
                        np.zeros((1, 4, 4)), 7.0 * np.eye(4)[None],   # zero and fully degenerate
                        np.diag([5.0, 5.0, 1.0, 0.0])[None]])
    s0, u, v, ok = _top_singular(B)
    U, S, Vt = np.linalg.svd(B)
    assert ok[:500].all() and not ok[-3:].any()
    ok_i = np.flatnonzero(ok)
    assert np.allclose(s0[ok_i], S[ok_i, 0], rtol=1e-13, atol=0)
    uv = u[:, :, None] * v[:, None, :]
    ref = U[:, :, :1] * Vt[:, None, 0, :]
    assert np.abs(uv[ok_i] - ref[ok_i]).max() < 1e-10
