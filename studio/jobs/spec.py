"""Job files: parse `.txt` / `.jsonl` / `.csv` / `.yaml` (`.yml`, `.json`) into validated items.

Every item is a mapping of request fields (any field of `studio.schema.GenerationRequest`) plus:

* `id`      -- optional stable name of the item (unique in the file); otherwise the item's identity is a hash
               of its content (see `item_key`),
* `repeats` -- render the item N times (1 by default); each repeat is its own item `ID`, `ID#1`, `ID#2` ...

Aliases: `init` = `init_image`, `negative` = `negative_prompt`. Paths (`init_image`, `mask`, LoRA paths, and
models written as `./x` or `../x`) are relative to the job file.

Job-level defaults, lowest precedence first: the file's header (`defaults:` mapping in yaml/json, a first jsonl
line `{"defaults": {...}, "seed": N}`), then the command-line flags (`--model`, `--set key=value`), then the
item itself.

Identity and seeds (the contract that makes a job give the same files on 1 or N workers, in any order):

* base key = the explicit `id`, else `h-` + the first 16 hex digits of sha256 over the item's canonical content:
  the validated request as JSON (`exclude_defaults`, sorted keys) with the paths as written in the file and
  without `model`, `device`, `dtype`, `memory`, `accelerate` (they choose *how* or *with what* an item is
  rendered, not *what*: the same prompt gets the same seed on every model, so models compare fairly).
* repeat r of an item (0-based) has key `base` for r = 0 and `base#r` after; identical content appearing
  twice in a file simply continues the repeat count.
* seed = an explicit `seed` (+ r * batch for repeats), else
  `int.from_bytes(sha256(f"studio-jobs/v1:{job_seed}:{key}")[:8], "big") % 2**32`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from ..errors import RequestError
from ..schema import GenerationRequest, LoraRef, Outpaint, Span
from .checks import image_problem, sampler_problem

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".csv": "csv", ".yaml": "yaml", ".yml": "yaml", ".json": "yaml"}
JOB_FIELDS = {"id", "repeats"}
ALIASES = {"init": "init_image", "negative": "negative_prompt", "lora": "loras"}
NOT_IDENTITY = {"model", "device", "dtype", "memory", "accelerate"}
MAX_REPEATS = 10_000
# Bounds checked before parsing, so a wrong or hostile file costs a stat and a line count, not minutes of
# validation and gigabytes of items.
MAX_FILE_BYTES = 16 * 2**20
MAX_ITEMS = 100_000  # items after repeats
SEED_SPACE = 2**32
_REQUEST_FIELDS = set(GenerationRequest.model_fields)


class JobFileError(RequestError):
    """The job file cannot be read at all (unknown format, not UTF-8, broken YAML, a malformed CSV header,
    a duplicate YAML key...). `line` is where, when known; `load_job` prefixes `FILE:LINE:`."""

    def __init__(self, message: str, line: Optional[int] = None):
        super().__init__(message)
        self.line = line


@dataclass
class RawItem:
    line: int
    fields: dict


@dataclass
class Invalid:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class JobItem:
    """One unit of work: one request (possibly `batch` images) with a stable key and seed."""

    key: str
    line: int
    request: GenerationRequest  # paths resolved, seed set, model set (when known)
    repeat: int = 0
    explicit_id: Optional[str] = None
    name: str = ""  # safe file stem
    explicit_seed: Optional[int] = None

    @property
    def model(self) -> Optional[str]:
        return self.request.model


@dataclass
class JobSpec:
    source: Optional[Path]
    file_sha256: str
    job_seed: Optional[int]  # from the header; the CLI flag wins
    items: list[JobItem] = field(default_factory=list)
    invalid: list[Invalid] = field(default_factory=list)
    defaults: dict = field(default_factory=dict)


# -- reading files --------------------------------------------------------------------------------------------
def _coerce_text_value(key: str, value: str) -> Any:
    """Values that come as text (txt overrides, csv cells) for fields that are not scalars."""
    value = value.strip()
    if key == "loras":
        return [LoraRef.parse(p.strip()).model_dump() for p in re.split(r"[;\n]", value) if p.strip()]
    if key == "outpaint":
        return Outpaint.parse(value).model_dump()
    if key == "memory":
        return json.loads(value)
    if key == "span":  # the CLI's START:END (seconds), as `--span` takes it
        return Span.parse(value).model_dump()
    return value


def _looks_like_json(line: str) -> bool:
    if not line.startswith(("{", "[")):
        return False
    try:
        return isinstance(json.loads(line), (dict, list))
    except ValueError:
        return False  # `{a|b}` wildcards, `[cat:dog:5]` prompt editing: prompts


def _read_txt(text: str) -> tuple[dict, list[RawItem], list[Invalid]]:
    """One prompt a line; `#` comments and blank lines are skipped; ` | key=value` overrides may follow."""
    items, bad = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _looks_like_json(line):
            # rendering the JSON text as a prompt is never what was meant
            bad.append(Invalid(number, "this line is JSON, not a prompt: put JSON items in a .jsonl file"))
            continue
        prompt, *opts = [p.strip() for p in line.split(" | ")]
        fields: dict = {"prompt": prompt}
        try:
            for opt in opts:
                key, sep, value = opt.partition("=")
                if not sep or not key.strip():
                    raise RequestError(f"override {opt!r} is not key=value")
                key = ALIASES.get(key.strip(), key.strip())
                if key == "prompt":
                    raise RequestError("the prompt is the text before the first ' | ', not an override")
                if key in fields:
                    raise RequestError(f"{key} is set twice on this line")
                fields[key] = _coerce_text_value(key, value)
        except (RequestError, ValueError) as exc:
            bad.append(Invalid(number, str(exc)))
            continue
        items.append(RawItem(number, fields))
    return {}, items, bad


def _header(obj: dict, line: int) -> dict:
    unknown = set(obj) - {"defaults", "seed"}
    if unknown:
        raise JobFileError(f"header has unknown keys {sorted(map(str, unknown))} (allowed: defaults, seed)", line)
    defaults = obj.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise JobFileError("'defaults' must be a mapping", line)
    return {"defaults": defaults, "seed": obj.get("seed")}


def _add_item(items: list[RawItem], bad: list[Invalid], number: int, obj: Any) -> None:
    """A structured format's item: a mapping of request fields, or a bare string taken as the prompt."""
    if isinstance(obj, str):
        obj = {"prompt": obj}
    if isinstance(obj, dict):
        items.append(RawItem(number, obj))
    else:
        bad.append(Invalid(number, f"an item must be a mapping or a string, not {type(obj).__name__}"))


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(f"key {key!r} appears twice in one object (JSON would keep only the last)")
        seen[key] = value
    return seen


