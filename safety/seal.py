"""The seal: watermark pixels/samples -> encode the container -> sign a C2PA manifest. Fails closed."""
from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from . import media as M
from .config import (COMPOSITE, GENERATION_LABEL, IPTC_SOURCE_TYPES, TRAINED, SafetyConfig, SealError,
                     TimestampError)
from .ledger import Ledger
from .pki import SignerInfo, c2pa_context_and_signer, check_signer, drop_c2pa_cache
from .watermark import (AudioWatermarker, ImageWatermarker, VideoWatermarker, Watermarker,
                        WatermarkNotApplicable)

_LABEL_RE = re.compile(r"^[a-z0-9]+(?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9]+(?:[a-z0-9-]*[a-z0-9])?)+$")
_checked: Dict[int, Tuple[SafetyConfig, SignerInfo]] = {}
_check_lock = threading.Lock()

WATERMARKERS: Dict[str, Watermarker] = {
    "image": ImageWatermarker(), "audio": AudioWatermarker(), "video": VideoWatermarker(),
}


def set_watermarker(kind: str, wm: Watermarker) -> None:
    """Plug another watermark in for a modality ("image" | "audio" | "video"), e.g. TrustMark or AudioSeal."""
    if kind not in WATERMARKERS:
        raise ValueError(f"kind must be one of {sorted(WATERMARKERS)}")
    WATERMARKERS[kind] = wm


@dataclass
class Sealed:
    data: bytes                      # the signed container bytes; deliver them unchanged
    fmt: str                         # "png" | "jpeg" | "webp" | "wav" | "flac" | "mp3" | "mp4" | "gif"
    mime: str
    watermark_id: Optional[str]      # 16 hex chars (64-bit ID) when the mark was embedded and read back
    watermark_status: str            # "embedded" | "too_small" | "too_short" | "not_embeddable"
                                     # | "source_mark_kept" (the read-back found another ID: the source's)
    manifest: dict                   # the active manifest as read back from the signed bytes (c2pa JSON)
    sha256: str = ""
    validation_state: str = ""       # "Trusted" | "Valid" from the read-back after signing
    signer: str = ""                 # subject of the signing certificate
    pixel_sha256: str = ""           # images: M.pixels_sha256 of the delivered file's decoded pixels, when the
                                     # seal already had them (PNG); "" = not computed here, decode ``data``


def signer_for(config: SafetyConfig) -> SignerInfo:
    """check_signer once per config object (the start-up check), then reuse."""
    with _check_lock:
        hit = _checked.get(id(config))
        if hit is not None and hit[0] is config:
            return hit[1]
        info = check_signer(config)
        _checked[id(config)] = (config, info)
        return info


def _hash_prompts(params: dict) -> dict:
    out = dict(params)
    for k in ("prompt", "negative_prompt"):
        if k in out and out[k] is not None:
            v = out.pop(k)
            out[f"{k}_sha256"] = hashlib.sha256(str(v).encode("utf-8")).hexdigest()
    return out


