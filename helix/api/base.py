"""What an ingress API is: one object per client dialect Helix serves.

The pipeline and its phases are the same for every client; what differs is
owned by the request's :class:`Api` (``ctx.api``), chosen by the route table
in ``app.py``:

* ``decode`` -- the body into a view Struct (strict, typed, one pass);
  its ``tokens()`` is the one token estimate (admission and the balancer);
* ``credential`` -- the gateway key the client presented, in its dialect;
* ``error_body`` / ``error_event`` -- a :class:`HelixError` as this client
  expects it, before and after the response is committed;
* how an attempt talks to a deployment: **native** when the deployment's
  adapter speaks this API itself (``self.name in adapter.native``: the body
  goes upstream as sent, model resolved; the answer comes back as sent and
  only its usage is read), otherwise **translated** through the adapter's
  chat translation (:meth:`upstream_request`, :meth:`stream_relay` with this
  API's :meth:`sink`, :meth:`translate_response`);
* the cache's view of it: key defaults, when a stored stream is complete, and
  how a stored answer is replayed (``cache_*``).

The decision native-or-translated is made per attempt (``phases/forward.py``),
so a fallback from one provider to another in the middle of a request keeps
the client's dialect.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

from helix.schema.openai import decode_request

if TYPE_CHECKING:
    from collections.abc import Callable

    from helix.errors import HelixError
    from helix.pipeline.context import RequestContext
    from helix.providers.base import Deployment, UpstreamRequest
    from helix.schema.usage import Usage

__all__ = ["Api"]

# Api class attributes read on every request (forward.py's prepare and commit).
_PER_REQUEST = ("name", "streams", "native_headers", "native_check")


class Api(abc.ABC):
    name: ClassVar[str]  # metrics label, cache key "e", the adapters' ``native`` entries
    paths: ClassVar[tuple[str, ...]]  # served POST paths, with and without /v1
    decoder: ClassVar[object]  # msgspec Decoder of this API's view Struct
    streams: ClassVar[bool] = True  # the view has ``stream``
    cacheable: ClassVar[bool] = True  # answers may be stored by the response cache
    admitted: ClassVar[bool] = True  # rate limits and budgets apply
    # Provider response headers a native answer also keeps under their own name (the
    # client's SDK reads them); the request id is otherwise x-upstream-request-id.
    native_headers: ClassVar[frozenset[bytes]] = frozenset()
    # Body fields given with these values are the same request as the field left out.
    cache_defaults: ClassVar[dict[str, object]] = {}

    def __init__(self) -> None:
        # The request path reads these on every request. Read through the instance, a class
        # attribute is looked up generically each time (3.11 does not specialise that load);
        # an instance attribute is a specialised load.
        cls = type(self)
        for name in _PER_REQUEST:
            setattr(self, name, getattr(cls, name, None))

    # -- request -------------------------------------------------------------------
    def decode(self, body: bytes):
        return decode_request(self.decoder, body)

    credential_hint: ClassVar[str] = "Authorization: Bearer YOUR_KEY"

    def credential(self, headers: dict[str, str]) -> str | None:
        """The gateway key the client presented: ``Authorization: Bearer <key>``."""
        return bearer(headers.get("authorization"))

    def prefix_key(self, ctx: RequestContext) -> int:
        """The request's prompt-prefix key for prompt-cache affinity (``api/prefix.py``);
        0: none (the balancer's strategy decides)."""
        return 0

    def local_phase(self):
        """A phase of this API's own that runs right before ``forward`` (None: none)."""
        return None

    def recorder(self):
        """A recorder of this API's own, run after every request (None: none)."""
        return None

    # -- errors --------------------------------------------------------------------
    def error_body(self, err: HelixError) -> bytes:
        """The body of an error answer (the response is not committed yet)."""
        return err.to_json()

    def error_event(self, err: HelixError) -> bytes:
        """An error inside a stream that is already flowing (no sink: native streams)."""
        return b"data: " + self.error_body(err) + b"\n\n"

    # -- translated attempts ------------------------------------------------------------
    @abc.abstractmethod
    def upstream_request(self, ctx: RequestContext, dep: Deployment) -> UpstreamRequest:
        """The request for a deployment that does not speak this API."""

    @abc.abstractmethod
    def sink(self, ctx: RequestContext, dep: Deployment | None = None):
        """A new :class:`~helix.schema.stream.StreamSink` writing this API's stream."""

    @abc.abstractmethod
    def stream_relay(self, ctx: RequestContext, dep: Deployment, sink):
        """The relay of a translated stream, emitting into ``sink``."""

    @abc.abstractmethod
    def translate_response(
        self, dep: Deployment, body: bytes, ctx: RequestContext | None = None
    ) -> tuple[bytes, Usage | None]:
        """A translated deployment's JSON answer as this API's answer, and its usage."""

    # -- native attempts ----------------------------------------------------------------
    def native_request(self, ctx: RequestContext, dep: Deployment) -> UpstreamRequest:
        """The request for a deployment that speaks this API: the client's, model resolved."""
        return dep.adapter.native_request(self.name, dep, ctx.view, ctx.exchange.request)

    @abc.abstractmethod
    def native_usage(self, body: bytes) -> Usage | None:
        """The usage of an answer in this API's own format."""

    # ``native_check(body, label, prefix)``, when an API has one: the upstream pool's check
    # of a JSON answer (helix.schema.jsonsafe.check_json_object, the same 502s) and
    # ``native_usage`` in one decode (UpstreamResponse.reader; phases/forward.py).
    native_check: ClassVar[Callable[[bytes, str, str], Usage | None] | None] = None

    # -- cache -----------------------------------------------------------------------------
    @abc.abstractmethod
    def cache_complete(self, stream: bytes) -> bool:
        """Whether a captured stream ended as a stream of this API ends."""

    @abc.abstractmethod
    def cache_replay(self, ctx: RequestContext, stream_stored: bool, body: bytes) -> bytes:
        """A stored answer as this request wants it (``ctx.view.stream`` says which)."""


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def any_credential(headers: dict[str, str]) -> str | None:
    """The bearer token, else ``x-api-key``: for routes every client dialect calls."""
    return bearer(headers.get("authorization")) or headers.get("x-api-key") or None
