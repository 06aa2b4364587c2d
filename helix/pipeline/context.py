"""RequestContext: the only state shared between phases.

Field            set by           read by
---------------  ---------------  ------------------------------------------
exchange         runner           every phase (request in, response out)
endpoint         app              decode, forward
view             decode           route, forward (model, stream flag)
candidates       route            forward (deployments, best first)
deployment       forward          record (the one that answered)
status           forward/runner   record
committed        forward          runner (no retry, no error body after it)
usage            forward          record (OpenAI usage dict, when known)
cost             forward          record (USD for this response; None if unknown)
error            runner           record
response_headers any phase        forward, runner (added to whatever response is sent:
                                  x-ratelimit-*, x-request-id, attempts ...)
started          runner           record (monotonic time at start)
head_at          forward          record (upstream response head arrived)
first_chunk_at   forward          record (first streamed chunk relayed: TTFT)
attempts         forward          record (upstream attempts made)
upstream_started forward          record (monotonic time the last attempt was sent)
upstream_headers trace_context    forward (extra upstream headers: traceparent; None if none)
response_body    forward          record (the JSON answer sent, non-stream only)
request_id       request_id       record (X-Request-Id; None when request ids are off)
trace            trace_context    record (observe.tracing.TraceState; None when off)
cache            cache (future)   record ("hit" / "miss"; None when no cache ran)
capture          cache            forward (None, or an object whose append(bytes) receives
                                  each relayed SSE chunk of a stream, as sent)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helix.errors import HelixError
    from helix.providers.base import Deployment
    from helix.server import Exchange


class RequestContext:
    __slots__ = (
        "attempts",
        "cache",
        "candidates",
        "capture",
        "committed",
        "cost",
        "deployment",
        "endpoint",
        "error",
        "exchange",
        "first_chunk_at",
        "head_at",
        "request_id",
        "response_body",
        "response_headers",
        "started",
        "status",
        "trace",
        "upstream_headers",
        "upstream_started",
        "usage",
        "view",
    )

    def __init__(self, exchange: Exchange, endpoint: str, started: float) -> None:
        self.exchange = exchange
        self.endpoint = endpoint
        self.started = started
        self.view = None
        self.candidates: list[Deployment] = []
        self.deployment: Deployment | None = None
        self.status = 0
        self.committed = False
        self.usage: dict | None = None
        self.cost: float | None = None
        self.head_at = 0.0
        self.first_chunk_at = 0.0
        self.error: HelixError | None = None
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.attempts = 0
        self.upstream_started = 0.0
        self.upstream_headers: list[tuple[bytes, bytes]] | None = None
        self.response_body: bytes | None = None
        self.request_id: str | None = None
        self.trace = None
        self.cache: str | None = None
        self.capture = None
