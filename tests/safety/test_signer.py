import os
import stat

import pytest

from safety import SafetyConfig, SignerCheckError, check_signer, ensure_dev_ca, seal_image, verify
from safety_testkit import CG, photo


@pytest.mark.parametrize("name, code", [
    ("self_signed", "self_signed"),
    ("no_ds", "no_digital_signature"),
    ("server_auth", "bad_eku"),
    ("any_eku", "bad_eku"),
    ("no_eku", "bad_eku"),
    ("mismatch", "key_mismatch"),
    ("rsa1024", "weak_key"),
    ("expired", "expired"),
    ("future", "not_yet_valid"),
    ("leaf_only", "incomplete_chain"),
    ("broken", "broken_chain"),
])
def test_bad_certificates_refused(pki, tmp_path, name, code):
    v = getattr(pki, name)
    cfg = SafetyConfig(config_dir=tmp_path, cert_chain=v.chain, private_key=v.key)
    with pytest.raises(SignerCheckError) as ei:
        check_signer(cfg)
    assert ei.value.code == code, str(ei.value)
    assert str(ei.value).startswith(f"[{code}]")


def test_unreadable_files_and_alg_mismatch(pki, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a pem")
    with pytest.raises(SignerCheckError) as ei:
        check_signer(SafetyConfig(config_dir=tmp_path, cert_chain=junk, private_key=pki.good.key))
    assert ei.value.code == "unreadable_chain"
    with pytest.raises(SignerCheckError) as ei:
        check_signer(SafetyConfig(config_dir=tmp_path, cert_chain=pki.good.chain, private_key=junk))
    assert ei.value.code == "unreadable_key"
    with pytest.raises(SignerCheckError) as ei:
        check_signer(SafetyConfig(config_dir=tmp_path, cert_chain=pki.good.chain, private_key=pki.good.key,
                                  signing_alg="ps256"))
    assert ei.value.code == "alg_mismatch"


def test_leaf_only_chain_ok_when_intermediate_is_an_anchor(pki, tmp_path):
    inter = tmp_path / "inter.pem"
    inter.write_bytes(pki.good.chain.read_bytes().split(b"-----END CERTIFICATE-----\n", 1)[1])
    cfg = SafetyConfig(config_dir=tmp_path, cert_chain=pki.leaf_only.chain, private_key=pki.leaf_only.key,
                       trust_anchors=[inter])
    assert check_signer(cfg).alg == "es256"


@pytest.mark.parametrize("name, alg", [("good", "es256"), ("doc_signing", "es256"), ("c2pa_eku", "es256"),
                                       ("ed25519", "ed25519"), ("rsa2048", "ps256")])
def test_good_certificates_sign_trusted(pki, tmp_path, name, alg):
    v = getattr(pki, name)
    cfg = SafetyConfig(config_dir=tmp_path, cert_chain=v.chain, private_key=v.key, trust_anchors=[pki.root])
    assert check_signer(cfg).alg == alg
    s = seal_image(photo(256, 20), fmt="png", params={}, claim_generator=CG, config=cfg)
    assert verify(s.data, cfg).state == "trusted"


def test_untrusted_anchor_gives_valid_not_trusted(pki, tmp_path):
    cfg = SafetyConfig(config_dir=tmp_path / "a", cert_chain=pki.good.chain, private_key=pki.good.key,
                       trust_anchors=[pki.root])
    s = seal_image(photo(256, 21), fmt="png", params={}, claim_generator=CG, config=cfg)
    other = SafetyConfig(config_dir=tmp_path / "b", trust_anchors=[pki.other_root])
    rep = verify(s.data, other)
    assert rep.state == "valid" and rep.exit_code == 0
    assert any("untrusted" in n or "trust anchors" in n for n in rep.notes)


def test_dev_ca_created_once_and_reused(tmp_path):
    ca1 = ensure_dev_ca(tmp_path)
    assert ca1.created
    for p in (ca1.ca_key, ca1.key):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    from cryptography import x509
    root = x509.load_pem_x509_certificate(ca1.ca_cert.read_bytes())
    assert "untrusted by others" in root.subject.rfc4514_string()
    before = {p: p.read_bytes() for p in (ca1.ca_cert, ca1.ca_key, ca1.chain, ca1.key)}
    ca2 = ensure_dev_ca(tmp_path)
    assert not ca2.created
    assert {p: p.read_bytes() for p in (ca2.ca_cert, ca2.ca_key, ca2.chain, ca2.key)} == before
    info = check_signer(SafetyConfig(config_dir=tmp_path))
    assert info.dev_ca and "untrusted by others" in info.subject
    # a second studio process (new config object, same dir) keeps the same CA and verifies as trusted
    s = seal_image(photo(256, 22), fmt="png", params={}, claim_generator=CG, config=SafetyConfig(config_dir=tmp_path))
    assert verify(s.data, SafetyConfig(config_dir=tmp_path)).state == "trusted"
    assert ca1.ca_cert.read_bytes() == before[ca1.ca_cert]


def test_config_combinations_rejected(pki, tmp_path):
    with pytest.raises(SignerCheckError):
        SafetyConfig(config_dir=tmp_path, private_key=pki.good.key)
    with pytest.raises(SignerCheckError):
        SafetyConfig(config_dir=tmp_path, cert_chain=pki.good.chain)
    with pytest.raises(SignerCheckError):
        SafetyConfig(config_dir=tmp_path, sign_callback=lambda b: b)


def test_callback_with_wrong_key_refused(pki, tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    other = ec.generate_private_key(ec.SECP256R1())
    cfg = SafetyConfig(config_dir=tmp_path, cert_chain=pki.good.chain,
                       sign_callback=lambda d: other.sign(d, ec.ECDSA(hashes.SHA256())))
    with pytest.raises(SignerCheckError) as ei:
        check_signer(cfg)
    assert ei.value.code == "key_mismatch"
