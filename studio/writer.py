"""The one place where generated pixels become bytes a user gets.

Every front door (Python API, CLI, batch jobs, UI) delivers through `seal_outputs` and, for files,
`write_atomic`: watermark -> encode -> sign happens in `safety.seal_image`, then the sealed bytes are
written with temp-file + rename so a crash never leaves a half-written output. Nothing here hands out an
unsealed image: in-memory images are decoded back from the sealed bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import safety

from .config import config_dir
from .metadata import claim_generator, output_params, png_text_for
from .schema import GenerationRecord, OutputRecord

EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


@dataclass
class Output:
    """A sealed output. `data` is exactly what was (or would be) written to disk."""

    data: bytes
    record: OutputRecord
    manifest: dict = field(default_factory=dict, repr=False)

    @property
    def path(self) -> Optional[Path]:
        return Path(self.record.path) if self.record.path else None

    @property
    def image(self):
        """The delivered image, decoded from the sealed bytes (so it carries the watermark)."""
        from PIL import Image

        im = Image.open(io.BytesIO(self.data))
        im.load()
        return im

    def save(self, path: os.PathLike | str) -> Path:
        """Write the sealed bytes (byte-identical, so the C2PA manifest stays valid)."""
        target = Path(path)
        write_atomic(target, self.data)
        self.record.path = str(target)
        return target


_config: Optional["safety.SafetyConfig"] = None


def safety_config() -> "safety.SafetyConfig":
    """The process-wide safety configuration, rooted in the studio's config dir (signer, dev CA, ledger).

    A real signer comes from `DIFFUSION_STUDIO_C2PA_CERT` (PEM chain) and `DIFFUSION_STUDIO_C2PA_KEY`;
    without them the safety layer makes a local development CA. `DIFFUSION_STUDIO_HASH_PROMPTS=1` stores
    prompts in manifests as hashes."""
    global _config
    home = config_dir()
    if _config is None or Path(_config.config_dir) != home:
        env = os.environ
        _config = safety.SafetyConfig(
            config_dir=home,
            cert_chain=env.get("DIFFUSION_STUDIO_C2PA_CERT") or None,
            private_key=env.get("DIFFUSION_STUDIO_C2PA_KEY") or None,
            tsa_url=env.get("DIFFUSION_STUDIO_C2PA_TSA") or None,
            hash_prompts=env.get("DIFFUSION_STUDIO_HASH_PROMPTS", "").lower() in ("1", "true", "yes"),
        )
    return _config


def pixel_sha256(data: bytes) -> str:
    """Hash of the decoded pixels (mode + size + bytes) of an encoded image."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        h = hashlib.sha256(f"{im.mode}:{im.width}x{im.height}:".encode())
        h.update(im.tobytes())
    return h.hexdigest()


def image_sha256(image) -> str:
    """Hash of a PIL image's pixels in the form `pixel_sha256` uses (RGB/RGBA as the seal encodes them)."""
    im = image if image.mode in ("RGB", "RGBA") else image.convert("RGB")
    h = hashlib.sha256(f"{im.mode}:{im.width}x{im.height}:".encode())
    h.update(im.tobytes())
    return h.hexdigest()


def watermark_id_for(record: GenerationRecord, index: int, seed: int) -> str:
    """64-bit watermark ID derived from what determines the pixels (never timings), so re-rendering a
    request reproduces identical pixels, watermark included; different outputs get different IDs."""
    # Keyed on the single-image request with this seed: image i of a batch seeded s equals the single
    # image seeded s+i, watermark included.
    single = record.request.model_copy(update={"seed": seed, "batch": 1})
    key = {"request": single.model_dump(mode="json"), "model": record.model_hash,
           "loras": record.lora_hashes, "inputs": record.input_hashes}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def output_paths(out: Optional[Path], fmt: str, seeds: Sequence[int]) -> list[Optional[Path]]:
    """`out` is a file (batch items get `-1`, `-2`... suffixes) or an existing/`/`-ended directory."""
    if out is None:
        return [None] * len(seeds)
    ext = EXTENSIONS[fmt]
    if out.is_dir() or str(out).endswith(os.sep):
        return [out / f"studio-{seed}{ext}" for seed in seeds]
    stem = out.with_suffix("") if out.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"} else out
    if len(seeds) == 1:
        return [stem.with_name(stem.name + ext)]
    return [stem.with_name(f"{stem.name}-{i}{ext}") for i in range(len(seeds))]


def seal_outputs(
    images: Sequence,
    record: GenerationRecord,
    *,
    seeds: Sequence[int],
    out: Optional[Path] = None,
    parent: Optional[bytes] = None,
    parent_format: Optional[str] = None,
) -> list[Output]:
    """Seal each image (watermark, encode with metadata, sign) and write it if `out` is given."""
    fmt = record.request.output_format
    paths = output_paths(out, fmt, seeds)
    outputs = []
    for index, (image, seed, path) in enumerate(zip(images, seeds, paths)):
        sealed = safety.seal_image(
            image,
            fmt=fmt,
            params=output_params(record, index, seed),
            claim_generator=claim_generator(record.model_name),
            parent=parent,
            parent_format=parent_format,
            png_text=png_text_for(record, index, seed) if fmt == "png" else None,
            config=safety_config(),
            watermark_id=watermark_id_for(record, index, seed),
        )
        rec = OutputRecord(
            index=index, seed=seed, format=fmt, sha256=hashlib.sha256(sealed.data).hexdigest(),
            pixel_sha256=pixel_sha256(sealed.data), generated_sha256=image_sha256(image),
            size_bytes=len(sealed.data), path=str(path) if path else None,
            width=image.width, height=image.height,
            watermark_id=sealed.watermark_id, watermark_status=sealed.watermark_status,
        )
        if path is not None:
            write_atomic(path, sealed.data)
        outputs.append(Output(data=sealed.data, record=rec, manifest=sealed.manifest))
    return outputs


def seal_derived(image, path: Optional[Path] = None, *, model_name: str, params: dict) -> Output:
    """Seal (and write, given a path) an image the studio derived from its own work: the demo's contact
    sheet, live previews of a generation in flight."""
    sealed = safety.seal_image(image, fmt="png", params=params, claim_generator=claim_generator(model_name),
                               config=safety_config())
    if path is not None:
        write_atomic(path, sealed.data)
    rec = OutputRecord(index=0, seed=0, format="png", sha256=hashlib.sha256(sealed.data).hexdigest(),
                       pixel_sha256=pixel_sha256(sealed.data), size_bytes=len(sealed.data),
                       path=str(path) if path else None, width=image.width, height=image.height,
                       watermark_id=sealed.watermark_id, watermark_status=sealed.watermark_status)
    return Output(data=sealed.data, record=rec, manifest=sealed.manifest)