def _read_jsonl(text: str) -> tuple[dict, list[RawItem], list[Invalid]]:
    header: dict = {}
    items, bad = [], []
    first = True
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("//"):
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_no_duplicates)
        except _DuplicateKey as exc:
            bad.append(Invalid(number, str(exc)))
            first = False
            continue
        except json.JSONDecodeError as exc:
            bad.append(Invalid(number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            first = False
            continue
        if first and isinstance(obj, dict) and "defaults" in obj and "prompt" not in obj:
            header = _header(obj, number)
            first = False
            continue
        first = False
        _add_item(items, bad, number, obj)
    return header, items, bad


def _csv_columns(row: list[str], number: int) -> list[str]:
    columns = [ALIASES.get(c.strip(), c.strip()) for c in row]
    if "prompt" not in columns:
        raise JobFileError(f"the CSV header row needs a 'prompt' column (got {row})", number)
    if any(not c for c in columns):
        raise JobFileError(f"the CSV header has an empty column name (column {columns.index('') + 1})", number)
    unknown = [c for c in columns if c not in _REQUEST_FIELDS | JOB_FIELDS]
    if unknown:
        raise JobFileError(f"unknown CSV column(s) {', '.join(map(repr, unknown))}", number)
    seen: dict[str, str] = {}
    for raw, col in zip(row, columns):
        if col in seen:
            also = "" if seen[col] == raw.strip() else f" (as {seen[col]!r} and {raw.strip()!r})"
            raise JobFileError(f"CSV column {col!r} appears twice{also}", number)
        seen[col] = raw.strip()
    return columns


def _read_csv(text: str) -> tuple[dict, list[RawItem], list[Invalid]]:
    reader = csv.reader(io.StringIO(text))
    items, bad = [], []
    columns: Optional[list[str]] = None
    end = 0
    for row in reader:
        number, end = end + 1, reader.line_num  # a quoted cell may span lines: report where the row starts
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if columns is None:
            columns = _csv_columns(row, number)
            continue
        if len(row) != len(columns):
            # a missing or extra comma shifts every later cell into the wrong field
            bad.append(Invalid(number, f"{len(row)} cells but the header has {len(columns)} columns"))
            continue
        fields = {}
        try:
            for key, value in zip(columns, row):
                if value.strip() == "":
                    continue  # an empty cell means "not set": the defaults apply
                fields[key] = _coerce_text_value(key, value)
        except (RequestError, ValueError) as exc:
            bad.append(Invalid(number, str(exc)))
            continue
        items.append(RawItem(number, fields))
    return {}, items, bad


def _strict_yaml_loader(text: str):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` then overriding a key is the point of merge keys
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise JobFileError(f"key {key!r} appears twice in one mapping (first on line {seen[key]})",
                                       line)
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: construct_mapping reports it
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader(text)


def _read_yaml(text: str) -> tuple[dict, list[RawItem], list[Invalid]]:
    import yaml

    loader = _strict_yaml_loader(text)
    try:
        node = loader.get_single_node()
        if node is not None and isinstance(node, yaml.MappingNode):
            items_node = next((v for k, v in node.value if k.value == "items"), None)
        else:
            items_node = node
        if isinstance(items_node, yaml.SequenceNode) and len(items_node.value) > MAX_ITEMS:
            raise JobFileError(f"{len(items_node.value)} items, over the limit of {MAX_ITEMS} per job file "
                               f"(split it)")
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise JobFileError(f"not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()
    header: dict = {}
    items_node, items_data = node, data
    if isinstance(data, dict):
        if "items" not in data:
            raise JobFileError("a YAML mapping needs an 'items' list (and optionally 'defaults' and 'seed')")
        rest = {k: v for k, v in data.items() if k != "items"}
        header = _header(rest, 1)
        items_data = data["items"]
        items_node = next(v for k, v in node.value if k.value == "items")
    if not isinstance(items_data, list):
        raise JobFileError("the job's items must be a list")
    items, bad = [], []
    for child, obj in zip(items_node.value, items_data):
        number = child.start_mark.line + 1
        _add_item(items, bad, number, obj)
    return header, items, bad


READERS = {"txt": _read_txt, "jsonl": _read_jsonl, "csv": _read_csv, "yaml": _read_yaml}


# -- identity, seeds, names -----------------------------------------------------------------------------------
def derive_seed(job_seed: int, key: str) -> int:
    digest = hashlib.sha256(f"studio-jobs/v1:{job_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_SPACE


def content_hash(request: GenerationRequest) -> str:
    data = request.model_dump(mode="json", exclude_defaults=True, exclude=NOT_IDENTITY)
    canon = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "h-" + hashlib.sha256(canon.encode()).hexdigest()[:16]


def repeat_key(base: str, r: int) -> str:
    return base if r == 0 else f"{base}#{r}"


_SLUG_RE = re.compile(r"[^a-z0-9]+")


def safe_name(key: str, label: str, limit: int = 40) -> str:
    """A file stem that cannot escape the output folder: `[a-z0-9-]` from the label, then a hash of the key.
    The hash keeps names unique (two ids that slug alike still differ) and stable across runs."""
    slug = _SLUG_RE.sub("-", label.lower()).strip("-")[:limit].strip("-") or "item"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


# -- validation -----------------------------------------------------------------------------------------------
def _normalise(fields: dict) -> dict:
    out = {}
    for key, value in fields.items():
        key = ALIASES.get(key, key)
        if key == "loras" and isinstance(value, str):
            value = _coerce_text_value("loras", value)
        elif key == "loras" and isinstance(value, list):
            value = [LoraRef.parse(v).model_dump() if isinstance(v, str) else v for v in value]
        elif key == "outpaint" and isinstance(value, str):
            value = _coerce_text_value("outpaint", value)
        out[key] = value
    return out


def _resolve_path(base: Optional[Path], value: Optional[str]) -> Optional[str]:
    if value is None or base is None:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_model(base: Optional[Path], model: Optional[str]) -> Optional[str]:
    if model and base is not None and model.startswith(("./", "../", ".\\", "..\\")):
        return str((base / model).resolve())
    return model


def build_spec(header: dict, raw_items: Iterable[RawItem], bad: list[Invalid], *, source: Optional[Path],
               file_sha256: str, defaults: Optional[dict] = None, job_seed: Optional[int] = None,
               check_model=None) -> JobSpec:
    """Validate every item (collecting errors with line numbers) and expand repeats into keyed items.
    `job_seed` None leaves seeds unset: `assign_seeds` fills them once the job seed is known."""
    base_dir = source.parent if source is not None else None
    header_defaults = _normalise(header.get("defaults") or {})
    merged_defaults = {**header_defaults, **_normalise(defaults or {})}
    spec = JobSpec(source=source, file_sha256=file_sha256, job_seed=header.get("seed"),
                   invalid=list(bad), defaults=merged_defaults)
    if spec.job_seed is not None and not (isinstance(spec.job_seed, int) and 0 <= spec.job_seed < 2**63):
        spec.invalid.append(Invalid(1, f"header seed must be a non-negative integer, got {spec.job_seed!r}"))
        spec.job_seed = None
    ids: dict[str, int] = {}
    repeats_used: dict[str, int] = {}
    model_checked: dict[str, tuple[Any, Optional[str]]] = {}
    images: dict[str, Any] = {}
    expanded = 0
    for raw in raw_items:
        try:
            fields = {**merged_defaults, **_normalise(raw.fields)}
            unknown = set(fields) - _REQUEST_FIELDS - JOB_FIELDS
            if unknown:
                raise RequestError(f"unknown field(s) {', '.join(sorted(unknown))}")
            item_id = fields.pop("id", None)
            repeats = fields.pop("repeats", 1)
            if item_id is not None:
                if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or not str(item_id).strip():
                    raise RequestError(f"id must be a non-empty string, got {item_id!r}")
                item_id = str(item_id).strip()
                if item_id in ids:
                    raise RequestError(f"duplicate id {item_id!r} (first used on line {ids[item_id]})")
            try:
                repeats = int(repeats)
            except (TypeError, ValueError):
                raise RequestError(f"repeats must be an integer, got {repeats!r}") from None
            if not 1 <= repeats <= MAX_REPEATS:
                raise RequestError(f"repeats must be between 1 and {MAX_REPEATS}, got {repeats}")
            written = GenerationRequest.build(**fields)  # paths as written: the identity
            resolved = {"init_image": _resolve_path(base_dir, written.init_image),
                        "mask": _resolve_path(base_dir, written.mask),
                        "init_video": _resolve_path(base_dir, written.init_video),
                        "init_audio": _resolve_path(base_dir, written.init_audio),
                        "model": _resolve_model(base_dir, written.model)}
            for what in ("init_video", "init_audio"):
                if resolved[what] is not None and not Path(resolved[what]).is_file():
                    raise RequestError(f"{what} {getattr(written, what)!r} does not exist "
                                       f"(paths are relative to the job file)")
            sizes = {}
            for what in ("init_image", "mask"):
                if resolved[what] is None:
                    continue
                if not Path(resolved[what]).is_file():
                    raise RequestError(f"{what} {getattr(written, what)!r} does not exist "
                                       f"(paths are relative to the job file)")
                # keyed with the label too: the message names the field and the path as this row wrote them
                cache_key = (resolved[what], what, getattr(written, what))
                if cache_key not in images:
                    images[cache_key] = image_problem(resolved[what], what, getattr(written, what))
                sizes[what] = images[cache_key]
                if isinstance(sizes[what], str):
                    raise RequestError(sizes[what])
            if len(sizes) == 2 and sizes["init_image"] != sizes["mask"]:
                (iw, ih), (mw, mh) = sizes["init_image"], sizes["mask"]
                raise RequestError(f"mask is {mw}x{mh} but init image is {iw}x{ih}: they must be the same size")
            loras = [LoraRef(path=_resolve_path(base_dir, l.path), weight=l.weight) for l in written.loras]
            for l in loras:
                if not Path(l.path).is_file():
                    raise RequestError(f"LoRA {l.path!r} does not exist (paths are relative to the job file)")
            if written.styles:  # an unknown style is a bad row, listed before anything renders
                from ..styles import known_styles, styled

                styled(written.prompt, written.negative_prompt, list(written.styles), known_styles())
            if check_model is not None:
                if resolved["model"] not in model_checked:
                    try:
                        model_checked[resolved["model"]] = (check_model(resolved["model"]), None)
                    except RequestError as exc:
                        model_checked[resolved["model"]] = (None, str(exc))
                entry, problem = model_checked[resolved["model"]]
                # a registry entry (not just "the name is known") says enough to judge the sampler now
                problem = problem or sampler_problem(entry, written.sampler)
                if problem:
                    raise RequestError(problem)
            # ControlNet units: each source image (and a ControlNet folder written ./x) relative to the job file
            controls = [u.model_copy(update={"image": _resolve_path(base_dir, u.image),
                                             "model": _resolve_model(base_dir, u.model)}) for u in written.controls]
            for i, u in enumerate(controls):
                if not Path(u.image).is_file():
                    raise RequestError(f"control {i} image {written.controls[i].image!r} does not exist "
                                       f"(paths are relative to the job file)")
            request = written.model_copy(update={**resolved, "loras": loras, "controls": controls})
            if check_model is not None and getattr(entry, "modality", None):
                # the model decides image or video, hence the output names' extension (a path or a hub id
                # the registry does not know is decided at render time; its names follow what it returns)
                from ..modalities import runs_as  # an image editor runs a clip's instruct edit as video

                request = request.with_modality(runs_as(request, entry.modality, getattr(entry, "family", None)))
        except (RequestError, ValueError, TypeError) as exc:
            spec.invalid.append(Invalid(raw.line, str(exc)))
            continue
        expanded += repeats
        if expanded > MAX_ITEMS:
            raise JobFileError(f"{source or 'job'}:{raw.line}: more than {MAX_ITEMS} items after repeats, the "
                               f"limit per job (split it)", raw.line)
        if item_id is not None:
            ids[item_id] = raw.line
        base = item_id if item_id is not None else content_hash(written)
        start = repeats_used.get(base, 0)
        repeats_used[base] = start + repeats
        for r in range(start, start + repeats):
            key = repeat_key(base, r)
            spec.items.append(JobItem(key=key, line=raw.line, request=request, repeat=r, explicit_id=item_id,
                                      explicit_seed=written.seed, name=safe_name(key, item_id if item_id is not None else request.prompt)))
    spec.invalid.sort(key=lambda i: i.line)
    if job_seed is not None:
        assign_seeds(spec, job_seed)
    return spec


def assign_seeds(spec: JobSpec, job_seed: int) -> None:
    """An explicit seed is kept (repeat r adds r * batch so repeats never share seeds); the rest derive
    from the job seed and the item key."""
    for item in spec.items:
        if item.explicit_seed is not None:
            seed = (item.explicit_seed + item.repeat * item.request.batch) % 2**63
        else:
            seed = derive_seed(job_seed, item.key)
        item.request = item.request.model_copy(update={"seed": seed})
    spec.job_seed = job_seed


def load_job(source: Union[str, Path, list, tuple], *, defaults: Optional[dict] = None,
             job_seed: Optional[int] = None, check_model=None) -> JobSpec:
    """Parse and validate a job file, or a list of items (dicts or prompt strings) from the Python API."""
    if isinstance(source, (list, tuple)):
        if len(source) > MAX_ITEMS:
            raise JobFileError(f"{len(source)} items, over the limit of {MAX_ITEMS} per job (split it)")
        raw, bad = [], []
        for n, obj in enumerate(source, start=1):
            if isinstance(obj, str):
                obj = {"prompt": obj}
            if isinstance(obj, GenerationRequest):
                obj = obj.model_dump(exclude_defaults=True)
            if not isinstance(obj, dict):
                bad.append(Invalid(n, "an item must be a mapping, a prompt or a GenerationRequest"))
                continue
            raw.append(RawItem(n, dict(obj)))
        canon = json.dumps([r.fields for r in raw], sort_keys=True, default=str)
        return build_spec({}, raw, bad, source=None, file_sha256=hashlib.sha256(canon.encode()).hexdigest(),
                          defaults=defaults, job_seed=job_seed, check_model=check_model)
    path = Path(source)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise JobFileError(f"{path}: unknown job file type {path.suffix!r} "
                           f"(use {', '.join(sorted(FORMATS))})")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # not stat: a pipe or a growing file has no honest size
    except OSError as exc:
        raise JobFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise JobFileError(f"{path}: larger than the {MAX_FILE_BYTES // 2**20} MiB limit for job files (split it)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if fmt != "yaml":  # one item a line at most; YAML counts its items once composed (_read_yaml)
        lines = sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
        if lines > MAX_ITEMS + 1:  # + a header line
            raise JobFileError(f"{path}: {lines} lines, over the limit of {MAX_ITEMS} items per job file "
                               f"(split it)")
    try:
        header, raw, bad = READERS[fmt](text)
    except JobFileError as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise JobFileError(f"{where}: {exc}", exc.line) from None
    return build_spec(header, raw, bad, source=path.resolve(), file_sha256=hashlib.sha256(data).hexdigest(),
                      defaults=defaults, job_seed=job_seed, check_model=check_model)
