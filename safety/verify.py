"""verify(): C2PA state + watermark + ledger for one file, as a report with an exit code."""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Union

from . import media as M
from .config import GENERATION_LABEL, SafetyConfig
from .ledger import Ledger
from .pki import c2pa_settings

EXIT_OK, EXIT_INVALID, EXIT_NO_CREDENTIALS, EXIT_UNREADABLE = 0, 1, 2, 3
# verify() reads a whole file into memory and decodes its pixels for the watermark; anyone can hand it a file
# (the CLI, the web app's upload), so both are bounded before the work. A PNG declaring 20000x20000 pixels
# can be a few KB on disk: the declared size is checked from the header, before decoding.
MAX_VERIFY_BYTES = 512 << 20
MAX_VERIFY_PIXELS = 8192 * 8192


class _TooLarge(Exception):
    """The input is over one of the limits above (the message names it)."""


@dataclass
class VerifyReport:
    state: str                                   # "trusted" | "valid" | "invalid" | "none" | "unreadable"
    exit_code: int                               # 0 trusted/valid, 1 invalid/tampered, 2 no credentials, 3 unreadable
    fmt: Optional[str] = None
    mime: Optional[str] = None
    manifest: Optional[dict] = None              # summary of the active manifest (see _summary)
    failures: List[dict] = field(default_factory=list)    # c2pa validation failures {code, url, explanation}
    watermark_found: bool = False
    watermark_id: Optional[str] = None
    watermark_confidence: float = 0.0
    ledger_match: bool = False
    recovered_manifest: Optional[dict] = None    # summary of the ledger's manifest for the watermark ID
    video: Optional[dict] = None                 # clips: frames, fps, duration_s, width, height (from the header)
    error: Optional[str] = None                  # why the file could not be read (exit 3) or a secondary problem
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))

    def render(self) -> str:
        label = {"trusted": "TRUSTED (signed by a certificate this studio trusts)",
                 "valid": "VALID (intact and signed; signer not in this studio's trust anchors)",
                 "invalid": "INVALID (tampered or bad signature)",
                 "none": "NO CONTENT CREDENTIALS",
                 "unreadable": "UNREADABLE"}[self.state]
        lines = [f"C2PA: {label}  [exit {self.exit_code}]"]
        if self.fmt:
            lines.append(f"format: {self.fmt} ({self.mime})")
        if self.video:
            v = self.video
            lines.append(f"clip: {v.get('width')}x{v.get('height')}, {v.get('frames')} frames, {v.get('fps')} fps, "
                         f"{v.get('duration_s')} s")
        if self.error:
            lines.append(f"error: {self.error}")
        for f in self.failures:
            lines.append(f"  failure: {f.get('code')}: {f.get('explanation', '')}")
        m = self.manifest
        if m:
            lines += _render_summary(m)
        if self.watermark_found:
            voted = " voted across frames" if self.video else ""
            lines.append(f"watermark: found{voted}, ID {self.watermark_id} "
                         f"(bit agreement {self.watermark_confidence:.2f})")
        else:
            lines.append("watermark: not found")
        if self.ledger_match:
            lines.append("ledger: this watermark ID was issued by this studio; recorded manifest:")
            lines += ["  " + s for s in _render_summary(self.recovered_manifest or {})]
        for n in self.notes:
            lines.append(f"note: {n}")
        return "\n".join(lines)


def _render_summary(m: dict) -> List[str]:
    out = [f"claim generator: {m.get('claim_generator')}",
           f"signed by: {m.get('signer')} (issuer {m.get('issuer')})"]
    for a in m.get("actions", []):
        out.append(f"action: {a.get('action')}" + (f" [{a['digitalSourceType'].rsplit('/', 1)[-1]}]"
                                                    if a.get("digitalSourceType") else ""))
    for i in m.get("ingredients", []):
        out.append(f"ingredient: {i.get('title')} ({i.get('relationship')})"
                   + (" with its own manifest" if i.get("has_manifest") else ""))
    if m.get("params") is not None:
        out.append("params: " + json.dumps(m["params"], sort_keys=True)[:400])
    if m.get("watermark_status"):
        out.append(f"watermark status at sealing: {m['watermark_status']}")
    return out