def _prepare_params(params: Optional[dict], config: SafetyConfig) -> dict:
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise SealError(f"params must be a dict, got {type(params).__name__}")
    p = _hash_prompts(params) if config.hash_prompts else dict(params)
    try:
        text = json.dumps(p, sort_keys=True, default=str, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SealError(f"params are not JSON-serialisable: {e}")
    n = len(text.encode("utf-8"))
    if n > config.max_params_bytes:
        raise SealError(f"params JSON is {n} bytes; the cap is {config.max_params_bytes} bytes "
                        "(SafetyConfig.max_params_bytes); hash or drop large fields")
    return json.loads(text)


def _claim_generator_info(claim_generator: str) -> dict:
    if not isinstance(claim_generator, str) or not claim_generator.strip():
        raise SealError("claim_generator must be a non-empty string naming the studio, its version and the model")
    m = re.match(r"^\s*([^/\s]+)/(\S+)", claim_generator)
    info = {"name": m.group(1) if m else claim_generator.strip()}
    if m:
        info["version"] = m.group(2)
    info["org.diffusion-studio.claim_generator"] = claim_generator
    return info


def _build_manifest(*, fmt: str, kind: str, claim_generator: str, params: dict, source_type: Optional[str],
                    has_parent: bool, wm: Watermarker, wm_id: Optional[str], wm_status: str,
                    description: Optional[str], label: str, source_wm_id: Optional[str] = None,
                    components: int = 0) -> dict:
    if not _LABEL_RE.match(label) or label.startswith("c2pa.") or label.startswith("cawg."):
        raise SealError(f"custom assertion label {label!r} must be reverse-domain (e.g. org.example.generation) "
                        "and not in the c2pa./cawg. namespaces")
    st = source_type or (COMPOSITE if has_parent or components else TRAINED)
    if st not in IPTC_SOURCE_TYPES:
        raise SealError(f"digitalSourceType {st!r} is not an IPTC digital source type URI "
                        "(http://cv.iptc.org/newscodes/digitalsourcetype/...)")
    agent = {"name": claim_generator}
    if has_parent:
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                   {"action": "c2pa.edited", "digitalSourceType": st, "softwareAgent": agent,
                    "description": description or f"{kind} edited with a generative model"}]
    else:
        actions = [{"action": "c2pa.created", "digitalSourceType": st, "softwareAgent": agent,
                    "description": description or f"{kind} generated by a generative model"}]
    if components:  # a composite of sealed outputs (an X/Y/Z grid): each placed ingredient is named
        actions.append({"action": "c2pa.placed",
                        "parameters": {"ingredientIds": [f"component-{i}" for i in range(components)]}})
    wm_info = dict(wm.describe())
    wm_info.update({"status": wm_status, "id": wm_id})
    if source_wm_id is not None:
        wm_info["source_id"] = source_wm_id     # the ID that reads back instead of ours ("source_mark_kept")
    assertions = [
        {"label": "c2pa.actions.v2", "data": {"actions": actions}},
        {"label": label, "data": {"params": params, "watermark_status": wm_status, "watermark": wm_info}},
    ]
    if wm_id is not None:
        import base64
        assertions.append({"label": "c2pa.soft-binding", "data": {
            "alg": wm.alg,
            "blocks": [{"scope": {}, "value": base64.b64encode(bytes.fromhex(wm_id)).decode()}],
        }})
    return {"claim_generator_info": [_claim_generator_info(claim_generator)],
            "title": f"{kind}.{fmt}", "format": M.MIME[fmt], "assertions": assertions}


def _tsa_error(e: Exception, config: SafetyConfig) -> Optional[TimestampError]:
    msg = str(e)
    if config.tsa_url and re.search(r"error sending request|tsa|timestamp|time stamp|connect", msg, re.I):
        return TimestampError(f"timestamp authority {config.tsa_url} could not be reached or refused the request; "
                              f"nothing was sealed ({msg.strip()[:300]})")
    return None


def _sign(data: bytes, fmt: str, manifest: dict, config: SafetyConfig, info: SignerInfo,
          parent: Optional[bytes], parent_format: Optional[str], thumbnail: bool,
          components: Sequence[Tuple[bytes, str]] = ()) -> Tuple[bytes, dict, str]:
    import c2pa
    mime = M.MIME[fmt]
    try:
        ctx, signer = c2pa_context_and_signer(config, info, thumbnail=thumbnail)   # once per thread and config
    except Exception as e:
        raise SealError(f"cannot set up the C2PA signer: {type(e).__name__}: {e}") from e
    try:
        with c2pa.Builder(manifest, ctx) as b:
            if parent is not None:
                pf = parent_format or M.sniff(parent)
                if pf is None or pf.startswith("unsupported:"):
                    raise SealError(f"parent format {pf or 'unknown'} cannot be recorded as a C2PA ingredient; "
                                    f"convert it to one of {', '.join(M.MIME)} first")
                pf = M.normalize_fmt(pf)
                b.add_ingredient({"title": f"parent.{pf}", "relationship": "parentOf", "label": "parent"},
                                 M.MIME[pf], io.BytesIO(parent))
            for i, (cdata, cfmt) in enumerate(components):
                cf = M.normalize_fmt(cfmt)
                b.add_ingredient({"title": f"component-{i}.{cf}", "relationship": "componentOf",
                                  "label": f"component-{i}"}, M.MIME[cf], io.BytesIO(cdata))
            dst = io.BytesIO()
            b.sign(signer, mime, io.BytesIO(data), dst)
        out = dst.getvalue()
    except SealError:
        raise
    except Exception as e:
        drop_c2pa_cache(config, info, thumbnail=thumbnail)     # rebuild the signer and context next time
        tsa = _tsa_error(e, config)
        if tsa is not None:
            raise tsa from e
        raise SealError(f"C2PA signing failed: {type(e).__name__}: {e}") from e
    try:
        reader = c2pa.Reader(mime, io.BytesIO(out), context=ctx)
        store = json.loads(reader.json())
        state = reader.get_validation_state() or ""
    except Exception as e:
        raise SealError(f"signed output could not be read back: {type(e).__name__}: {e}") from e
    if state not in ("Valid", "Trusted"):
        raise SealError(f"signed output does not validate (state {state!r}): "
                        f"{json.dumps(store.get('validation_status', []))[:500]}")
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    return out, active, state


