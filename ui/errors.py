"""What the browser may see of a failure: one line, no stack trace, no server path, no key material."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional

log = logging.getLogger("ui")

MAX_LEN = 300
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.S)
# Absolute POSIX paths, ~ paths and Windows drive paths (quoted or bare).
_PATH = re.compile(r"(?:(?<![\w.])~|(?<![\w:/.])(?:[A-Za-z]:)?)(?:[/\\][^\s'\"(),;:<>|]+)+")


class Cancelled(Exception):
    """Raised from a progress callback when the user pressed Cancel."""


def step_callback(progress, cancel, doing: str):
    """The engine's per-step callback for a web request: stop at the next step once Cancel was pressed
    (``cancel``: a threading.Event or None), else report ``doing`` to the page's progress bar."""

    def on_step(step: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"cancelled at step {step}/{total}")
        if progress is not None:
            progress(step, total, doing)

    return on_step


def hide_paths(text: str, root: Optional[Path] = None) -> str:
    """Server paths in `text` rewritten: one inside `root` becomes relative to it, any other one its file name.
    Nothing else changes (no cut, line breaks kept), so it suits whole records as well as messages."""
    root_s = str(Path(root).resolve()) if root else None

    def repl(m: re.Match) -> str:
        p = m.group(0)
        if root_s and (p == root_s or p.startswith(root_s + "/")):
            rel = p[len(root_s):].lstrip("/")
            return rel or "output folder"
        name = re.split(r"[/\\]", p.rstrip("/\\"))[-1]
        return name or "[path]"

    return _PATH.sub(repl, str(text))


def sanitize(text: str, out_dir: Optional[Path] = None) -> str:
    """Hide server paths (a path inside the output folder becomes relative to it, any other one its file name),
    key material and line breaks; cut to one short line."""
    text = hide_paths(_PEM.sub("[key material hidden]", str(text)), out_dir)
    text = " ".join(text.split())
    if len(text) > MAX_LEN:
        text = text[: MAX_LEN - 1] + "…"
    return text or "unknown error"


def user_message(exc: BaseException, out_dir: Optional[Path] = None) -> str:
    """The one line shown in the browser for an exception; unexpected ones are logged with their traceback."""
    from studio import StudioError

    if isinstance(exc, Cancelled):
        return str(exc) or "cancelled"
    if isinstance(exc, (StudioError, ValueError, FileNotFoundError)):
        return sanitize(str(exc), out_dir)
    log.exception("unexpected error in a UI handler")
    return sanitize(f"{type(exc).__name__}: {exc}", out_dir)