def summarize_manifest(active: dict) -> dict:
    """Compact, JSON-able view of a c2pa active manifest (from Reader.json())."""
    s = {"label": active.get("label"), "instance_id": active.get("instance_id"), "title": active.get("title"),
         "claim_generator": None, "actions": [], "digital_source_type": None, "ingredients": [], "params": None,
         "watermark_status": None, "soft_binding": None, "signer": None, "issuer": None, "signed_at": None}
    cgi = active.get("claim_generator_info") or []
    if cgi:
        c = cgi[0]
        s["claim_generator"] = c.get("org.diffusion-studio.claim_generator") or \
            " ".join(x for x in (c.get("name"), c.get("version")) if x)
    elif active.get("claim_generator"):
        s["claim_generator"] = active["claim_generator"]
    for a in active.get("assertions", []):
        lab, data = a.get("label", ""), a.get("data") or {}
        if lab.startswith("c2pa.actions"):
            for act in data.get("actions", []):
                s["actions"].append({k: act.get(k) for k in ("action", "digitalSourceType", "description")
                                     if act.get(k) is not None})
                if act.get("digitalSourceType") and not s["digital_source_type"]:
                    s["digital_source_type"] = act["digitalSourceType"]
        elif lab == GENERATION_LABEL:
            s["params"] = data.get("params")
            s["watermark_status"] = data.get("watermark_status")
        elif lab == "c2pa.soft-binding":
            s["soft_binding"] = {"alg": data.get("alg"), "blocks": data.get("blocks")}
    for ing in active.get("ingredients", []):
        s["ingredients"].append({"title": ing.get("title"), "relationship": ing.get("relationship"),
                                 "format": ing.get("format"), "has_manifest": bool(ing.get("active_manifest"))})
    si = active.get("signature_info") or {}
    s["signer"] = si.get("common_name") or si.get("issuer")
    s["issuer"] = si.get("issuer")
    s["signed_at"] = si.get("time")
    return s


def _load(path_or_bytes) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        size = len(path_or_bytes)
    else:
        size = Path(path_or_bytes).stat().st_size
    if size > MAX_VERIFY_BYTES:
        raise _TooLarge(f"file is {size / 2**20:.0f} MiB, over the verify limit of {MAX_VERIFY_BYTES >> 20} MiB")
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    return Path(path_or_bytes).read_bytes()


def _check_pixels(data: bytes, fmt: str) -> None:
    """Refuse an image whose header declares more pixels than MAX_VERIFY_PIXELS, before anything decodes it."""
    if M.KIND[fmt] != "image":
        return
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            # PIL warns (and past twice its own limit raises) on huge images; ours is the lower, named limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        raise _TooLarge(f"image declares more than {MAX_VERIFY_PIXELS:,} pixels, the verify limit") from None
    except Exception:  # noqa: BLE001 - a header PIL cannot parse: the decode below reports it as unreadable
        return
    if w * h > MAX_VERIFY_PIXELS:
        raise _TooLarge(f"image is {w}x{h} = {w * h:,} pixels, over the verify limit of {MAX_VERIFY_PIXELS:,}")


def _detect_watermark(data: bytes, fmt: str):
    from .seal import WATERMARKERS
    if M.KIND[fmt] == "image":
        img = M.decode_image(data)
        return (*WATERMARKERS["image"].detect(img), None)
    if M.KIND[fmt] == "audio":
        return (*WATERMARKERS["audio"].detect(M.decode_audio(data, fmt)), None)
    frames, info = M.decode_video_frames(data, fmt, with_info=True)
    got = WATERMARKERS["video"].detect(frames)
    return got[0], got[1], info


