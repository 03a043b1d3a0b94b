"""The one rule for every path and model name that arrives from a browser.

A browser may only point at files it uploaded (Gradio's upload cache) or at this app's outputs; anything else
on the server is refused, whatever the route (form field, editor layer, job file, a job item's init image,
mask or LoRA). Models from a browser are registry names only: a path or a hub id would let a visitor make
the server read, or download, what it names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from studio import RequestError


class PathRefused(RequestError):
    """A browser-supplied path or model outside what the browser may name."""


def upload_dir(out_dir: Path) -> Path:
    """Where Gradio keeps this app's uploads: `ui.app` points `GRADIO_TEMP_DIR` here. Derived from the output
    folder rather than read from the environment, which holds whichever app of the process was built last."""
    return (Path(out_dir) / ".gradio").resolve()


def browser_roots(out_dir: Path) -> tuple[Path, ...]:
    out = Path(out_dir).resolve()
    return (upload_dir(out), out)


def _where(field: str, line: Optional[int]) -> str:
    return f"line {line}: {field}" if line is not None else field


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


UPLOADS_OR_OUTPUTS = "a file uploaded to this app or one of its outputs"


def checked_path(value, field: str, roots: Iterable[Path], *, line: Optional[int] = None,
                 base: Optional[Path] = None, allowed: str = UPLOADS_OR_OUTPUTS) -> Optional[str]:
    """`value` resolved (symlinks followed, relative to `base`), or PathRefused naming `field` (and `line`).
    Empty values pass through as None. Only the name the browser sent is echoed, never where it led."""
    if value is None or value == "":
        return None
    text = str(value)
    if "\x00" in text:
        raise PathRefused(f"{_where(field, line)}: not a valid file name")
    p = Path(text).expanduser()
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    try:
        resolved = p.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise PathRefused(f"{_where(field, line)}: {Path(text).name!r} cannot be read") from None
    if not _inside(resolved, [Path(r).resolve() for r in roots]):
        raise PathRefused(f"{_where(field, line)}: {Path(text).name!r} is not {allowed}")
    return str(resolved)


def checked_model(name, field: str, registry, *, line: Optional[int] = None) -> Optional[str]:
    """A registry name (or None for the default); paths and hub ids are refused."""
    if name is None or name == "":
        return None
    if isinstance(name, str) and name in registry.entries:
        return name
    shown = Path(str(name)).name if ("/" in str(name) or "\\" in str(name)) else str(name)
    raise PathRefused(f"{_where(field, line)}: {shown[:80]!r} is not a model in this server's registry "
                      f"(pick one from the Model menu)")


def checked_editor(value: Optional[dict], roots: Iterable[Path]) -> Optional[dict]:
    """An ImageEditor value with its background, composite and layers checked like any other path."""
    if not value:
        return value
    roots = tuple(roots)
    out = dict(value)
    for key in ("background", "composite"):
        if out.get(key):
            out[key] = checked_path(_file_path(out[key]), f"editor {key}", roots)
    out["layers"] = [checked_path(_file_path(l), "editor layer", roots) for l in out.get("layers") or [] if l]
    return out


def _file_path(v):
    """Gradio hands over plain paths, but a FileData-like dict or object also carries one."""
    if isinstance(v, dict):
        return v.get("path")
    return getattr(v, "path", v)


__all__ = ["PathRefused", "browser_roots", "checked_editor", "checked_model", "checked_path", "upload_dir"]
