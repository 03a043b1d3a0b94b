"""What the seal does once instead of per item (issue 19): the ledger's writer connection, the delivered file's
pixel hash taken from the read-back decode. Each must give what the per-item way gave."""
from __future__ import annotations

import io
import sqlite3
import threading

import numpy as np
import pytest
from PIL import Image

from safety import SafetyConfig, seal_image
from safety import media as M
from safety.ledger import Ledger
from safety_testkit import photo

CG = "diffusion-studio/0.1.0 (test)"


def _rows(path):
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT watermark_id FROM manifests ORDER BY id")]
    finally:
        con.close()


def _rec(ledger, wid):
    ledger.record(watermark_id=wid, watermark_status="embedded", watermark_alg="a", instance_id="i", fmt="png",
                  sha256="0" * 64, manifest={"id": wid})


def test_ledger_rows_are_committed_and_seen_by_a_fresh_reader(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    _rec(led, "a" * 16)
    _rec(Ledger(tmp_path / "ledger.sqlite"), "b" * 16)  # another Ledger object on the same file
    assert _rows(tmp_path / "ledger.sqlite") == ["a" * 16, "b" * 16]  # committed, another connection reads them
    assert led.lookup("b" * 16)["manifest"] == {"id": "b" * 16}
    con = sqlite3.connect(tmp_path / "ledger.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_a_deleted_ledger_is_recreated_not_written_to_the_unlinked_file(tmp_path):
    path = tmp_path / "ledger.sqlite"
    led = Ledger(path)
    _rec(led, "1" * 16)
    for p in tmp_path.glob("ledger.sqlite*"):
        p.unlink()
    _rec(led, "2" * 16)
    assert path.exists() and _rows(path) == ["2" * 16]


def test_ledger_writes_from_several_threads(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    ids = [f"{i:016x}" for i in range(24)]
    ts = [threading.Thread(target=lambda chunk=ids[k::4]: [_rec(led, w) for w in chunk]) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(_rows(tmp_path / "ledger.sqlite")) == ids


def _studio_pixel_sha256(data):
    from studio.modalities.image import pixel_sha256

    return pixel_sha256(data)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_sealed_png_carries_the_pixel_hash_of_its_own_decoded_pixels(dev_cfg, mode):
    img = photo(320, 3)
    if mode == "RGBA":
        img.putalpha(Image.fromarray(np.random.default_rng(3).integers(0, 256, (320, 320), dtype=np.uint8)))
    s = seal_image(img, params={"s": 1}, claim_generator=CG, config=dev_cfg, png_text={"parameters": "x"},
                   watermark_id="0123456789abcdef")
    assert s.watermark_status == "embedded" and s.watermark_id == "0123456789abcdef"
    assert s.pixel_sha256 == M.pixels_sha256(M.decode_image(s.data)) == _studio_pixel_sha256(s.data)


def test_pixel_hash_left_empty_where_the_seal_did_not_decode(dev_cfg):
    small = seal_image(Image.new("RGB", (64, 64), (10, 200, 30)), params={}, claim_generator=CG, config=dev_cfg)
    assert small.watermark_status == "too_small" and small.pixel_sha256 == ""
    jpg = seal_image(Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)),
                     fmt="jpeg", params={}, claim_generator=CG, config=dev_cfg)
    assert jpg.pixel_sha256 == ""


def test_png_chunk_check_refuses_any_other_difference():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    png = buf.getvalue()
    manifest = M._png_chunk(b"caBX", b"jumbf bytes")
    signed = png[:33] + manifest + png[33:]                 # after IHDR, as c2pa puts it
    assert M.png_same_but_c2pa(signed, png)
    other = bytearray(signed)
    other[-20] ^= 1                                         # a byte of the image data
    assert not M.png_same_but_c2pa(bytes(other), png)
    assert not M.png_same_but_c2pa(signed + M._png_chunk(b"tEXt", b"k\x00v"), png)
    assert not M.png_same_but_c2pa(signed[:-3], png)        # truncated
    assert not M.png_same_but_c2pa(b"GIF89a" + signed[6:], png)


def test_other_config_dirs_get_their_own_ledger(tmp_path):
    a, b = SafetyConfig(config_dir=tmp_path / "a"), SafetyConfig(config_dir=tmp_path / "b")
    img = photo(256, 2)
    sa = seal_image(img, params={}, claim_generator=CG, config=a)
    sb = seal_image(img, params={}, claim_generator=CG, config=b)
    assert sa.watermark_id and sb.watermark_id and sa.watermark_id != sb.watermark_id
    assert _rows(a.ledger_path) == [sa.watermark_id] and _rows(b.ledger_path) == [sb.watermark_id]


@pytest.mark.parametrize("backend", ["zlib", "isal"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_png_writer_is_lossless_with_either_deflate(monkeypatch, backend, mode):
    import cv2

    if backend == "zlib":
        monkeypatch.setattr(M, "_isal_zlib", None)
    elif M._isal_zlib is None:
        pytest.skip("python-isal not installed")
    rng = np.random.default_rng(5)
    flat = np.zeros((120, 90, 4), np.uint8) + np.array([250, 3, 128, 255], np.uint8)
    for arr in (rng.integers(0, 256, (120, 90, 4), dtype=np.uint8), flat):
        img = Image.fromarray(arr[..., :4] if mode == "RGBA" else np.ascontiguousarray(arr[..., :3]), mode)
        data = M.encode_image(img, "png", png_text={"parameters": "a cat"})
        back = M.decode_image(data)
        assert back.mode == mode and np.array_equal(np.asarray(back), np.asarray(img)) and back.text["parameters"] == "a cat"
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (120, 90)
