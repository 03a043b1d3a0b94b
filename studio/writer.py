"""The one place where generated media become bytes a user gets.

Every front door (Python API, CLI, batch jobs, UI) delivers through `seal_outputs` and, for files,
`write_atomic`: watermark -> encode -> sign happens in the safety layer (through the request's modality,
`studio.modalities`), then the sealed bytes are written with temp-file + rename so a crash never leaves a
half-written output. Nothing here hands out unsealed media: in-memory images and clips are decoded back
from the sealed bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import safety
from safety.media import UNSIGNABLE

from .config import config_dir
from .errors import RequestError
from .metadata import claim_generator, output_params, png_text_for
from .modalities import EXTENSIONS, WRITABLE_SUFFIXES, for_format
from .modalities.image import image_sha256, pixel_sha256
from .schema import GenerationRecord, OutputRecord
OVERWRITE_HINT = "pass --overwrite (overwrite=True in Python) to replace it"


class OutputExists(RequestError):
    """An output would replace an existing file and overwriting was not asked for."""


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
        """The delivered image, decoded from the sealed bytes (so it carries the watermark); for a clip, its
        first frame."""
        media = for_format(self.record.format).decode(self.data)
        if isinstance(media, tuple):
            raise AttributeError("an audio output has no image: use .audio")
        return media[0] if isinstance(media, list) else media

    @property
    def audio(self):
        """The delivered sound, decoded from the sealed bytes (so it carries the watermark): (samples, rate)."""
        return for_format(self.record.format).decode(self.data)

    @property
    def frames(self) -> list:
        """The delivered clip's frames (PIL), decoded from the sealed bytes; an image is a one-frame clip."""
        media = for_format(self.record.format).decode(self.data)
        return media if isinstance(media, list) else [media]

    def save(self, path: os.PathLike | str, *, overwrite: bool = False) -> Path:
        """Write the sealed bytes (byte-identical, so the C2PA manifest stays valid); an existing file is
        refused (`OutputExists`) unless `overwrite`."""
        target = Path(path)
        write_atomic(target, self.data, overwrite=overwrite)
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


def watermark_id_for(record: GenerationRecord, index: int, seed: int) -> str:
    """64-bit watermark ID derived from what determines the pixels (never timings), so re-rendering a
    request reproduces identical pixels, watermark included; different outputs get different IDs."""
    # Keyed on the single-image request with this seed: image i of a batch seeded s equals the single
    # image seeded s+i, watermark included.
    single = record.request.model_copy(update={"seed": seed, "batch": 1})
    # a best-of-N candidate is marked like the single render of its seed: the ranking does not make pixels
    key = {"request": single.model_dump(mode="json", exclude={"best_of", "reward"}), "model": record.model_hash,
           "loras": record.lora_hashes, "inputs": record.input_hashes}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


_umask_lock = threading.Lock()


