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


def sanitize(text: str, out_dir: Optional[Path] = None) -> str:
    """Hide server paths (a path inside the output folder becomes relative to it, any other one its file name),
    key material and line breaks; cut to one short line."""
    text = _PEM.sub("[key material hidden]", str(text))
    root = str(Path(out_dir).resolve()) if out_dir else None

    def repl(m: re.Match) -> str:
        p = m.group(0)
        if root and (p == root or p.startswith(root + "/")):
            rel = p[len(root):].lstrip("/")
            return rel or "output folder"
        name = re.split(r"[/\\]", p.rstrip("/\\"))[-1]
        return name or "[path]"

    text = _PATH.sub(repl, text)
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
