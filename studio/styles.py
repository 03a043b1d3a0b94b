"""Styles: saved prompt snippets (A1111's styles.csv, Fooocus' style list) kept in `styles.toml` in the config dir.

```toml
[styles.cinematic]
prompt = "cinematic still of {prompt}, shallow depth of field"   # {prompt}: where the user's prompt goes
negative_prompt = "cartoon, drawing"                             # appended to the user's negative prompt
```

A style without `{prompt}` is appended after a comma, as A1111 does. A request names styles (`styles=[...]`,
`--style NAME`); the engine applies them before anything else reads the prompt, records which were applied and the
prompts before styling, and the resolved request carries the styled prompt (so it replays without the file).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .config import config_dir
from .errors import RequestError, StudioError

STYLES_FILE = "styles.toml"
PLACEHOLDER = "{prompt}"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def styles_path() -> Path:
    return config_dir() / STYLES_FILE


def load_styles(path: Optional[Path] = None) -> dict[str, Style]:
    path = path or styles_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StudioError(f"{path} is not a valid styles file: {exc}") from None
    out = {}
    for name, spec in (data.get("styles") or {}).items():
        if isinstance(spec, dict):
            out[name] = Style(name, str(spec.get("prompt", "")), str(spec.get("negative_prompt", "")))
    return out


def known_styles() -> dict[str, Style]:
    """`load_styles()` cached on the file's modification time (a job file checks every row against it)."""
    path = styles_path()
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return {}
    return _cached(str(path), stamp)


@lru_cache(maxsize=4)
def _cached(path: str, stamp: int) -> dict[str, Style]:
    return load_styles(Path(path))


def save_style(name: str, prompt: str = "", negative_prompt: str = "", *, path: Optional[Path] = None) -> Style:
    """Add or replace a style (written atomically). The prompt may hold `{prompt}`; an empty style is refused."""
    import tomli_w

    name = (name or "").strip()
    if not _NAME.match(name):
        raise RequestError(f"style name {name!r} must be 1-64 letters, digits, spaces, '_', '-' or '.'")
    prompt, negative_prompt = (prompt or "").strip(), (negative_prompt or "").strip()
    if not prompt and not negative_prompt:
        raise RequestError(f"style {name!r} has neither a prompt nor a negative prompt")
    path = path or styles_path()
    data = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data.setdefault("styles", {})[name] = {"prompt": prompt, "negative_prompt": negative_prompt}
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
    tmp.replace(path)
    return Style(name, prompt, negative_prompt)


def _merge(template: str, text: str) -> str:
    if not template:
        return text
    if PLACEHOLDER in template:
        return template.replace(PLACEHOLDER, text)
    return f"{text}, {template}" if text else template


def styled(prompt: str, negative_prompt: str, names: list[str],
           available: Optional[dict[str, Style]] = None) -> tuple[str, str]:
    """The prompt and negative prompt with `names` applied in order; an unknown name is a `RequestError`."""
    available = load_styles() if available is None else available
    missing = [n for n in names if n not in available]
    if missing:
        known = ", ".join(sorted(available)) or "none saved yet"
        raise RequestError(f"unknown style {', '.join(map(repr, missing))} (saved styles: {known}; save one in the "
                           f"web app or in {styles_path()})")
    for n in names:
        prompt = _merge(available[n].prompt, prompt)
        negative_prompt = _merge(available[n].negative_prompt, negative_prompt)
    return prompt, negative_prompt


def apply_styles(request):
    """(request with its styles applied and `styles` emptied, what to record) -- (request, None) without styles."""
    if not request.styles:
        return request, None
    prompt, negative = styled(request.prompt, request.negative_prompt, list(request.styles))
    applied = {"names": list(request.styles), "prompt": request.prompt, "negative_prompt": request.negative_prompt}
    from .schema import GenerationRequest

    fields = {**request.model_dump(exclude_unset=True), "prompt": prompt, "negative_prompt": negative, "styles": []}
    return GenerationRequest.build(**fields), applied
