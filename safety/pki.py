"""Certificates: the local development CA, the signer start-up check, c2pa signer + trust settings."""
from __future__ import annotations

import datetime as _dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils as asym_utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from .config import SafetyConfig, SignerCheckError

OID_EMAIL_PROTECTION = ExtendedKeyUsageOID.EMAIL_PROTECTION
OID_DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
OID_C2PA_SIGNING = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
ALLOWED_EKUS = (OID_EMAIL_PROTECTION, OID_DOCUMENT_SIGNING, OID_C2PA_SIGNING)
# EKU list handed to c2pa-rs as trust.trust_config (its valid_eku_oids.cfg plus ours), so documentSigning and
# C2PA-signing certificates pass verify-after-sign and verification (anchors-safety 1.4).
TRUST_CONFIG_EKUS = "\n".join([
    "1.3.6.1.5.5.7.3.4",            # emailProtection
    "1.3.6.1.5.5.7.3.36",           # documentSigning
    "1.3.6.1.5.5.7.3.8",            # timeStamping
    "1.3.6.1.5.5.7.3.9",            # OCSPSigning
    "1.3.6.1.4.1.311.76.59.1.9",    # Microsoft C2PA signing
    "1.3.6.1.4.1.62558.2.1",        # C2PA signing
]) + "\n"

DEV_CA_CN = "diffusion-studio local development CA (untrusted by others)"
DEV_SIGNER_CN = "diffusion-studio local development signer (untrusted by others)"
DEV_ORG = "diffusion-studio local development (untrusted by others)"

_dev_lock = threading.Lock()


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


