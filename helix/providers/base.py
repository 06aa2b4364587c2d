"""What every provider adapter is, and the resolved deployment it works on.

Adapters are sans-IO.  Each speaks some client APIs **natively** (``native``:
the OpenAI family speaks chat and embeddings, Claude deployments speak
Anthropic's Messages): for those the client's body goes upstream as sent,
model resolved, and the answer comes back as sent.  Every other client is
reached through the adapter's **chat translation**: an OpenAI chat request in
(the hub: other client APIs turn theirs into one first, ``helix/api``), the
provider's wire request out (:class:`UpstreamRequest`), and the answer back as
an OpenAI ``chat.completion`` document or, for streams, as the calls of the
client's :class:`~helix.schema.stream.StreamSink`.  Adapters never touch a
socket, a clock or the environment, so they are tested byte for byte against
recorded payloads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from helix.client import Origin, Timeouts
    from helix.errors import HelixError
    from helix.schema.stream import StreamSink
    from helix.schema.usage import Usage


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
        "priced",
        "provider",
        "provider_type",
        "query",
        "route_headers",
        "signer",
        "static_headers",
        "targets",
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
        # (registry, its ModelInfo for this deployment or None): found on the first priced
        # answer (helix/phases/forward.py _price), so later ones skip the lookup.
        self.priced: tuple | None = None
        # An adapter's request target per endpoint, made on first use (base_path and query
        # are fixed for the deployment's life): OpenAIAdapter._request.
        self.targets: dict[str, bytes] = {}
        # Sent back to the client so it can see where its request went.
        self.route_headers = [
            (b"x-helix-provider", provider.encode("ascii", "replace")),
            (b"x-helix-model", model_id.encode("ascii", "replace")),
        ]

    def __repr__(self) -> str:  # never shows headers: they carry the provider key
        return f"<Deployment {self.provider}/{self.model_id} at {self.origin.host}>"


class UpstreamRequest(msgspec.Struct, eq=False):
    """What goes to the provider: method, target, headers, body.  A Struct: made in C, no
    ``__init__`` frame per request (fields are not validated; compared by identity)."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class FanOut:
    """Several upstream requests that together answer one client request (a batch the
    provider only takes one item at a time): ``forward`` sends them concurrently, at most
    ``limit`` at a time, and hands the bodies, in order, to ``combine``.  If one fails, the
    whole request fails with that error and the others are cancelled."""

    __slots__ = ("combine", "limit", "requests")

    def __init__(self, requests: list[UpstreamRequest], combine, limit: int = 8) -> None:
        self.requests = requests
        self.combine = combine  # list[bytes] -> bytes, the provider-shaped single answer
        self.limit = limit


class StreamRelay(Protocol):
    """Per-stream state: bytes from the provider in, the client's bytes out.

    Created per request (it holds the stream's id, model, tool-call indices,
    partial events).  A translating relay emits through the request's
    :class:`~helix.schema.stream.StreamSink`; a native one hands the bytes on
    unchanged.  ``feed`` may return b"" while an event is incomplete; it raises
    HelixError for an error event from the provider.  ``usage`` is the
    stream's :class:`~helix.schema.usage.Usage` once known, else None.
    """

    usage: Usage | None
    passthrough: bool  # True: the provider's bytes are the client's (keep its headers)

    def feed(self, data: bytes) -> bytes: ...
    def close(self) -> bytes: ...


class Signer(Protocol):
    """Per-request auth computed at send time (SigV4 signature, OAuth bearer)."""

    async def sign(self, dep: Deployment, up: UpstreamRequest) -> UpstreamRequest: ...


class Adapter(Protocol):
    """Sans-IO translation between the client APIs and one provider's wire format.

    ``view`` is the decoded view Struct of an OpenAI chat or embeddings
    request (``schema/openai.py``); ``body`` its raw JSON, which translating
    adapters decode fully themselves.
    """

    # True when request and response bodies are already OpenAI-shaped (OpenAI family):
    # generic post-processing such as base64 embeddings is then the provider's business.
    passthrough: bool
    # The client APIs (``helix.api`` names) this provider speaks itself.
    native: frozenset[str]

    # -- the chat translation (every client API that is not native) -------------------------
    def chat_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest: ...
    def chat_request_doc(self, dep: Deployment, view, doc: dict) -> UpstreamRequest:
        """``chat_request`` of a request already decoded (a hub request built by Helix)."""
    def chat_document(self, dep: Deployment, body: bytes) -> tuple[dict, Usage | None]: ...
    def stream_relay(self, dep: Deployment, view, sink: StreamSink) -> StreamRelay: ...
    def embeddings_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest: ...
    def embeddings_response(self, dep: Deployment, body: bytes) -> bytes: ...
    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError: ...

    # -- native (``api`` in ``native``) -----------------------------------------------------
    def native_request(self, api: str, dep: Deployment, view, request) -> UpstreamRequest: ...
    def native_relay(self, api: str, dep: Deployment, view) -> StreamRelay: ...
    def native_error(
        self, api: str, dep: Deployment, status: int, headers, body: bytes
    ) -> HelixError: ...
    def native_response(self, api: str, dep: Deployment, body: bytes) -> bytes: ...


_encode = msgspec.json.Encoder().encode


class TranslatingAdapter:
    """Base of adapters whose provider speaks no client API of Helix's: every client is
    reached through the chat translation (``chat_request`` / ``chat_document`` /
    ``stream_relay``) and the embeddings translation."""

    passthrough = False
    native: frozenset[str] = frozenset()

    def chat_response(self, dep: Deployment, body: bytes) -> bytes:
        """The OpenAI ``chat.completion`` body of a provider answer."""
        return _encode(self.chat_document(dep, body)[0])
