"""Configuration and error types of the seal.

`safety` imports nothing of ours: the studio passes its config dir in (``DIFFUSION_STUDIO_HOME`` or the
platform user config dir), this module only falls back to the same rule when none is given.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

IPTC_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = IPTC_PREFIX + "trainedAlgorithmicMedia"
COMPOSITE = IPTC_PREFIX + "compositeWithTrainedAlgorithmicMedia"
# IPTC digital source type vocabulary (https://cv.iptc.org/newscodes/digitalsourcetype/).
IPTC_SOURCE_TYPES = frozenset(IPTC_PREFIX + t for t in (
    "digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print",
    "humanEdits", "compositeCapture", "algorithmicallyEnhanced", "digitalCreation", "dataDrivenMedia",
    "digitalArt", "virtualRecording", "compositeSynthetic", "trainedAlgorithmicMedia",
    "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia", "screenCapture", "minorHumanEdits",
    "softwareImage", "composite"))

GENERATION_LABEL = "org.diffusion-studio.generation"


class SealError(RuntimeError):
    """Sealing failed; nothing was delivered. ``str(err)`` carries the reason."""


class SignerCheckError(SealError):
    """The configured signer failed the start-up check. ``.code`` names the failed rule."""

    def __init__(self, code: str, message: str):
        super().__init__(f"[{code}] {message}")
        self.code = code


class TimestampError(SealError):
    """The configured RFC 3161 timestamp authority could not be reached or refused the request."""


def default_config_dir() -> Path:
    env = os.environ.get("DIFFUSION_STUDIO_HOME")
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
        return Path(platformdirs.user_config_dir("diffusion-studio"))
    except Exception:  # pragma: no cover - platformdirs is a dependency
        return Path.home() / ".config" / "diffusion-studio"


@dataclass
class SafetyConfig:
    """Signer, trust anchors, config dir (dev CA + ledger) and manifest options.

    Signer, one of:
      * ``cert_chain`` + ``private_key``: PEM paths (chain = end-entity first, then intermediates).
      * ``cert_chain`` + ``sign_callback`` (+ ``signing_alg``): KMS/HSM; the callback gets the bytes to sign
        and returns the signature (ES*: raw r||s or DER; PS*: PKCS#1 PSS; Ed25519: raw).
      * nothing: a local development CA + signing cert are created in ``config_dir/dev-ca`` on first use.
    """

    config_dir: Optional[Path] = None
    cert_chain: Optional[Path] = None
    private_key: Optional[Path] = None
    sign_callback: Optional[Callable[[bytes], bytes]] = None
    signing_alg: Optional[str] = None          # "es256" | "es384" | "es512" | "ps256" | ... | "ed25519"; auto if None
    tsa_url: Optional[str] = None              # RFC 3161 TSA; none by default (offline studio)
    trust_anchors: Sequence[Path] = field(default_factory=tuple)   # extra PEM roots trusted by verify
    hash_prompts: bool = False                 # store sha256 of prompt/negative_prompt instead of the text
    max_params_bytes: int = 16 * 1024          # cap on the JSON of the params assertion
    thumbnail: bool = False                    # embed a small JPEG thumbnail (long edge 256) in image manifests
    ledger: bool = True                        # record every issued manifest in config_dir/ledger.sqlite
    video_crf: int = 18                        # H.264 quality for seal_video (lower = better mark survival)

    def __post_init__(self):
        self.config_dir = Path(self.config_dir).expanduser() if self.config_dir else default_config_dir()
        if self.cert_chain is not None:
            self.cert_chain = Path(self.cert_chain)
        if self.private_key is not None:
            self.private_key = Path(self.private_key)
        self.trust_anchors = tuple(Path(p) for p in self.trust_anchors)
        if self.sign_callback is not None and self.cert_chain is None:
            raise SignerCheckError("callback_without_chain",
                                   "sign_callback needs cert_chain (PEM of the certificate chain it signs for)")
        if self.private_key is not None and self.cert_chain is None:
            raise SignerCheckError("key_without_chain", "private_key given without cert_chain")
        if self.cert_chain is not None and self.private_key is None and self.sign_callback is None:
            raise SignerCheckError("chain_without_key", "cert_chain given without private_key or sign_callback")

    @property
    def uses_dev_ca(self) -> bool:
        return self.cert_chain is None

    @property
    def dev_ca_dir(self) -> Path:
        return Path(self.config_dir) / "dev-ca"

    @property
    def ledger_path(self) -> Path:
        return Path(self.config_dir) / "ledger.sqlite"