# --------------------------------------------------------------------------------------------- issuing
def issue_certificate(subject_cn: str, public_key, issuer_cert: Optional[x509.Certificate], issuer_key, *,
                      ca: bool = False, days: int = 3650, not_before: Optional[_dt.datetime] = None,
                      key_usage: Optional[dict] = None, ekus: Optional[Sequence] = None,
                      org: str = DEV_ORG) -> x509.Certificate:
    """Build an X.509 v3 certificate (used for the dev CA and by the tests' throw-away PKI).

    ``issuer_cert=None`` self-signs. ``key_usage`` overrides the KU flags; ``ekus=None`` gives the default
    (none for CAs, emailProtection + C2PA signing for end entities); ``ekus=[]`` omits the extension.
    """
    nb = not_before or (_now() - _dt.timedelta(minutes=5))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])
    issuer = issuer_cert.subject if issuer_cert is not None else subject
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
         .serial_number(x509.random_serial_number()).not_valid_before(nb)
         .not_valid_after(nb + _dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if issuer_cert is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key()),
                            critical=False)
    ku = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False,
              data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
              encipher_only=False, decipher_only=False)
    if key_usage:
        ku.update(key_usage)
    b = b.add_extension(x509.KeyUsage(**ku), critical=True)
    if ekus is None:
        ekus = [] if ca else [OID_EMAIL_PROTECTION, OID_C2PA_SIGNING]
    if ekus:
        b = b.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    algo = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(issuer_key, algo)


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _FileLock:
    """Inter-process lock (POSIX flock; a no-op where fcntl is missing) so two studio processes starting
    together create one CA."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        return False


@dataclass(frozen=True)
class DevCA:
    dir: Path
    ca_cert: Path       # the root (trust anchor of this studio install)
    ca_key: Path
    chain: Path         # signer cert + root, PEM
    key: Path           # signer key
    created: bool       # True when this call created it


def ensure_dev_ca(config_dir: Path) -> DevCA:
    """Create the local development CA + signing cert in ``config_dir/dev-ca`` once; reuse it afterwards.

    Keys are written 0600. A signer certificate that is expired (or expires within a day) is re-issued from the
    same CA, so earlier outputs keep verifying as Trusted.
    """
    d = Path(config_dir) / "dev-ca"
    paths = dict(ca_cert=d / "ca.cert.pem", ca_key=d / "ca.key.pem", chain=d / "signer.chain.pem",
                 key=d / "signer.key.pem")
    d.mkdir(parents=True, exist_ok=True)
    with _dev_lock, _FileLock(d / ".lock"):
        created = False
        if not (paths["ca_cert"].exists() and paths["ca_key"].exists()):
            os.chmod(d, 0o700)
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_cert = issue_certificate(DEV_CA_CN, ca_key.public_key(), None, ca_key, ca=True, days=3650)
            _write_private(paths["ca_key"], pem_key(ca_key))
            _write_public(paths["ca_cert"], pem_cert(ca_cert))
            for p in (paths["chain"], paths["key"]):
                p.unlink(missing_ok=True)
            created = True
        need_leaf = not (paths["chain"].exists() and paths["key"].exists())
        if not need_leaf:
            leaf = x509.load_pem_x509_certificates(paths["chain"].read_bytes())[0]
            need_leaf = leaf.not_valid_after_utc < _now() + _dt.timedelta(days=1)
        if need_leaf:
            ca_cert = x509.load_pem_x509_certificate(paths["ca_cert"].read_bytes())
            ca_key = serialization.load_pem_private_key(paths["ca_key"].read_bytes(), None)
            key = ec.generate_private_key(ec.SECP256R1())
            leaf = issue_certificate(DEV_SIGNER_CN, key.public_key(), ca_cert, ca_key, days=730,
                                     ekus=[OID_EMAIL_PROTECTION, OID_DOCUMENT_SIGNING, OID_C2PA_SIGNING])
            _write_private(paths["key"], pem_key(key))
            _write_public(paths["chain"], pem_cert(leaf) + pem_cert(ca_cert))
            created = True
        return DevCA(dir=d, created=created, **paths)


# --------------------------------------------------------------------------------------------- checking
@dataclass(frozen=True)
class SignerInfo:
    """Result of :func:`check_signer`: what will sign, ready for c2pa."""
    alg: str
    chain_pem: bytes
    key_pem: Optional[bytes]
    callback: Optional[Callable[[bytes], bytes]]
    subject: str
    issuer: str
    not_after: str
    dev_ca: bool
    tsa_url: Optional[str]


def _alg_for_key(pub) -> str:
    if isinstance(pub, ec.EllipticCurvePublicKey):
        name = pub.curve.name
        if name == "secp256r1":
            return "es256"
        if name == "secp384r1":
            return "es384"
        raise SignerCheckError("unsupported_key", f"EC curve {name} is not allowed (use P-256 or P-384)")
    if isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size < 2048:
            raise SignerCheckError("weak_key", f"RSA key of {pub.key_size} bits; at least 2048 are required")
        return "ps256"
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise SignerCheckError("unsupported_key", f"key type {type(pub).__name__} is not supported "
                                              "(RSA >= 2048, EC P-256/P-384, Ed25519)")


_ALG_KEY = {"es256": ("ec", "secp256r1"), "es384": ("ec", "secp384r1"), "es512": ("ec", "secp521r1"),
            "ps256": ("rsa", None), "ps384": ("rsa", None), "ps512": ("rsa", None), "ed25519": ("ed", None)}


def _alg_matches(alg: str, pub) -> bool:
    kind, curve = _ALG_KEY.get(alg, (None, None))
    if kind == "ec":
        return isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == curve
    if kind == "rsa":
        return isinstance(pub, rsa.RSAPublicKey)
    if kind == "ed":
        return isinstance(pub, ed25519.Ed25519PublicKey)
    return False


def _pub_equal(a, b) -> bool:
    f = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(serialization.Encoding.DER, f) == b.public_bytes(serialization.Encoding.DER, f)


def _verify_sig(pub, alg: str, data: bytes, sig: bytes) -> None:
    h = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}.get(alg[-3:])
    if isinstance(pub, ec.EllipticCurvePublicKey):
        n = (pub.curve.key_size + 7) // 8
        if len(sig) == 2 * n:  # raw r||s
            sig = asym_utils.encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
        pub.verify(sig, data, ec.ECDSA(h))
    elif isinstance(pub, rsa.RSAPublicKey):
        pub.verify(sig, data, padding.PSS(padding.MGF1(h), h.digest_size), h)
    else:
        pub.verify(sig, data)


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
        return True
    except Exception:
        return False


def load_anchor_certs(config: SafetyConfig) -> list:
    """The studio's trust anchors: the dev CA root (when it exists) + configured anchors."""
    out = []
    dev = config.dev_ca_dir / "ca.cert.pem"
    paths = ([dev] if dev.exists() else []) + list(config.trust_anchors)
    for p in paths:
        try:
            out.extend(x509.load_pem_x509_certificates(Path(p).read_bytes()))
        except Exception as e:
            raise SignerCheckError("bad_trust_anchor", f"trust anchor {p} is not a readable PEM certificate: {e}")
    return out