def _umask() -> int:
    """The process umask. Linux reports it in /proc without changing it; elsewhere it can only be read by
    setting it, which briefly affects files other threads create, hence the lock and the immediate restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part.

    With `overwrite=False` an existing `path` is never replaced, even one created by someone else after
    the up-front `check_output_targets` (the final link refuses an existing name atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 (right for a temp file), but the renamed file is the user's output and gets
        # the permissions any file they create would get.
        mode = 0o666 & ~_umask()
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:  # pragma: no cover - Windows
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _link_no_clobber(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExists(f"{path} already exists: {OVERWRITE_HINT}") from None
    except OSError:
        # No hard links on this file system (FAT, some network shares): a check then a rename, which
        # leaves only the window between the two.
        if os.path.lexists(path):
            raise OutputExists(f"{path} already exists: {OVERWRITE_HINT}") from None
        os.replace(tmp, path)
        return
    tmp.unlink(missing_ok=True)


def _is_dir_target(out: Path) -> bool:
    text = str(out)
    return out.is_dir() or text.endswith(os.sep) or (os.altsep is not None and text.endswith(os.altsep))


def _check_suffix(out: Path, fmt: str) -> None:
    suffix = out.suffix.lower()
    if not suffix:
        return  # a bare name gets the format's extension (documented): `-o star` writes star.png
    if suffix.lstrip(".") in UNSIGNABLE:
        raise RequestError(f"cannot write {out.name!r}: {UNSIGNABLE[suffix.lstrip('.')]}")
    if suffix not in WRITABLE_SUFFIXES:
        raise RequestError(f"cannot write {out.name!r}: outputs are {', '.join(WRITABLE_SUFFIXES)} files "
                           f"(or a folder: end the path with {os.sep})")
    named = WRITABLE_SUFFIXES[suffix]
    if named != fmt:
        if for_format(named) is not for_format(fmt):  # a clip's name for an image request, or the reverse
            raise RequestError(f"{out.name!r} names a {named} file but the output format is {fmt}: "
                               f"{for_format(named).name} needs a {for_format(named).name} model, this request "
                               f"makes {for_format(fmt).name}s")
        raise RequestError(f"{out.name!r} names a {named} file but the output format is {fmt}: make them agree")


def _check_folder(folder: Path, *, create: bool) -> None:
    """Fail now, not after minutes of rendering, when the folder cannot receive files."""
    probe = folder
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        what = "is not a folder" if probe.exists() else "does not exist"
        raise RequestError(f"cannot write into {folder}: {probe} {what}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RequestError(f"cannot write into {folder}: {probe} is not writable")
    if create and probe != folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RequestError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output_targets(
    out: Optional[os.PathLike | str],
    fmt: str = "png",
    count: int = 1,
    *,
    seed: Optional[int] = None,
    names: Optional[Sequence[str]] = None,
    inputs: Optional[dict] = None,
    overwrite: bool = False,
    replaceable: Iterable[os.PathLike | str] = (),
    create: bool = True,
) -> list[Path]:
    """The one up-front check of where outputs will go, shared by the engine (API, CLI, UI) and the job
    validator, so every front door refuses the same things before any model is loaded:

    * an extension the studio cannot write, or one that disagrees with `fmt`;
    * a folder that cannot be created or written to (created here unless `create=False`);
    * an output that is a folder, or is the same file as one of `inputs` (`{"init image": path, ...}`;
      values that are not paths are ignored) -- refused even with `overwrite`;
    * an existing file, unless `overwrite` or it is in `replaceable` (a job's own interrupted writes).

    `out` is a file or folder as `output_paths` reads it; `names` instead lists file names inside the folder
    `out` (jobs name their own files). Returns the planned paths: empty for a folder when `seed` is None,
    since the names carry the seed chosen later (the final write still never replaces a file)."""
    if out is None:
        return []
    out = Path(out).expanduser()
    as_dir = names is not None or _is_dir_target(out)
    if not as_dir:
        _check_suffix(out, fmt)
    _check_folder(out if as_dir else (out.parent if str(out.parent) else Path(".")), create=create)
    if names is not None:
        paths = [out / name for name in names]
    elif as_dir and seed is None:
        paths = []
    else:
        paths = output_paths(out, fmt, [(seed or 0) + i for i in range(count)])
    own = {Path(p).resolve() for p in replaceable}
    sources = {what: Path(v).expanduser() for what, v in (inputs or {}).items() if isinstance(v, (str, Path))}
    existing = []
    for path in paths:
        for what, source in sources.items():
            if _same_file(path, source):
                raise RequestError(f"output {path} is the {what}: write the result to another file")
        if path.is_dir():
            raise RequestError(f"output {path} is a folder")
        if os.path.lexists(path) and not overwrite and path.resolve() not in own:
            existing.append(path)
    if existing:
        more = f" (and {len(existing) - 1} more output(s))" if len(existing) > 1 else ""
        raise OutputExists(f"{existing[0]} already exists{more}: {OVERWRITE_HINT}")
    return paths


def output_paths(out: Optional[Path], fmt: str, seeds: Sequence[int]) -> list[Optional[Path]]:
    """`out` is a file (batch items get `-1`, `-2`... suffixes) or an existing/`/`-ended directory."""
    if out is None:
        return [None] * len(seeds)
    ext = EXTENSIONS[fmt]
    if _is_dir_target(out):
        return [out / f"studio-{seed}{ext}" for seed in seeds]
    stem = out
    if WRITABLE_SUFFIXES.get(out.suffix.lower()) == fmt:
        stem, ext = out.with_suffix(""), out.suffix  # the user's spelling: -o a.jpeg writes a.jpeg
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
    overwrite: bool = False,
    components: Sequence[tuple[bytes, str]] = (),
) -> list[Output]:
    """Seal each output (image or clip: watermark, encode with metadata, sign) and write it if `out` is given;
    an existing file is replaced only with `overwrite`. `parent` is one ingredient for every output, or a list
    of one per output (a hires batch: each output's own sealed first pass)."""
    fmt = record.request.output_format
    kind = for_format(fmt)
    paths = output_paths(out, fmt, seeds)
    outputs = []
    for index, (media, seed, path) in enumerate(zip(images, seeds, paths)):
        sealed = kind.seal(
            media,
            fmt=fmt,
            params=output_params(record, index, seed),
            claim_generator=claim_generator(record.model_name),
            parent=parent[index] if isinstance(parent, list) else parent,
            parent_format=parent_format,
            png_text=png_text_for(record, index, seed),
            config=safety_config(),
            watermark_id=watermark_id_for(record, index, seed),
            **({"components": components} if components else {}),  # sealed control maps (images only)
        )
        rec = OutputRecord(
            index=index, seed=seed, format=fmt, sha256=hashlib.sha256(sealed.data).hexdigest(),
            pixel_sha256=sealed.pixel_sha256, generated_sha256=sealed.generated_sha256,
            size_bytes=len(sealed.data), path=str(path) if path else None,
            width=sealed.width, height=sealed.height, frames=sealed.frames, fps=sealed.fps,
            duration_s=sealed.duration_s, sample_rate=sealed.sample_rate, channels=sealed.channels,
            watermark_id=sealed.watermark_id, watermark_status=sealed.watermark_status,
        )
        if path is not None:
            write_atomic(path, sealed.data, overwrite=overwrite)
        outputs.append(Output(data=sealed.data, record=rec, manifest=sealed.manifest))
    return outputs


def seal_derived(image, path: Optional[Path] = None, *, model_name: str, params: dict,
                 source: Optional[bytes] = None, source_format: Optional[str] = None,
                 components: Sequence[tuple[bytes, str]] = (), description: Optional[str] = None,
                 png_text: Optional[dict] = None) -> Output:
    """Seal (and write, given a path) an image the studio derived from its own work: the demo's contact
    sheet, live previews of a generation in flight, a clip's waveform picture (`source`: the sealed clip, its
    parentOf ingredient), an X/Y/Z grid (`components`: the sealed cells, (bytes, format), as ingredients)."""
    sealed = safety.seal_image(image, fmt="png", params=params, claim_generator=claim_generator(model_name),
                               config=safety_config(), parent=source, parent_format=source_format,
                               components=components, description=description, png_text=png_text)
    if path is not None:
        write_atomic(path, sealed.data)
    rec = OutputRecord(index=0, seed=0, format="png", sha256=hashlib.sha256(sealed.data).hexdigest(),
                       pixel_sha256=pixel_sha256(sealed.data), size_bytes=len(sealed.data),
                       path=str(path) if path else None, width=image.width, height=image.height,
                       watermark_id=sealed.watermark_id, watermark_status=sealed.watermark_status)
    return Output(data=sealed.data, record=rec, manifest=sealed.manifest)
