"""What the server hands back is never active content from its own origin.

Gradio serves anything under `allowed_paths` inline with the type guessed from its name, and the upload cache
lies inside the output folder: an anonymous upload of `x.html` (or .svg, .xml, ...) would come back as a page
of this origin with its scripts running. This ASGI middleware (installed by `ui.app.launch`) types every file
response from an allow-list of media (anything else: an `application/octet-stream` attachment), adds
`nosniff` and a sandboxing CSP to file responses, guards the app's pages against framing and plugins, and
refuses uploads whose names are not on the allow-list.
"""
from __future__ import annotations

import json
import logging
import posixpath
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import unquote

log = logging.getLogger("ui")

# Shown inline: media the browser renders without running anything. Text formats come back as plain text.
INLINE_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif",
    ".mp4": "video/mp4", ".webm": "video/webm", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".json": "text/plain; charset=utf-8", ".jsonl": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8",
    ".csv": "text/plain; charset=utf-8", ".yaml": "text/plain; charset=utf-8", ".yml": "text/plain; charset=utf-8",
}
ATTACHMENT_TYPES = {".zip": "application/zip"}
UPLOAD_SUFFIXES = frozenset(INLINE_TYPES) | frozenset(ATTACHMENT_TYPES)
FILE_CSP = "default-src 'none'; sandbox"
# Pages need Gradio's inline scripts and styles, so no script-src here; what this still buys: no framing by
# other sites (clickjacking), no plugins, no <base> or form hijacking.
PAGE_CSP = "frame-ancestors 'self'; object-src 'none'; base-uri 'self'; form-action 'self'"
# The server's own records (real paths, every visitor's requests): handed out only rewritten, inside the zip.
PRIVATE_NAMES = frozenset({"manifest.jsonl", "history.jsonl"})
_FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/", "/file=", "/file/")
_UPLOAD_ROUTES = ("/gradio_api/upload", "/upload")


def served_type(name: str) -> tuple[str, str]:
    """(Content-Type, disposition kind) for a file served under `name`."""
    suffix = Path(name).suffix.lower()
    if suffix in INLINE_TYPES:
        return INLINE_TYPES[suffix], "inline"
    return ATTACHMENT_TYPES.get(suffix, "application/octet-stream"), "attachment"


def _served_name(path: str) -> Optional[str]:
    """The file name a file route serves, or None when `path` is not a file route."""
    for prefix in _FILE_ROUTES:
        i = path.find(prefix)  # anywhere: the app may be mounted under a root path
        if i >= 0:
            return posixpath.basename(unquote(path[i + len(prefix):]).rstrip("/")) or "file"
    return None


def _disposition(kind: str, name: str) -> bytes:
    safe = "".join(c for c in name if c.isprintable() and c not in '"\\;\r\n')[:150] or "file"
    return f'{kind}; filename="{safe}"'.encode("latin-1", "replace")


def _set(headers: list, name: bytes, value: bytes) -> list:
    return [(k, v) for k, v in headers if k.lower() != name] + [(name, value)]


class ServedFilesGuard:
    """ASGI middleware around the Gradio app."""

    def __init__(self, app, upload_suffixes: Iterable[str] = UPLOAD_SUFFIXES):
        self.app = app
        self.upload_suffixes = frozenset(s.lower() for s in upload_suffixes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        name = _served_name(path)
        if name is not None:
            target = unquote(path.split("file=", 1)[-1]) if "file=" in path else ""
            if target.startswith(("http://", "https://", "//")):
                # The file route would fetch and re-serve a remote URL from this origin; this app never needs it.
                return await _plain(send, 403, "remote files are not served")
            if name.lower() in PRIVATE_NAMES:
                return await _plain(send, 404, "not found")
            return await self.app(scope, receive, self._file_headers(send, name))
        if scope.get("method") == "POST" and path.rstrip("/").endswith(_UPLOAD_ROUTES):
            return await self._upload(scope, receive, send)
        return await self.app(scope, receive, self._page_headers(send))

    def _file_headers(self, send, name: str):
        content_type, kind = served_type(name)

        async def wrapped(message):
            if message["type"] == "http.response.start" and message.get("status", 200) < 400:
                headers = list(message.get("headers", []))
                headers = _set(headers, b"content-type", content_type.encode())
                headers = _set(headers, b"content-disposition", _disposition(kind, name))
                headers = _set(headers, b"x-content-type-options", b"nosniff")
                headers = _set(headers, b"content-security-policy", FILE_CSP.encode())
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.start":
                message = {**message, "headers": _set(list(message.get("headers", [])), b"x-content-type-options",
                                                      b"nosniff")}
            await send(message)

        return wrapped

    def _page_headers(self, send):
        async def wrapped(message):
            if message["type"] == "http.response.start":
                headers = _set(list(message.get("headers", [])), b"x-content-type-options", b"nosniff")
                ctype = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
                if ctype.startswith(b"text/html"):
                    headers = _set(headers, b"content-security-policy", PAGE_CSP.encode())
                    headers = _set(headers, b"x-frame-options", b"SAMEORIGIN")
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    async def _upload(self, scope, receive, send):
        """Let Gradio store the upload, then look at what it stored: a name off the allow-list is deleted and
        the whole upload refused. (Gradio copies some files in a background task that ends before the app
        call returns, so the response is held until then.)"""
        held: list = []

        async def hold(message):
            held.append(message)

        await self.app(scope, receive, hold)
        start = next((m for m in held if m["type"] == "http.response.start"), None)
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        if start is None or start.get("status") != 200:
            for m in held:
                await send(m)
            return
        try:
            paths = [str(p) for p in json.loads(body)]
        except (ValueError, TypeError):
            paths = []
        bad = [p for p in paths if Path(p).suffix.lower() not in self.upload_suffixes]
        if not bad:
            for m in held:
                await send(m)
            return
        for p in paths:
            Path(p).unlink(missing_ok=True)
        kinds = sorted({Path(p).suffix.lower() or "(no extension)" for p in bad})
        log.warning("upload refused from %s: file type %s", (scope.get("client") or ("?",))[0], ", ".join(kinds))
        await _plain(send, 415, f"file type {', '.join(kinds)} is not accepted here "
                                f"(allowed: {', '.join(sorted(self.upload_suffixes))})")


async def _plain(send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"x-content-type-options", b"nosniff"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["ServedFilesGuard", "served_type", "INLINE_TYPES", "UPLOAD_SUFFIXES", "FILE_CSP", "PAGE_CSP"]