def _finish(*, data: bytes, fmt: str, kind: str, claim_generator: str, params: Optional[dict],
            parent: Optional[bytes], parent_format: Optional[str], config: SafetyConfig, info: SignerInfo,
            wm: Watermarker, wm_id: Optional[str], wm_status: str, source_type: Optional[str],
            description: Optional[str], thumbnail: bool, components: Sequence[Tuple[bytes, str]] = ()) -> Sealed:
    p = _prepare_params(params, config)
    manifest = _build_manifest(fmt=fmt, kind=kind, claim_generator=claim_generator, params=p,
                               source_type=source_type, has_parent=parent is not None, wm=wm, wm_id=wm_id,
                               wm_status=wm_status, description=description, label=GENERATION_LABEL,
                               source_wm_id=_other_id(wm_status), components=len(components))
    out, active, state = _sign(data, fmt, manifest, config, info, parent, parent_format, thumbnail, components)
    sha = hashlib.sha256(out).hexdigest()
    if config.ledger:
        try:
            Ledger(config.ledger_path).record(watermark_id=wm_id, watermark_status=wm_status, watermark_alg=wm.alg,
                                              instance_id=active.get("instance_id"), fmt=fmt, sha256=sha,
                                              manifest=active)
        except Exception as e:
            raise SealError(f"cannot record the manifest in the provenance ledger {config.ledger_path}: {e}") from e
    return Sealed(data=out, fmt=fmt, mime=M.MIME[fmt], watermark_id=wm_id, watermark_status=wm_status,
                  manifest=active, sha256=sha, validation_state=state, signer=info.subject)