def verify(path_or_bytes: Union[str, Path, bytes], config: Optional[SafetyConfig] = None) -> VerifyReport:
    """Check a file's C2PA credentials (against this studio's anchors), its watermark and the ledger.

    Never raises for bad input: unreadable or unsupported files give ``state="unreadable"``, exit code 3.
    A file without credentials whose watermark matches the ledger still reports exit 2, with the recovered
    manifest in ``recovered_manifest``.
    """
    import c2pa
    config = config or SafetyConfig()
    try:
        data = _load(path_or_bytes)
    except OSError as e:
        return VerifyReport(state="unreadable", exit_code=EXIT_UNREADABLE, error=f"cannot read file: {e}")
    except _TooLarge as e:
        return VerifyReport(state="unreadable", exit_code=EXIT_UNREADABLE, error=str(e))
    if not data:
        return VerifyReport(state="unreadable", exit_code=EXIT_UNREADABLE, error="empty file")
    fmt = M.sniff(data)
    if fmt is None:
        return VerifyReport(state="unreadable", exit_code=EXIT_UNREADABLE,
                            error="unknown file type (supported: PNG, JPEG, WebP, WAV, FLAC, MP3, MP4, GIF)")
    if fmt.startswith("unsupported:"):
        name = M.UNSUPPORTED_NAMES.get(fmt.split(":", 1)[1], fmt)
        return VerifyReport(state="unreadable", exit_code=EXIT_UNREADABLE,
                            error=f"unsupported format {name} (supported: PNG, JPEG, WebP, WAV, FLAC, MP3, MP4, GIF)")
    rep = VerifyReport(state="none", exit_code=EXIT_NO_CREDENTIALS, fmt=fmt, mime=M.MIME[fmt])
    try:
        _check_pixels(data, fmt)
    except _TooLarge as e:
        rep.state, rep.exit_code, rep.error = "unreadable", EXIT_UNREADABLE, str(e)
        return rep

    # media must decode, else the file is unreadable whatever the manifest says
    wm_err = None
    try:
        wid, conf, rep.video = _detect_watermark(data, fmt)
    except Exception as e:
        wid, conf, wm_err = None, 0.0, f"{type(e).__name__}: {e}"

    reader_err = None
    try:
        ctx = c2pa.Context.from_dict(c2pa_settings(config))
        reader = c2pa.Reader.try_create(M.MIME[fmt], io.BytesIO(data), None, ctx)
    except Exception as e:
        reader, reader_err = None, f"{type(e).__name__}: {e}"

    if wm_err is not None and (reader_err is not None or reader is None):
        rep.state, rep.exit_code = "unreadable", EXIT_UNREADABLE
        rep.error = f"file is corrupt or truncated: {reader_err or wm_err}"
        return rep
    if wm_err is not None:
        rep.notes.append(f"media could not be decoded for the watermark check: {wm_err}")

    if reader_err is not None:
        rep.state, rep.exit_code = "invalid", EXIT_INVALID
        rep.error = f"C2PA data present but unparsable: {reader_err}"
    elif reader is not None:
        try:
            store = json.loads(reader.json())
            vstate = (reader.get_validation_state() or "").lower()
        except Exception as e:
            store, vstate = {}, "invalid"
            rep.error = f"C2PA manifest unreadable: {type(e).__name__}: {e}"
        active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
        if active:
            rep.manifest = summarize_manifest(active)
        vr = store.get("validation_results", {}).get("activeManifest", {}) if store else {}
        rep.failures = [{k: f.get(k) for k in ("code", "url", "explanation")} for f in vr.get("failure", [])]
        if not rep.failures and store.get("validation_status"):
            rep.failures = [{k: f.get(k) for k in ("code", "url", "explanation")}
                            for f in store["validation_status"] if "untrusted" not in str(f.get("code", ""))]
        if vstate == "trusted":
            rep.state, rep.exit_code = "trusted", EXIT_OK
        elif vstate == "valid":
            rep.state, rep.exit_code = "valid", EXIT_OK
            rep.notes.append("signature intact but the signing certificate does not chain to this studio's trust "
                             "anchors (signingCredential.untrusted)")
        else:
            rep.state, rep.exit_code = "invalid", EXIT_INVALID
            codes = {f.get("code") for f in rep.failures}
            if any(c and ("expired" in c or "credential" in c.lower()) for c in codes):
                rep.notes.append("signing certificate problem: " + ", ".join(sorted(c for c in codes if c)))

    if wid is not None:
        rep.watermark_found, rep.watermark_id, rep.watermark_confidence = True, wid, float(conf)
        try:
            hit = Ledger(config.ledger_path).lookup(wid)
        except Exception as e:
            hit = None
            rep.notes.append(f"ledger unavailable: {e}")
        if hit is not None:
            rep.ledger_match = True
            rep.recovered_manifest = summarize_manifest(hit["manifest"])
            if rep.state == "none":
                rep.notes.append("no embedded credentials (stripped or re-encoded); the watermark traced the file to "
                                 f"a manifest this studio issued ({hit['fmt']}, sha256 {hit['sha256'][:16]}...)")
        elif rep.state == "none":
            rep.notes.append("watermark ID not in this studio's ledger (issued elsewhere or by another install)")
    if rep.manifest and rep.watermark_id and rep.manifest.get("soft_binding"):
        import base64
        vals = [b.get("value") for b in rep.manifest["soft_binding"].get("blocks") or []]
        if base64.b64encode(bytes.fromhex(rep.watermark_id)).decode() not in vals:
            rep.notes.append("watermark ID differs from the manifest's soft binding")
    return rep
