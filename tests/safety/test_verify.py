import io
import json
import subprocess

import pytest

from safety import seal_image, verify
from safety.media import ffmpeg_exe
from safety_testkit import CG, photo


@pytest.fixture(scope="module")
def sealed_png(dev_cfg):
    return seal_image(photo(256, 30), fmt="png", params={"seed": 1}, claim_generator=CG, config=dev_cfg)


def test_truncated_png_is_unreadable(dev_cfg, sealed_png):
    rep = verify(sealed_png.data[: len(sealed_png.data) // 2], dev_cfg)
    assert rep.exit_code == 3 and rep.state == "unreadable" and rep.error
    json.dumps(rep.to_dict())
    assert "UNREADABLE" in rep.render()


@pytest.mark.parametrize("payload, needle", [
    (b"", "empty"),
    (b"\x00garbage" * 100, "unknown file type"),
])
def test_garbage(dev_cfg, payload, needle):
    rep = verify(payload, dev_cfg)
    assert rep.exit_code == 3 and needle in rep.error


def test_missing_path(dev_cfg, tmp_path):
    rep = verify(tmp_path / "nope.png", dev_cfg)
    assert rep.exit_code == 3 and "cannot read" in rep.error


def test_unsupported_formats(dev_cfg, tmp_path):
    buf = io.BytesIO()
    photo(64, 31).save(buf, "BMP")
    rep = verify(buf.getvalue(), dev_cfg)
    assert rep.exit_code == 3 and "BMP" in rep.error
    for ext, args in (("ogg", ["-c:a", "flac", "-f", "ogg"]),
                      ("webm", ["-f", "webm", "-c:a", "libopus"])):
        out = tmp_path / f"x.{ext}"
        p = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=d=0.5", *args,
                            str(out)], capture_output=True)
        if p.returncode != 0:      # encoder not in this static build: write the container magic ourselves
            out.write_bytes({"ogg": b"OggS", "webm": b"\x1a\x45\xdf\xa3"}[ext] + b"\x00" * 64)
        rep = verify(out, dev_cfg)
        assert rep.exit_code == 3 and "unsupported format" in rep.error, (ext, rep.error)


def test_plain_file_has_no_credentials(dev_cfg):
    buf = io.BytesIO()
    photo(300, 32).save(buf, "PNG")
    rep = verify(buf.getvalue(), dev_cfg)
    assert rep.state == "none" and rep.exit_code == 2 and not rep.watermark_found and not rep.ledger_match


def test_appended_bytes_and_edited_manifest_are_invalid(dev_cfg, sealed_png):
    rep = verify(sealed_png.data + b"trailing", dev_cfg)
    assert rep.state == "invalid" and rep.exit_code == 1
    data = bytearray(sealed_png.data)
    pos = data.index(b"org.diffusion-studio.generation")
    seed_pos = data.index(b"seed", pos)
    data[seed_pos] ^= 0x20           # "seed" -> "Seed" inside the signed assertion
    rep = verify(bytes(data), dev_cfg)
    assert rep.state == "invalid" and rep.exit_code == 1, rep.render()


def test_report_dict_and_render(dev_cfg, sealed_png, tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(sealed_png.data)
    rep = verify(str(p), dev_cfg)
    d = rep.to_dict()
    assert d["state"] == "trusted" and d["exit_code"] == 0 and d["watermark_id"] == sealed_png.watermark_id
    text = rep.render()
    assert "TRUSTED" in text and "c2pa.created" in text and sealed_png.watermark_id in text


@pytest.mark.slow
def test_certificate_expired_since_signing_is_reported(tmp_path):
    """No TSA -> validity is judged at verification time: an expired signer makes the manifest invalid."""
    import datetime as dt
    import time
    from cryptography.hazmat.primitives.asymmetric import ec
    from safety import SafetyConfig
    from safety.pki import issue_certificate, pem_cert, pem_key
    rk = ec.generate_private_key(ec.SECP256R1())
    root = issue_certificate("Short Root", rk.public_key(), None, rk, ca=True, org="test")
    k = ec.generate_private_key(ec.SECP256R1())
    nb = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=86400 - 5)
    leaf = issue_certificate("Short-lived leaf", k.public_key(), root, rk, not_before=nb, days=1, org="test")
    (tmp_path / "root.pem").write_bytes(pem_cert(root))
    (tmp_path / "c.pem").write_bytes(pem_cert(leaf) + pem_cert(root))
    (tmp_path / "k.pem").write_bytes(pem_key(k))
    cfg = SafetyConfig(config_dir=tmp_path / "home", cert_chain=tmp_path / "c.pem", private_key=tmp_path / "k.pem",
                       trust_anchors=[tmp_path / "root.pem"])
    s = seal_image(photo(256, 33), fmt="png", params={}, claim_generator=CG, config=cfg)
    assert verify(s.data, cfg).state == "trusted"
    time.sleep(max(0.0, (leaf.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1.5)
    rep = verify(s.data, cfg)
    assert rep.state == "invalid" and rep.exit_code == 1
    assert any(f["code"] == "signingCredential.expired" for f in rep.failures)
    assert any("expired" in n for n in rep.notes)
