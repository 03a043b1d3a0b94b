"""Slow down password guessing against `--auth`.

Gradio's /login answers as fast as it can, forever. This ASGI middleware counts failed logins per client
address: after `max_failures` within `window_s` the address is refused (429, with Retry-After) for a back-off
that doubles with each further lock-out, capped at `max_backoff_s`. Back-offs expire and a successful login
clears the address, so the right password is never locked out for good. Failures are logged (logger "ui")
with the address, never with what was typed.

The address is the TCP peer: a forwarded-for header is the client's to forge, so behind a reverse proxy
every visitor shares the proxy's budget (rate-limit at the proxy there).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger("ui")
_LOGIN_ROUTES = ("/login", "/login/")


@dataclass
class _Client:
    failures: list[float] = field(default_factory=list)
    lockouts: int = 0
    blocked_until: float = 0.0


class LoginThrottle:
    """The bookkeeping, free of HTTP (one per server; thread-safe)."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, base_backoff_s: float = 30.0,
                 max_backoff_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.window_s = window_s
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self._clients: dict[str, _Client] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again (0: now)."""
        with self._lock:
            c = self._clients.get(address)
            return max(0.0, c.blocked_until - self.clock()) if c else 0.0

    def failed(self, address: str) -> float:
        """Record a failed login; returns the back-off it started (0: none yet)."""
        now = self.clock()
        with self._lock:
            c = self._clients.setdefault(address, _Client())
            c.failures = [t for t in c.failures if now - t < self.window_s] + [now]
            if len(c.failures) < self.max_failures:
                self._forget_idle(now)
                return 0.0
            backoff = min(self.max_backoff_s, self.base_backoff_s * 2 ** c.lockouts)
            c.lockouts += 1
            c.failures = []
            c.blocked_until = now + backoff
            return backoff

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._clients.pop(address, None)

    def _forget_idle(self, now: float) -> None:
        """Keep the table small when many addresses fail once: drop those with nothing left to remember."""
        if len(self._clients) < 10_000:
            return
        horizon = max(self.window_s, self.max_backoff_s) * 2
        for a in [a for a, c in self._clients.items()
                  if c.blocked_until < now and all(now - t > horizon for t in c.failures)]:
            del self._clients[a]


class LoginThrottleMiddleware:
    """ASGI middleware: applies a `LoginThrottle` to POST /login (where the client address is known)."""

    def __init__(self, app, throttle: LoginThrottle):
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or \
                not scope.get("path", "").endswith(_LOGIN_ROUTES):
            return await self.app(scope, receive, send)
        address = (scope.get("client") or ("unknown",))[0]
        wait = self.throttle.retry_after(address)
        if wait > 0:
            log.warning("login refused for %s: too many failed attempts (retry in %ds)", address, int(wait) + 1)
            return await _too_many(send, wait)
        status = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message.get("status", 200)
            await send(message)

        await self.app(scope, receive, watch)
        code = status.get("code", 500)
        if code == 200:
            self.throttle.succeeded(address)
        elif 400 <= code < 500:
            backoff = self.throttle.failed(address)
            log.warning("failed login from %s", address)
            if backoff:
                log.warning("login locked for %s for %ds after repeated failures", address, int(backoff))


async def _too_many(send, wait: float) -> None:
    body = b'{"detail": "Too many failed logins; try again later."}'
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", str(int(wait) + 1).encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["LoginThrottle", "LoginThrottleMiddleware"]
