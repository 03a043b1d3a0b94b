"""Shared fixtures: a throw-away PKI (session scope, tmp dirs only), synthetic media, configs."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from safety import SafetyConfig
from safety.pki import (OID_C2PA_SIGNING, OID_DOCUMENT_SIGNING, OID_EMAIL_PROTECTION, issue_certificate, pem_cert,
                        pem_key)


def _ec():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """root -> intermediate -> leaves; every variant written as <name>.chain.pem / <name>.key.pem."""
    d: Path = tmp_path_factory.mktemp("pki")
    root_key = _ec()
    root = issue_certificate("Test Root CA", root_key.public_key(), None, root_key, ca=True, org="test")
    int_key = _ec()
    inter = issue_certificate("Test Issuing CA", int_key.public_key(), root, root_key, ca=True, org="test")
    (d / "root.pem").write_bytes(pem_cert(root))
    other_key = _ec()
    other_root = issue_certificate("Unrelated Root", other_key.public_key(), None, other_key, ca=True, org="test")
    (d / "other_root.pem").write_bytes(pem_cert(other_root))

    def leaf(name, key=None, *, chain="inter", sign_key=None, **kw):
        key = key or _ec()
        issuer_cert, issuer_key = (inter, int_key)
        cert = issue_certificate(f"leaf {name}", key.public_key(), issuer_cert, issuer_key, org="test", **kw)
        chain_pem = pem_cert(cert) + (pem_cert(inter) if chain == "inter" else b"")
        (d / f"{name}.chain.pem").write_bytes(chain_pem)
        (d / f"{name}.key.pem").write_bytes(pem_key(sign_key or key))
        return SimpleNamespace(chain=d / f"{name}.chain.pem", key=d / f"{name}.key.pem", private=sign_key or key)

    ns = SimpleNamespace(dir=d, root=d / "root.pem", other_root=d / "other_root.pem")
    ns.good = leaf("good")
    ns.doc_signing = leaf("docsign", ekus=[OID_DOCUMENT_SIGNING])
    ns.c2pa_eku = leaf("c2paeku", ekus=[OID_C2PA_SIGNING])
    ns.ed25519 = leaf("ed25519", ed25519.Ed25519PrivateKey.generate())
    ns.rsa2048 = leaf("rsa2048", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ns.rsa1024 = leaf("rsa1024", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    ns.no_ds = leaf("nods", key_usage={"digital_signature": False, "content_commitment": True})
    ns.server_auth = leaf("serverauth", ekus=[ExtendedKeyUsageOID.SERVER_AUTH])
    ns.any_eku = leaf("anyeku", ekus=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
    ns.no_eku = leaf("noeku", ekus=[])
    ns.mismatch = leaf("mismatch", sign_key=_ec())
    ns.expired = leaf("expired", not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30), days=10)
    ns.future = leaf("future", not_before=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))
    ns.leaf_only = leaf("leafonly", chain="none")
    # self-signed end entity
    ss_key = _ec()
    ss = issue_certificate("self signed leaf", ss_key.public_key(), None, ss_key, org="test",
                           ekus=[OID_EMAIL_PROTECTION])
    (d / "selfsigned.chain.pem").write_bytes(pem_cert(ss))
    (d / "selfsigned.key.pem").write_bytes(pem_key(ss_key))
    ns.self_signed = SimpleNamespace(chain=d / "selfsigned.chain.pem", key=d / "selfsigned.key.pem", private=ss_key)
    # chain whose "intermediate" did not issue the leaf
    wrong_key = _ec()
    wrong_int = issue_certificate("Wrong Issuing CA", wrong_key.public_key(), root, root_key, ca=True, org="test")
    (d / "broken.chain.pem").write_bytes(ns.good.chain.read_bytes().split(b"-----END CERTIFICATE-----")[0]
                                         + b"-----END CERTIFICATE-----\n" + pem_cert(wrong_int))
    ns.broken = SimpleNamespace(chain=d / "broken.chain.pem", key=ns.good.key, private=ns.good.private)
    return ns


@pytest.fixture(scope="session")
def dev_cfg(tmp_path_factory):
    """A studio config using the auto-created development CA (shared by most tests: one CA, one ledger)."""
    return SafetyConfig(config_dir=tmp_path_factory.mktemp("studio_home"))


@pytest.fixture(scope="session")
def pki_cfg(pki, tmp_path_factory):
    return SafetyConfig(config_dir=tmp_path_factory.mktemp("studio_pki"), cert_chain=pki.good.chain,
                        private_key=pki.good.key, trust_anchors=[pki.root])