def check_signer(config: Optional[SafetyConfig] = None) -> SignerInfo:
    """Check the configured signer before the first seal; create the dev CA when none is configured.

    Raises :class:`SignerCheckError` (a ``SealError``) whose ``.code`` is one of: unreadable_chain,
    unreadable_key, self_signed, not_end_entity, no_digital_signature, bad_eku, weak_key, unsupported_key,
    alg_mismatch, key_mismatch, callback_failed, expired, not_yet_valid, incomplete_chain, broken_chain,
    bad_tsa_url, bad_trust_anchor.
    """
    config = config or SafetyConfig()
    dev = False
    if config.uses_dev_ca:
        ca = ensure_dev_ca(config.config_dir)
        chain_path, key_path, dev = ca.chain, ca.key, True
    else:
        chain_path, key_path = config.cert_chain, config.private_key
    try:
        chain_pem = Path(chain_path).read_bytes()
        chain = x509.load_pem_x509_certificates(chain_pem)
    except Exception as e:
        raise SignerCheckError("unreadable_chain", f"certificate chain {chain_path} is not readable PEM: {e}")
    leaf = chain[0]
    key_pem = None
    key = None
    if config.sign_callback is None or dev:
        try:
            key_pem = Path(key_path).read_bytes()
            key = serialization.load_pem_private_key(key_pem, None)
        except Exception as e:
            raise SignerCheckError("unreadable_key", f"private key {key_path} is not a readable, unencrypted "
                                                     f"PEM key: {e}")
    if _self_signed(leaf):
        raise SignerCheckError("self_signed", f"signing certificate '{leaf.subject.rfc4514_string()}' is "
                                              "self-signed; C2PA needs an end-entity certificate issued by a CA")
    try:
        bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            raise SignerCheckError("not_end_entity", "signing certificate is a CA certificate (basicConstraints "
                                                     "CA:TRUE); use an end-entity certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        has_ds = ku.digital_signature
    except x509.ExtensionNotFound:
        has_ds = False
    if not has_ds:
        raise SignerCheckError("no_digital_signature", "signing certificate lacks keyUsage digitalSignature")
    try:
        ekus = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        ekus = []
    if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in ekus or not any(e in ALLOWED_EKUS for e in ekus):
        raise SignerCheckError("bad_eku", "signing certificate needs extendedKeyUsage emailProtection, "
                                          "documentSigning (1.3.6.1.5.5.7.3.36) or C2PA signing "
                                          f"(1.3.6.1.4.1.62558.2.1), not anyExtendedKeyUsage; has "
                                          f"{[e.dotted_string for e in ekus] or 'none'}")
    pub = leaf.public_key()
    auto_alg = _alg_for_key(pub)
    alg = (config.signing_alg or auto_alg).lower()
    if not _alg_matches(alg, pub):
        raise SignerCheckError("alg_mismatch", f"signing_alg {alg} does not fit the certificate's "
                                               f"{type(pub).__name__}")
    if key is not None and not _pub_equal(key.public_key(), pub):
        raise SignerCheckError("key_mismatch", "private key does not match the signing certificate")
    if config.sign_callback is not None and not dev:
        probe = b"diffusion-studio signer self-check"
        try:
            sig = config.sign_callback(probe)
        except Exception as e:
            raise SignerCheckError("callback_failed", f"sign_callback raised {type(e).__name__}: {e}")
        try:
            _verify_sig(pub, alg, probe, bytes(sig))
        except (InvalidSignature, ValueError, TypeError) as e:
            raise SignerCheckError("key_mismatch", "sign_callback's signature does not verify with the signing "
                                                   f"certificate's public key ({type(e).__name__})")
    now = _now()
    for c in chain:
        if c.not_valid_after_utc < now:
            raise SignerCheckError("expired", f"certificate '{c.subject.rfc4514_string()}' expired on "
                                              f"{c.not_valid_after_utc:%Y-%m-%d}")
        if c.not_valid_before_utc > now:
            raise SignerCheckError("not_yet_valid", f"certificate '{c.subject.rfc4514_string()}' is not valid "
                                                    f"before {c.not_valid_before_utc:%Y-%m-%d}")
    for child, parent in zip(chain, chain[1:]):
        try:
            child.verify_directly_issued_by(parent)
        except Exception:
            raise SignerCheckError("broken_chain", f"'{child.subject.rfc4514_string()}' is not issued by the next "
                                                   f"certificate in the chain '{parent.subject.rfc4514_string()}'")
    last = chain[-1]
    if not _self_signed(last):
        anchors = load_anchor_certs(config)
        ok = False
        for a in anchors:
            try:
                last.verify_directly_issued_by(a)
                ok = True
                break
            except Exception:
                continue
        if not ok:
            raise SignerCheckError("incomplete_chain", f"certificate chain ends at '{last.subject.rfc4514_string()}'"
                                                       f" whose issuer '{last.issuer.rfc4514_string()}' is neither in "
                                                       "the chain nor a configured trust anchor; add the "
                                                       "intermediate certificates to cert_chain")
    if config.tsa_url and not config.tsa_url.startswith(("http://", "https://")):
        raise SignerCheckError("bad_tsa_url", f"tsa_url must be http(s): {config.tsa_url!r}")
    return SignerInfo(alg=alg, chain_pem=chain_pem, key_pem=key_pem,
                      callback=None if dev else config.sign_callback,
                      subject=leaf.subject.rfc4514_string(), issuer=leaf.issuer.rfc4514_string(),
                      not_after=leaf.not_valid_after_utc.isoformat(), dev_ca=dev, tsa_url=config.tsa_url)


# --------------------------------------------------------------------------------------------- c2pa glue
def c2pa_settings(config: SafetyConfig, *, thumbnail: bool = False) -> dict:
    """Offline settings: our anchors + EKU list, no network fetches, verify-after-sign on."""
    anchors = b"".join(pem_cert(c) for c in load_anchor_certs(config)).decode()
    s = {
        "version": 1,
        "verify": {"verify_after_sign": True, "verify_trust": True, "remote_manifest_fetch": False,
                   "ocsp_fetch": False},
        "trust": {"trust_config": TRUST_CONFIG_EKUS},
        "builder": {"thumbnail": {"enabled": bool(thumbnail), "format": "jpeg", "long_edge": 256,
                                  "quality": "low"}},
    }
    if anchors:
        s["trust"]["user_anchors"] = anchors
    return s


def make_c2pa_signer(info: SignerInfo):
    import c2pa
    alg = getattr(c2pa.C2paSigningAlg, info.alg.upper())
    if info.callback is not None:
        cb = info.callback

        def _cb(data: bytes) -> bytes:
            return bytes(cb(bytes(data)))
        return c2pa.Signer.from_callback(_cb, alg, info.chain_pem.decode(), info.tsa_url)
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, info.chain_pem, info.key_pem,
                                                     info.tsa_url.encode() if info.tsa_url else None))


