import io
import json

import numpy as np
import pytest
from PIL import Image

from safety import SafetyConfig, SealError, TimestampError, seal_image, verify
from safety.config import COMPOSITE, TRAINED

from safety_testkit import CG, photo


def _actions(summary):
    return [a["action"] for a in summary["actions"]]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_image_formats_seal_and_verify_trusted(dev_cfg, fmt):
    s = seal_image(photo(320, 1), fmt=fmt, params={"seed": 7, "steps": 20}, claim_generator=CG, config=dev_cfg)
    assert s.fmt == fmt and s.mime == {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[fmt]
    assert s.watermark_status == "embedded" and len(s.watermark_id) == 16
    rep = verify(s.data, dev_cfg)
    assert rep.state == "trusted" and rep.exit_code == 0, rep.render()
    m = rep.manifest
    assert _actions(m) == ["c2pa.created"]
    assert m["digital_source_type"] == TRAINED
    assert m["claim_generator"] == CG
    assert m["params"] == {"seed": 7, "steps": 20}
    assert m["ingredients"] == []
    assert m["soft_binding"]["alg"].startswith("org.diffusion-studio.")
    assert rep.watermark_found and rep.watermark_id == s.watermark_id and rep.ledger_match
    json.dumps(rep.to_dict())
    # no default thumbnail: manifest stays small (WebP default thumbnail would be ~1 MB)
    assert len(s.data) < 600_000


def test_png_text_chunks_survive_signing(dev_cfg):
    text = {"parameters": "a cat\nNegative prompt: dog\nSteps: 20, Seed: 1", "json": '{"seed": 1}',
            "unicode": "日本語 prompt"}
    s = seal_image(photo(256, 2), fmt="png", params={}, claim_generator=CG, png_text=text, config=dev_cfg)
    im = Image.open(io.BytesIO(s.data))
    for k, v in text.items():
        assert im.text[k] == v
    assert verify(s.data, dev_cfg).exit_code == 0


def test_edit_with_parent_and_reedit_keeps_chain(dev_cfg):
    # a user upload without credentials
    buf = io.BytesIO()
    photo(300, 3).save(buf, "PNG")
    upload = buf.getvalue()
    e1 = seal_image(photo(300, 4), fmt="png", params={"mode": "img2img"}, claim_generator=CG, parent=upload,
                    parent_format="png", config=dev_cfg)
    r1 = verify(e1.data, dev_cfg)
    assert r1.exit_code == 0
    assert _actions(r1.manifest) == ["c2pa.opened", "c2pa.edited"]
    assert r1.manifest["digital_source_type"] == COMPOSITE
    assert [(i["relationship"], i["has_manifest"]) for i in r1.manifest["ingredients"]] == [("parentOf", False)]
    # re-edit the studio output: its manifest must be kept as the ingredient's manifest
    e2 = seal_image(photo(300, 5), fmt="jpeg", params={"mode": "inpaint"}, claim_generator=CG, parent=e1.data,
                    config=dev_cfg)
    r2 = verify(e2.data, dev_cfg)
    assert r2.exit_code == 0, r2.render()
    assert [(i["relationship"], i["has_manifest"]) for i in r2.manifest["ingredients"]] == [("parentOf", True)]
    import c2pa
    store = json.loads(c2pa.Reader("image/jpeg", io.BytesIO(e2.data)).json())
    assert len(store["manifests"]) == 2
    assert e1.manifest["label"] in store["manifests"]


def test_flip_one_byte_png_is_tampered(dev_cfg):
    s = seal_image(photo(256, 6), fmt="png", params={}, claim_generator=CG, config=dev_cfg)
    data = bytearray(s.data)
    idat = data.index(b"IDAT")
    data[idat + 200] ^= 0x01
    rep = verify(bytes(data), dev_cfg)
    assert rep.state == "invalid" and rep.exit_code == 1, rep.render()
    assert any("mismatch" in (f["code"] or "") for f in rep.failures)


def test_stripped_reencode_traced_by_watermark_and_ledger(dev_cfg):
    s = seal_image(photo(512, 7), fmt="png", params={"seed": 99}, claim_generator=CG, config=dev_cfg)
    im = Image.open(io.BytesIO(s.data)).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92)      # re-encode: metadata (manifest) gone
    rep = verify(buf.getvalue(), dev_cfg)
    assert rep.state == "none" and rep.exit_code == 2
    assert rep.watermark_found and rep.watermark_id == s.watermark_id
    assert rep.ledger_match and rep.recovered_manifest["params"] == {"seed": 99}
    assert "ledger" in rep.render()


def test_too_small_recorded(dev_cfg):
    s = seal_image(photo(128, 8), fmt="png", params={}, claim_generator=CG, config=dev_cfg)
    assert s.watermark_status == "too_small" and s.watermark_id is None
    rep = verify(s.data, dev_cfg)
    assert rep.exit_code == 0 and rep.manifest["watermark_status"] == "too_small"
    assert rep.manifest["soft_binding"] is None


