"""Provider-independent types shared by the mock server and its route modules.

A route module (one per provider wire format, e.g. ``openai_routes``) exposes:

* ``NAME``: a short provider name,
* ``ROUTES``: ``{(method, path): handler}`` where ``handler(req, ctl) -> Reply | StreamReply``,
* ``PREFIX_ROUTES``: optional ``[(method, path_prefix, handler)]`` for paths with parameters,
* ``error_reply(status, message, code=None) -> Reply``: that provider's error shape,
* ``check_auth(req, key) -> bool``: that provider's credential check.

Handlers are pure: they build the whole response from the request; the server does all I/O
(latency, chunk spacing, failure injection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class MockRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any = None


@dataclass(slots=True)
class Controls:
    """Behaviour knobs: CLI defaults, overridden per request by ``x-mock-*`` headers."""

    latency_ms: float = 0.0
    chunks: int = 5
    chunk_interval_ms: float = 0.0
    status: int = 200
    fail: str = ""
    retry_after: str = "1"


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class StreamReply:
    """A streamed reply: each event is sent as one HTTP chunk, spaced by the chunk interval."""

    status: int
    events: list[bytes]
    content_type: str = "text/event-stream"
    headers: list[tuple[str, str]] = field(default_factory=list)


class BadRequest(Exception):
    """Raised by handlers for malformed requests; rendered with the provider's error shape."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


def split_text(text: str, n: int) -> list[str]:
    """Split ``text`` into ``n`` contiguous, near-equal, non-empty pieces (fewer if too short)."""
    if not text:
        return []
    n = max(1, min(n, len(text)))
    size, extra = divmod(len(text), n)
    out = []
    pos = 0
    for i in range(n):
        step = size + (1 if i < extra else 0)
        out.append(text[pos : pos + step])
        pos += step
    return out


def count_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: whitespace-separated words (at least 1)."""
    return max(1, len(text.split()))