_c2pa_local = threading.local()


def c2pa_context_and_signer(config: SafetyConfig, info: SignerInfo, *, thumbnail: bool = False):
    """(c2pa.Context, c2pa.Signer) for ``config`` + ``info``, built once per thread and reused (a signer is
    not consumed by ``Builder.sign``; measured). Like ``seal.signer_for``, keyed by the config and signer
    objects themselves (a new SafetyConfig gets new ones); anchors are read when the entry is built.
    ``drop_c2pa_cache`` forgets an entry after a failure so a broken object is not reused."""
    import c2pa
    cache = getattr(_c2pa_local, "cache", None)
    if cache is None:
        cache = _c2pa_local.cache = {}
    key = (id(config), id(info), bool(thumbnail))
    hit = cache.get(key)
    if hit is not None and hit[0] is config and hit[1] is info:
        return hit[2], hit[3]
    ctx = c2pa.Context.from_dict(c2pa_settings(config, thumbnail=thumbnail))
    signer = make_c2pa_signer(info)
    if len(cache) >= 8:     # a handful of configs per process; do not grow without bound
        for k, old in list(cache.items()):
            _close_quietly(old[3])
            del cache[k]
    cache[key] = (config, info, ctx, signer)
    return ctx, signer


def drop_c2pa_cache(config: SafetyConfig, info: SignerInfo, *, thumbnail: bool = False) -> None:
    cache = getattr(_c2pa_local, "cache", None) or {}
    hit = cache.pop((id(config), id(info), bool(thumbnail)), None)
    if hit is not None:
        _close_quietly(hit[3])


def _close_quietly(signer) -> None:
    try:
        signer.close()
    except Exception:
        pass