def test_saturated_white_background_takes_the_mark_with_a_little_headroom(dev_cfg):
    # a mini-style render: pure white background, one flat red disc; without headroom the read-back fails
    from safety.watermark import ImageWatermarker

    arr = np.full((256, 256, 3), 255, np.uint8)
    yy, xx = np.mgrid[:256, :256]
    arr[(yy - 128) ** 2 + (xx - 128) ** 2 < 50 ** 2] = (220, 30, 30)
    wm = ImageWatermarker()
    assert wm.detect(wm.embed(arr, bytes(8)))[0] is None  # the failure this path exists for
    s = seal_image(Image.fromarray(arr), fmt="png", params={}, claim_generator=CG, config=dev_cfg, watermark_id="00" * 8)
    assert s.watermark_status == "embedded" and s.watermark_id == "00" * 8
    rep = verify(s.data, dev_cfg)
    assert rep.watermark_found and rep.watermark_id == "00" * 8
    out = np.asarray(Image.open(io.BytesIO(s.data)).convert("RGB")).astype(int)
    assert np.median(out[:20, :20]) >= 240  # still white to the eye


def test_flat_image_status_recorded_after_readback(dev_cfg):
    s = seal_image(Image.new("RGB", (320, 320), (255, 255, 255)), fmt="png", params={}, claim_generator=CG,
                   config=dev_cfg)
    assert s.watermark_status in ("embedded", "not_embeddable")
    rep = verify(s.data, dev_cfg)
    assert rep.manifest["watermark_status"] == s.watermark_status
    assert rep.watermark_found == (s.watermark_status == "embedded")


def test_prompt_hashing(tmp_path):
    import hashlib
    cfg = SafetyConfig(config_dir=tmp_path, hash_prompts=True)
    s = seal_image(photo(256, 9), fmt="png", params={"prompt": "secret cat", "negative_prompt": "dog", "seed": 1},
                   claim_generator=CG, config=cfg)
    p = verify(s.data, cfg).manifest["params"]
    assert "prompt" not in p and "negative_prompt" not in p
    assert p["prompt_sha256"] == hashlib.sha256(b"secret cat").hexdigest()
    assert p["negative_prompt_sha256"] == hashlib.sha256(b"dog").hexdigest()
    assert b"secret cat" not in s.data


def test_params_size_cap(dev_cfg):
    with pytest.raises(SealError, match="cap is 16384 bytes"):
        seal_image(photo(256, 10), fmt="png", params={"prompt": "x" * 20000}, claim_generator=CG, config=dev_cfg)


def test_digital_source_type_must_be_iptc(dev_cfg):
    with pytest.raises(SealError, match="IPTC"):
        seal_image(photo(256, 11), fmt="png", params={}, claim_generator=CG, config=dev_cfg,
                   digital_source_type="ai")


def test_unsupported_output_format(dev_cfg):
    with pytest.raises(SealError, match="unsupported format"):
        seal_image(photo(256, 12), fmt="bmp", params={}, claim_generator=CG, config=dev_cfg)


def test_callback_raising_gives_seal_error_and_nothing(pki, tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    calls = {"n": 0}

    def cb(data: bytes) -> bytes:
        calls["n"] += 1
        if calls["n"] > 1:              # passes the start-up self-check, then the KMS "goes down"
            raise RuntimeError("KMS unavailable")
        return pki.good.private.sign(data, ec.ECDSA(hashes.SHA256()))

    cfg = SafetyConfig(config_dir=tmp_path, cert_chain=pki.good.chain, sign_callback=cb, trust_anchors=[pki.root])
    result = None
    with pytest.raises(SealError, match="signing failed"):
        result = seal_image(photo(256, 13), fmt="png", params={}, claim_generator=CG, config=cfg)
    assert result is None


def test_callback_signer_trusted(pki, tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    def cb(data: bytes) -> bytes:
        return pki.good.private.sign(data, ec.ECDSA(hashes.SHA256()))

    cfg = SafetyConfig(config_dir=tmp_path, cert_chain=pki.good.chain, sign_callback=cb, trust_anchors=[pki.root])
    s = seal_image(photo(256, 14), fmt="png", params={}, claim_generator=CG, config=cfg)
    assert verify(s.data, cfg).state == "trusted"


def test_unreachable_tsa_is_one_clear_error(tmp_path):
    cfg = SafetyConfig(config_dir=tmp_path, tsa_url="http://127.0.0.1:9/tsa")
    with pytest.raises(TimestampError, match="timestamp authority http://127.0.0.1:9/tsa"):
        seal_image(photo(256, 15), fmt="png", params={}, claim_generator=CG, config=cfg)


def test_caller_given_watermark_id_is_embedded_and_reproducible(tmp_path):
    """A studio passes a request-derived ID so that re-rendering a request reproduces the same pixels."""
    import io

    import numpy as np
    from PIL import Image

    import safety

    img = Image.fromarray((np.random.default_rng(0).random((256, 256, 3)) * 255).astype("uint8"))
    cfg = safety.SafetyConfig(config_dir=tmp_path)
    a = safety.seal_image(img, params={"p": 1}, claim_generator="t", watermark_id="0123456789abcdef", config=cfg)
    b = safety.seal_image(img, params={"p": 1}, claim_generator="t", watermark_id="0123456789abcdef", config=cfg)
    assert a.watermark_id == b.watermark_id == "0123456789abcdef"
    pa = np.asarray(Image.open(io.BytesIO(a.data)))
    pb = np.asarray(Image.open(io.BytesIO(b.data)))
    assert np.array_equal(pa, pb)
    import pytest

    with pytest.raises(safety.SealError, match="16 hex"):
        safety.seal_image(img, params={}, claim_generator="t", watermark_id="xyz", config=cfg)
