"""The per-worker application: routes, pipelines, the upstream pool.

``create_app`` runs once in each worker after fork.  Everything that can be
decided from config (routes, pipelines, the model list, static headers) is
decided here, so the request path only looks things up.
"""

from __future__ import annotations

from collections.abc import Awaitable

import msgspec

from helix.api import APIS, RESPONSES
from helix.api.responses import make_resource_handler
from helix.api.responses.store import open_store
from helix.client import PoolLimits, UpstreamPool
from helix.config import Config
from helix.errors import ErrorKind, HelixError
from helix.observe import Observability, timing
from helix.phases import admit as limits
from helix.phases import cache as cache_phase
from helix.phases.authenticate import guard, make_authenticate
from helix.phases.decode import decode
from helix.phases.forward import make_forward
from helix.phases.route import make_route
from helix.pipeline.runner import Pipeline
from helix.routing.balancer import gauges as balancer_gauges
from helix.routing.models import Registry
from helix.routing.registry import ModelRegistry
from helix.server import Exchange, ServerLimits

_JSON = [(b"content-type", b"application/json")]
_encode = msgspec.json.Encoder().encode


class App:
    def __init__(self, config: Config, worker=None) -> None:
        self.config = config
        self.worker = worker
        self.registry = ModelRegistry(config)
        up = config.upstream
        self.pool = UpstreamPool(
            PoolLimits(
                max_connections_per_origin=up.max_connections_per_origin,
                max_idle_per_origin=(up.max_connections_per_origin
                                     if up.max_idle_per_origin is None
                                     else up.max_idle_per_origin),
                idle_timeout=float(up.idle_timeout),
                pool_timeout=float(up.pool_timeout),
                max_response_bytes=up.max_response_bytes,
            )
        )
        s = config.server
        self.server_limits = ServerLimits(
            max_header_bytes=s.max_header_bytes,
            max_headers=s.max_headers,
            max_body_bytes=s.max_body_bytes,
            max_buffered_body_bytes=s.buffered_body_limit,
            max_connections=s.max_connections,
            header_timeout=float(s.header_timeout),
            body_timeout=float(s.body_timeout),
            keepalive_timeout=float(s.keepalive_timeout),
        )
        # server-timing on every API response unless observability.server_timing is off.
        timing.ON = bool(config.observability.server_timing)
        # Metrics, traces, request ids, the access line, Helicone: only what config enables.
        self.observe = Observability(config, worker, self.registry)
        self.model_table = Registry.from_config(config)
        metrics = getattr(self.observe, "metrics", None)
        route = make_route(self.registry, worker, metrics)
        # Balancer health/latency: read from shared memory by /status and /metrics only.
        self.observe.status.deployment_state = route.balancer.snapshot
        if metrics is not None:
            metrics.gauges.append(balancer_gauges(route.balancer))
        # Gateway keys (authenticate, before decode) and limits (admit, after it; settle
        # recorder): absent unless configured.
        self.keys, self.gate = limits.build(config, worker, self.model_table, metrics)
        if self.gate is not None:
            self.observe.status.components["rate_limits"] = self.gate.state
        self.cache = None
        if config.caching is not None:  # response caching: absent unless configured
            self.cache = cache_phase.build(config, self.pool)
            self.observe.status.components["cache"] = self.cache.state
        forward = make_forward(self.pool, self.model_table)
        RESPONSES.store = open_store(config.responses)  # opened on first use
        recorders = [
            *([cache_phase.cache_store] if self.cache is not None else []),
            *self.observe.recorders,
            # Only token and cost limits reserve an estimate to settle (Gate._decided).
            *([self.gate.settle] if self.gate is not None and self.gate.estimating else []),
        ]
        # One pipeline per client API, every one built from the same phases: a feature
        # that is off is absent from all of them.
        self.routes: dict[str, dict[str, object]] = {}
        for api in APIS:
            lookup = None
            if self.cache is not None and api.name in self.cache.rules:
                lookup = cache_phase.make_cache_lookup(self.cache, api.name)
            local = api.local_phase()
            phases = [
                *self.observe.phases,
                *([make_authenticate(self.keys)] if self.keys is not None else []),
                decode,
                *([self.gate.admit] if self.gate is not None and api.admitted else []),
                route,
                *([lookup] if lookup is not None else []),
                *([local] if local is not None else []),
                forward,
            ]
            own = api.recorder()
            run = Pipeline(api, phases, [*recorders, *([own] if own is not None else [])]).run
            for path in api.paths:
                self.routes[path] = {"POST": run}
        self._models_body = self._models_json()
        self.routes.update({
            "/v1/models": {"GET": self.models},
            "/models": {"GET": self.models},
            "/health": {"GET": self.health, "HEAD": self.health},
            **self.observe.routes,
        })
        if self.cache is not None and self.cache.admin_key:
            self.routes["/admin/cache/purge"] = {"POST": cache_phase.make_purge(self.cache)}
        if self.keys is not None:  # gateway keys guard /v1/* (the model list too), not /health
            self.routes["/v1/models"] = self.routes["/models"] = {
                "GET": guard(self.keys, self.models)
            }
        # Stored responses: /v1/responses/{id} and /v1/responses/{id}/input_items.
        resource = make_resource_handler(self.registry, self.pool, self.keys)
        self.prefixes = [(p + "/", {"GET": resource, "DELETE": resource})
                         for p in RESPONSES.paths]
        self._served = ", ".join(sorted({p for p in self.routes if p.startswith("/v1/")}))

    def handle(self, exchange: Exchange) -> Awaitable[None]:
        """The route handler's coroutine for ``exchange``, for the server to await.  A plain
        function, not a coroutine, so a request does not pay for one more coroutine frame
        on every resume; an unknown path or method raises here, inside that ``await``."""
        request = exchange.request
        methods = self.routes.get(request.path)
        if methods is None:
            path = request.path.rstrip("/")
            methods = self.routes.get(path) if path != request.path else None
            if methods is None:
                methods = next((m for prefix, m in self.prefixes
                                if request.path.startswith(prefix)), None)
            if methods is None:
                raise HelixError(
                    ErrorKind.NOT_FOUND,
                    f"Unknown request URL: {request.method} {request.path}. "
                    f"Helix serves {self._served} and /health.",
                )
        handler = methods.get(request.method)
        if handler is None:
            raise HelixError(
                ErrorKind.METHOD_NOT_ALLOWED,
                f"Method {request.method} is not allowed for {request.path}; "
                f"use {', '.join(methods)}.",
                headers=[(b"allow", ", ".join(methods).encode())],
            )
        return handler(exchange)

    async def health(self, exchange: Exchange) -> None:
        exchange.respond(200, _JSON, b'{"status":"ok"}')

    async def models(self, exchange: Exchange) -> None:
        # Anthropic clients (Claude Code's model discovery) send anthropic-version and read
        # Anthropic's list shape; every other client gets OpenAI's.
        if "anthropic-version" in exchange.request.headers:
            exchange.respond(200, _JSON, self._anthropic_models_body)
        else:
            exchange.respond(200, _JSON, self._models_body)

    def _models_json(self) -> bytes:
        data = []
        anthropic = []
        for name, deps in self.registry.by_name.items():
            data.append({"id": name, "object": "model", "created": 0,
                         "owned_by": deps[0].provider})
            anthropic.append({"type": "model", "id": name, "display_name": name,
                              "created_at": "1970-01-01T00:00:00Z"})
        self._anthropic_models_body = _encode({
            "data": anthropic, "has_more": False,
            "first_id": anthropic[0]["id"] if anthropic else None,
            "last_id": anthropic[-1]["id"] if anthropic else None,
        })
        return _encode({"object": "list", "data": data})

    async def close(self) -> None:
        await RESPONSES.store.close()
        if self.cache is not None:
            await self.cache.close()
        await self.pool.close()
        await self.observe.close()
        if self.gate is not None:
            await self.gate.close()


async def create_app(config: Config, worker=None) -> App:
    app = App(config, worker)
    app.observe.start()
    return app
