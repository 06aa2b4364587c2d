"""What every provider adapter is, and the resolved deployment it works on.

Adapters are sans-IO: they turn an OpenAI-shaped request into the provider's
wire request (:class:`UpstreamRequest`) and the provider's answer back into
OpenAI's shape.  They never touch a socket, a clock or the environment, so
they are tested byte for byte against recorded payloads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from helix.client import Origin, Timeouts
    from helix.errors import HelixError


class Deployment:
    """One way to serve a model: provider × upstream model id × key × endpoint.

    Built once at start-up from config; ``static_headers`` already holds the
    provider's auth header, so nothing about keys is computed per request.
    """

    __slots__ = (
        "adapter",
        "base_path",
        "index",
        "model",
        "model_id",
        "origin",
        "provider",
        "provider_type",
        "query",
        "route_headers",
        "signer",
        "static_headers",
        "timeouts",
        "verify_tls",
    )

    def __init__(
        self,
        *,
        provider: str,
        provider_type: str,
        model: str,
        model_id: str,
        origin: Origin,
        base_path: str,
        static_headers: list[tuple[bytes, bytes]],
        timeouts: Timeouts,
        verify_tls: bool,
        adapter: Adapter,
        query: str = "",
        index: int = -1,
        signer: Signer | None = None,
    ) -> None:
        self.provider = provider
        self.provider_type = provider_type
        self.model = model
        self.model_id = model_id
        self.origin = origin
        self.base_path = base_path
        self.static_headers = static_headers
        self.timeouts = timeouts
        self.verify_tls = verify_tls
        self.adapter = adapter
        self.query = query
        self.signer = signer  # per-request auth (SigV4, OAuth); None for static-header auth
        self.index = index  # row in the shared-memory tables (assigned by the registry)
        # Sent back to the client so it can see where its request went.
        self.route_headers = [
            (b"x-helix-provider", provider.encode("ascii", "replace")),
            (b"x-helix-model", model_id.encode("ascii", "replace")),
        ]

    def __repr__(self) -> str:  # never shows headers: they carry the provider key
        return f"<Deployment {self.provider}/{self.model_id} at {self.origin.host}>"


class UpstreamRequest:
    __slots__ = ("body", "headers", "method", "target")

    def __init__(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body


class StreamRelay(Protocol):
    """Per-stream state: bytes from the provider in, OpenAI SSE bytes out.

    Created per request (it holds the stream's id, model, tool-call indices,
    partial events).  ``feed`` may return b"" while an event is incomplete;
    it raises HelixError for an error event from the provider.  ``usage`` is
    the stream's OpenAI-shaped usage dict once known, else None.
    """

    usage: dict | None
    passthrough: bool  # True: provider bytes are already OpenAI SSE (keep its headers)

    def feed(self, data: bytes) -> bytes: ...
    def close(self) -> bytes: ...


class Signer(Protocol):
    """Per-request auth computed at send time (SigV4 signature, OAuth bearer)."""

    async def sign(self, dep: Deployment, up: UpstreamRequest) -> UpstreamRequest: ...


class Adapter(Protocol):
    """Sans-IO translation between OpenAI's wire format and one provider's.

    ``view`` is the decoded view Struct (``schema/openai.py``); ``body`` the
    client's raw JSON, which translating adapters decode fully themselves.
    """

    # True when request and response bodies are already OpenAI-shaped (OpenAI family):
    # generic post-processing such as base64 embeddings is then the provider's business.
    passthrough: bool

    def chat_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest: ...
    def embeddings_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest: ...
    def chat_response(self, dep: Deployment, body: bytes) -> bytes: ...
    def embeddings_response(self, dep: Deployment, body: bytes) -> bytes: ...
    def stream_relay(self, dep: Deployment, view) -> StreamRelay: ...
    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError: ...
