"""Reading AUTOMATIC1111's `parameters` text (the PNG tEXt chunk A1111, Forge, civitai and this studio write)
back into request fields, and reading the parameters of any dropped PNG (`read_png`).

The format is A1111's own (modules/infotext_utils.py `parse_generation_parameters`): the prompt, an optional
`Negative prompt:` part, then one line of `Key: value` pairs (a value with commas is double-quoted). It is
hand-parsed here, the way A1111 does it, with one regex: the maintained readers (sd-parsers, sd-prompt-reader)
would add a dependency for these few lines and do not map samplers to this studio's catalog.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

# A1111's re_param: `Key: value` or `Key: "quoted, value"`, comma-separated.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")
_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([-+]?\d*\.?\d+))?[^>]*>")
# A1111 sampler names this catalog spells differently (the rest resolve through schedulers' aliases).
_SAMPLER_NAMES = {"plms": "PNDM", "k_dpmpp_2m": "DPM++ 2M", "dpm++ 2m karras": "DPM++ 2M Karras"}


@dataclass
class A1111Params:
    """What a `parameters` text says, as this studio's request fields (None: not in the text), plus `notes`
    (one line each) for what the studio could not take over, and `extra` (the other `Key: value` pairs)."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: Optional[int] = None
    sampler: Optional[str] = None
    guidance: Optional[float] = None
    seed: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    model: Optional[str] = None
    strength: Optional[float] = None
    loras: list[dict] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """The request fields the text gave (prompt always)."""
        out = {"prompt": self.prompt, "negative_prompt": self.negative_prompt}
        for key in ("steps", "sampler", "guidance", "seed", "width", "height", "model", "strength"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.loras:
            out["loras"] = list(self.loras)
        return out


def studio_sampler(name: str) -> Optional[str]:
    """This studio's name for an A1111 sampler (`DPM++ 2M Karras`, `Euler a`, `PLMS`...), None if it has none."""
    from schedulers import UnknownSampler, resolve_sampler

    name = " ".join(str(name).split())
    try:
        return resolve_sampler(_SAMPLER_NAMES.get(name.lower(), name))
    except UnknownSampler:
        return None


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value[1:-1]
    return value


def _number(kind, key: str, value: str, notes: list[str]):
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except ValueError:
        notes.append(f"{key} {value!r} is not a number: left out")
        return None
    return number


def parse(text: str) -> A1111Params:
    """Parse A1111 `parameters` text. Never raises on odd text: what cannot be read becomes a note."""
    out = A1111Params()
    lines = str(text or "").strip().replace("\r\n", "\n").split("\n")
    last = lines[-1] if lines else ""
    pairs = _PARAM.findall(last)
    if len(pairs) >= 3:  # A1111's own test: a line of at least three pairs is the parameters line
        lines = lines[:-1]
    else:
        pairs = []
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    out.prompt, out.negative_prompt = "\n".join(prompt).strip(), "\n".join(negative).strip()
    for name, weight in _LORA_TAG.findall(out.prompt):  # A1111 names LoRAs in the prompt; the studio in `loras`
        out.loras.append({"path": name, "weight": float(weight) if weight else 1.0})
    if out.loras:
        cleaned = re.sub(r"[ \t]{2,}", " ", _LORA_TAG.sub("", out.prompt))
        out.prompt = re.sub(r",\s*,", ",", re.sub(r"\s+,", ",", cleaned)).strip().strip(",").strip()
    values = {k.strip(): _unquote(v) for k, v in pairs}
    schedule = values.pop("Schedule type", None)  # A1111 >= 1.9 writes "Sampler: DPM++ 2M, Schedule type: Karras"
    for key, value in values.items():
        if key == "Steps":
            out.steps = _number(int, key, value, out.notes)
        elif key == "CFG scale":
            out.guidance = _number(float, key, value, out.notes)
        elif key == "Seed":
            out.seed = _number(int, key, value, out.notes)
            if out.seed is not None and out.seed < 0:
                out.seed = None  # -1 is A1111's "random"
        elif key == "Denoising strength":
            out.strength = _number(float, key, value, out.notes)
        elif key == "Size":
            m = _SIZE.match(value)
            if m:
                out.width, out.height = int(m.group(1)), int(m.group(2))
            else:
                out.notes.append(f"size {value!r} is not WIDTHxHEIGHT: left out")
        elif key == "Model":
            out.model = value or None
        elif key == "Sampler":
            out.sampler = _sampler(value, schedule, out.notes)
        else:
            out.extra[key] = value
    return out


def _sampler(value: str, schedule: Optional[str], notes: list[str]) -> Optional[str]:
    if schedule and schedule.lower() != "automatic":
        combined = studio_sampler(f"{value} {schedule}")
        if combined is not None:
            return combined
        plain = studio_sampler(value)
        if plain is not None:
            notes.append(f"schedule type {schedule!r} is not available with sampler {value!r}: {plain} is used")
            return plain
    found = studio_sampler(value)
    if found is None:
        notes.append(f"sampler {value!r} has no equivalent here: the model's default sampler is used")
    return found


def read_png(path: str | Path) -> tuple[dict[str, Any], str, list[str]]:
    """(request fields, parameters text, notes) of a PNG: a studio PNG's own JSON record (exact: the resolved
    request it was made from), else an A1111-style `parameters` chunk. A file with neither says so (RequestError)."""
    from PIL import Image, UnidentifiedImageError

    from .errors import RequestError
    from .metadata import PNG_JSON_KEY, PNG_PARAMS_KEY

    name = Path(path).name
    try:
        with Image.open(path) as im:
            text = {str(k): str(v) for k, v in (getattr(im, "text", None) or {}).items()}
    except (UnidentifiedImageError, OSError):
        raise RequestError(f"{name} is not an image this studio can read") from None
    params_text = text.get(PNG_PARAMS_KEY, "")
    if PNG_JSON_KEY in text:
        try:
            record = json.loads(text[PNG_JSON_KEY])
            request = dict(record.get("request") or {})
        except (ValueError, AttributeError):
            request = {}
        if request.get("prompt"):
            keep = ("prompt", "negative_prompt", "steps", "guidance", "sampler", "width", "height", "loras",
                    "strength")
            fields = {k: request[k] for k in keep if request.get(k) is not None}
            fields["seed"] = record.get("seed", request.get("seed"))
            fields["model"] = record.get("model_name") or request.get("model")
            fields["loras"] = [dict(l) for l in request.get("loras") or []]
            return fields, params_text, []
    if not params_text.strip():
        raise RequestError(f"{name} carries no generation parameters (no A1111 'parameters' text, no studio record)")
    parsed = parse(params_text)
    return parsed.fields(), params_text, parsed.notes


def text_for_file(path: str | Path) -> str:
    """The A1111-style parameters block of a file: a PNG's own `parameters` chunk, else one written from the
    studio record in its C2PA manifest (JPEG, WebP, clips); "" when the file carries neither."""
    from PIL import Image

    from .metadata import PNG_PARAMS_KEY, a1111_parameters, read_info
    from .schema import GenerationRecord

    try:
        with Image.open(path) as im:
            chunk = (getattr(im, "text", None) or {}).get(PNG_PARAMS_KEY)
    except Exception:  # noqa: BLE001 -- not an image (a clip): its manifest may still say
        chunk = None
    if chunk:
        return str(chunk)
    info = read_info(Path(path))
    if not info:
        return ""
    if info.get("_parameters"):
        return info["_parameters"]
    record = {k: v for k, v in info.items() if not k.startswith("_") and k not in ("index", "seed")}
    try:
        return a1111_parameters(GenerationRecord.model_validate(record), info.get("seed", 0))
    except Exception:  # noqa: BLE001 -- another tool's manifest, or an older record: no block rather than an error
        return ""


__all__ = ["A1111Params", "parse", "read_png", "studio_sampler", "text_for_file"]