def _guard(fn):
    """Any non-SealError inside a seal becomes a SealError: fail closed, one exception type for callers."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except SealError:
            raise
        except M.MediaError as e:
            raise SealError(str(e)) from e
        except Exception as e:
            raise SealError(f"{fn.__name__} failed: {type(e).__name__}: {e}") from e
    return wrapper


def _kind_fmt(fmt: str, kind: str) -> str:
    try:
        f = M.normalize_fmt(fmt)
    except M.MediaError as e:
        raise SealError(str(e))
    if M.KIND[f] != kind:
        raise SealError(f"{f} is not an {kind} format (use one of "
                        f"{', '.join(k for k, v in M.KIND.items() if v == kind)})")
    return f


def _watermark_id_bytes(watermark_id: Optional[str]) -> bytes:
    """The 64-bit ID to embed: the caller's (16 hex chars; a studio derives it from the request so a
    re-render reproduces the same pixels), else a fresh random one."""
    if watermark_id is None:
        return secrets.token_bytes(8)
    try:
        raw = bytes.fromhex(watermark_id)
    except ValueError:
        raw = b""
    if len(raw) != 8:
        raise SealError(f"watermark_id must be 16 hex characters (64 bits), got {watermark_id!r}")
    return raw


def _read_back(status: str, wm_id_b: bytes, detect) -> Tuple[Optional[str], str]:
    """Confirm the mark reads back from the encoded bytes; if it does not (flat or saturated content, too
    short audio), record that honestly instead of claiming an ID. If another ID reads back (an edit kept a
    sealed source's marked samples/pixels and its mark outvoted ours), the status is ``"source_mark_kept"``
    and the manifest names that ID (``watermark.source_id``, via ``_other_id``)."""
    if status != "embedded":
        return None, status
    got, _ = detect()
    if got == wm_id_b.hex():
        return got, status
    if got is not None:
        _other.ids = got
        return None, "source_mark_kept"
    return None, "not_embeddable"


_other = threading.local()


def _other_id(status: str) -> Optional[str]:
    """The ID found instead of ours by this thread's last ``_read_back`` (only for "source_mark_kept")."""
    got = getattr(_other, "ids", None) if status == "source_mark_kept" else None
    _other.ids = None
    return got


HEADROOM = 5


def _with_headroom(img):
    """``img`` with its colour channels clipped to [HEADROOM, 255 - HEADROOM] (alpha untouched)."""
    from PIL import Image
    arr = np.array(img)
    arr[..., :3] = np.clip(arr[..., :3], HEADROOM, 255 - HEADROOM)
    return Image.fromarray(arr, img.mode)


@_guard
def seal_image(image, *, fmt: str = "png", params: dict, claim_generator: str, parent: Optional[bytes] = None,
               parent_format: Optional[str] = None, png_text: Optional[Dict[str, str]] = None,
               config: Optional[SafetyConfig] = None, quality: Optional[int] = None,
               digital_source_type: Optional[str] = None, description: Optional[str] = None, watermark_id: Optional[str] = None,
               components: Sequence[Tuple[bytes, str]] = ()) -> Sealed:
    """Watermark ``image`` (PIL), encode it as PNG (with ``png_text`` tEXt/iTXt chunks) / JPEG / WebP, sign.

    ``components`` ((bytes, format) of sealed outputs) become componentOf ingredients: an image composed of them.

    JPEG/WebP use quality 95 unless ``quality`` is given (JPEG 4:4:4). Raises :class:`SealError`.
    """
    from PIL import Image
    config = config or SafetyConfig()
    f = _kind_fmt(fmt, "image")
    if not isinstance(image, Image.Image):
        raise SealError(f"image must be a PIL.Image, got {type(image).__name__}")
    if png_text and f != "png":
        raise SealError("png_text is only written into PNG files")
    info = signer_for(config)
    wm = WATERMARKERS["image"]
    img = image if image.mode in ("RGB", "RGBA") else image.convert("RGB")
    if f == "jpeg":
        img = img.convert("RGB")
    wm_id_b = _watermark_id_bytes(watermark_id)
    try:
        marked = wm.embed(img, wm_id_b)
        status = "embedded"
    except WatermarkNotApplicable as e:
        marked, status = img, e.status
    data = M.encode_image(marked, f, png_text=png_text, quality=quality)
    last = [None, None]     # (encoded bytes, their read-back decode): the delivered file's pixel hash, below

    def detect_in(d):
        last[:] = [d, M.decode_image(d)]
        return wm.detect(last[1])

    wm_id, status = _read_back(status, wm_id_b, lambda: detect_in(data))
    if status == "not_embeddable":
        # Saturated flat areas (a pure white background) clip the chroma mark away when it is converted back
        # to RGB; HEADROOM levels below 255 / above 0 leave it room.  Only images that failed take this path.
        retry = M.encode_image(wm.embed(_with_headroom(img), wm_id_b), f, png_text=png_text, quality=quality)
        got, _ = _read_back("embedded", wm_id_b, lambda: detect_in(retry))
        if got is not None:
            data, wm_id, status = retry, got, "embedded"
    sealed = _finish(data=data, fmt=f, kind="image", claim_generator=claim_generator, params=params, parent=parent,
                     parent_format=parent_format, config=config, info=info, wm=wm, wm_id=wm_id, wm_status=status,
                     source_type=digital_source_type, description=description, thumbnail=config.thumbnail,
                     components=tuple(components))
    # The read-back already decoded these pixels; the signed PNG is the same image data plus the manifest chunk
    # (checked chunk by chunk, no decompression), so its pixel hash needs no second decode.
    if f == "png" and last[0] is data and M.png_same_but_c2pa(sealed.data, data):
        sealed.pixel_sha256 = M.pixels_sha256(last[1])
    return sealed


@_guard
def seal_audio(samples, *, sample_rate: int, fmt: str = "wav", params: dict, claim_generator: str,
               parent: Optional[bytes] = None, parent_format: Optional[str] = None,
               config: Optional[SafetyConfig] = None, bitrate: str = "192k",
               digital_source_type: Optional[str] = None, description: Optional[str] = None, watermark_id: Optional[str] = None) -> Sealed:
    """Watermark float audio (n,) / (n, ch) in -1..1, encode WAV (PCM16) / FLAC / MP3 (``bitrate``), sign."""
    config = config or SafetyConfig()
    f = _kind_fmt(fmt, "audio")
    if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= int(sample_rate) <= 192000:
        raise SealError(f"sample_rate must be an int in 8000..192000, got {sample_rate!r}")
    sr = int(sample_rate)
    x = M.as_audio(samples)
    info = signer_for(config)
    wm = WATERMARKERS["audio"]
    wm_id_b = _watermark_id_bytes(watermark_id)
    try:
        x, _ = wm.embed((x, sr), wm_id_b)
        status = "embedded"
    except WatermarkNotApplicable as e:
        status = e.status
    data = M.encode_audio(x, sr, f, bitrate=bitrate)
    wm_id, status = _read_back(status, wm_id_b, lambda: wm.detect(M.decode_audio(data, f)))
    return _finish(data=data, fmt=f, kind="audio", claim_generator=claim_generator, params=params, parent=parent,
                   parent_format=parent_format, config=config, info=info, wm=wm, wm_id=wm_id, wm_status=status,
                   source_type=digital_source_type, description=description, thumbnail=False)


@_guard
def seal_video(frames, *, fps: float, audio: Optional[Tuple[Any, int]] = None, fmt: str = "mp4", params: dict,
               claim_generator: str, parent: Optional[bytes] = None, parent_format: Optional[str] = None,
               config: Optional[SafetyConfig] = None, digital_source_type: Optional[str] = None,
               description: Optional[str] = None, watermark_id: Optional[str] = None) -> Sealed:
    """Watermark every frame ((T, H, W, 3) uint8 RGB or list of PIL), optional ``audio=(samples, rate)``
    (marked with the audio watermark when long enough, AAC; MP4 only), encode H.264 MP4 (CRF
    ``config.video_crf``, yuv420p) or an animated GIF (one palette for the clip, Floyd-Steinberg), sign.

    ``fmt="webm"`` is refused (c2pa cannot sign WebM; nothing unsigned leaves). ``parent`` (an image or a clip,
    for image-to-video / video-to-video) becomes the manifest's parentOf ingredient. The mark is read back from
    the encoded bytes: ``watermark_status`` says whether it survived (a GIF palette can lose it)."""
    config = config or SafetyConfig()
    f = _kind_fmt(fmt, "video")
    if not (isinstance(fps, (int, float)) and 0 < fps <= 240):
        raise SealError(f"fps must be in (0, 240], got {fps!r}")
    arr = M.as_frames(frames)
    info = signer_for(config)
    wm = WATERMARKERS["video"]
    wm_id_b = _watermark_id_bytes(watermark_id)
    try:
        arr = wm.embed(arr, wm_id_b)
        status = "embedded"
    except WatermarkNotApplicable as e:
        status = e.status
    aud = None
    if audio is not None:
        samples, rate = audio
        ax = M.as_audio(samples)
        try:
            ax, _ = WATERMARKERS["audio"].embed((ax, int(rate)), wm_id_b)
        except WatermarkNotApplicable:
            pass    # the video frames carry the ID; a short soundtrack stays unmarked
        aud = (ax, int(rate))
    data = M.encode_video(arr, float(fps), f, aud, crf=config.video_crf)
    wm_id, status = _read_back(status, wm_id_b, lambda: wm.detect(M.decode_video_frames(data, f)))
    return _finish(data=data, fmt=f, kind="video", claim_generator=claim_generator, params=params, parent=parent,
                   parent_format=parent_format, config=config, info=info, wm=wm, wm_id=wm_id, wm_status=status,
                   source_type=digital_source_type, description=description, thumbnail=False)
