"""RequestContext: the only state shared between phases.

Field            set by           read by
---------------  ---------------  ------------------------------------------
exchange         runner           every phase (request in, response out)
api              runner           every phase (the client's API: helix.api; its name is the
                                  endpoint label of metrics, traces, logs and cache keys)
principal        authenticate     admit, cache (the gateway key; None without keys)
limits           admit            settle_limits (the reservation to settle)
view             decode           route, forward (model, stream flag)
hub              forward          forward (a translated client request, built once: helix.api)
relay            forward          record (the stream's relay: its usage, its answer's id)
candidates       route            forward (deployments, best first)
deployment       route / attempts record (the one that answered)
status           forward/runner   record
committed        forward          runner (no retry, no error body after it)
usage            forward          record (helix.schema.usage.Usage, when known)
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
response_body    forward          record (the JSON answer sent, non-stream only; None when
                                  a large native answer was relayed as it came)
response_tail    forward          forward (the end of such a relayed answer, for its usage)
request_id       request_id       record (X-Request-Id; None when request ids are off)
trace            trace_context    record (observe.tracing.TraceState; None when off)
cache            cache            record ("hit" / "miss"; None when no cache ran)
capture          cache            forward (None, or an object whose append(bytes) receives
                                  each relayed SSE chunk of a stream, as sent)
waited           forward/attempts server-timing (seconds spent awaiting upstreams: every
                                  attempt, hedges, backoff; Helix's own time is the rest)
queued           admit            server-timing (seconds waited in the rate-limit queue)
prefix           route            balancer (prompt-cache affinity key of the request, 0: none;
                                  None: not computed)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from helix.api import Api
    from helix.errors import HelixError
    from helix.providers.base import Deployment
    from helix.schema.usage import Usage
    from helix.server import Exchange


class RequestContext:
    __slots__ = (
        "api",
        "attempts",
        "cache",
        "candidates",
        "capture",
        "committed",
        "cost",
        "deployment",
        "error",
        "exchange",
        "first_chunk_at",
        "head_at",
        "hub",
        "limits",
        "prefix",
        "principal",
        "queued",
        "relay",
        "request_id",
        "response_body",
        "response_headers",
        "response_tail",
        "started",
        "status",
        "trace",
        "upstream_headers",
        "upstream_started",
        "usage",
        "view",
        "waited",
    )

    def __init__(self, exchange: Exchange, api: Api, started: float) -> None:
        self.exchange = exchange
        self.api = api
        self.started = started
        self.view = None
        self.hub = None
        self.principal = None
        self.limits = None
        self.relay = None
        self.candidates: list[Deployment] = []
        self.deployment: Deployment | None = None
        self.status = 0
        self.committed = False
        self.usage: Usage | None = None
        self.cost: float | None = None
        self.head_at = 0.0
        self.first_chunk_at = 0.0
        self.error: HelixError | None = None
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.attempts = 0
        self.upstream_started = 0.0
        self.upstream_headers: list[tuple[bytes, bytes]] | None = None
        self.response_body: bytes | None = None
        self.response_tail: bytes | None = None
        self.request_id: str | None = None
        self.trace = None
        self.cache: str | None = None
        self.capture = None
        self.waited = 0.0
        self.queued = 0.0
        self.prefix = None
