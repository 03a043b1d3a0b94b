"""The seal: invisible watermark + signed C2PA manifest on every output, plus verification.

Order is fixed: watermark pixels/samples -> encode the container -> sign. Fails closed with ``SealError``.
See docs/safety.md.
"""
from .config import SafetyConfig, SealError, SignerCheckError, TimestampError
from .media import MediaError, decode_video
from .pki import check_signer, ensure_dev_ca
from .seal import Sealed, seal_audio, seal_image, seal_video, set_watermarker
from .verify import VerifyReport, verify
from .watermark import (AudioWatermarker, ImageWatermarker, VideoWatermarker, Watermarker,
                        WatermarkNotApplicable)

__all__ = [
    "SafetyConfig", "SealError", "SignerCheckError", "TimestampError", "Sealed", "VerifyReport",
    "seal_image", "seal_audio", "seal_video", "verify", "check_signer", "ensure_dev_ca", "set_watermarker",
    "decode_video", "MediaError", "Watermarker", "ImageWatermarker", "AudioWatermarker", "VideoWatermarker", "WatermarkNotApplicable",
]
