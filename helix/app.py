"""The per-worker application: routes, pipelines, the upstream pool.

``create_app`` runs once in each worker after fork.  Everything that can be
decided from config (routes, pipelines, the model list, static headers) is
decided here, so the request path only looks things up.
"""

from __future__ import annotations

import msgspec

from helix.client import PoolLimits, UpstreamPool
from helix.config import Config
from helix.errors import ErrorKind, HelixError
from helix.observe import Observability
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
                max_idle_per_origin=up.max_idle_per_origin,
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
        # Metrics, traces, request ids, the access line, Helicone: only what config enables.
        self.observe = Observability(config, worker, self.registry)
        recorders = self.observe.recorders
        self.model_table = Registry.from_config(config)
        metrics = getattr(self.observe, "metrics", None)
        route = make_route(self.registry, worker, metrics)
        upstream = [
            *self.observe.phases,
            decode,
            route,
            make_forward(self.pool, self.model_table),
        ]
        # Balancer health/latency: read from shared memory by /status and /metrics only.
        self.observe.status.deployment_state = route.balancer.snapshot
        if metrics is not None:
            metrics.gauges.append(balancer_gauges(route.balancer))
        # Gateway keys (authenticate, before decode) and limits (admit, after it; settle
        # recorder): absent unless configured.
        self.keys, self.gate = limits.build(config, worker, self.model_table, metrics)
        if self.gate is not None:
            self.observe.status.components["rate_limits"] = self.gate.state
            upstream.insert(upstream.index(decode) + 1, self.gate.admit)
            recorders = [*recorders, self.gate.settle]
        if self.keys is not None:
            principals = self.gate.principals if self.gate is not None else None
            upstream.insert(upstream.index(decode), make_authenticate(self.keys, principals))
        chat_phases = embeddings_phases = upstream
        self.cache = None
        if config.caching is not None:  # response caching: absent unless configured
            self.cache, chat_phases, embeddings_phases, recorders = cache_phase.build(
                config, self.pool, upstream, recorders
            )
            self.observe.status.components["cache"] = self.cache.state
        chat = Pipeline("chat", chat_phases, recorders).run
        embeddings = Pipeline("embeddings", embeddings_phases, recorders).run
        self._models_body = self._models_json()
        # path -> {method: handler}; both the /v1 and the bare OpenAI paths.
        self.routes = {
            "/v1/chat/completions": {"POST": chat},
            "/chat/completions": {"POST": chat},
            "/v1/embeddings": {"POST": embeddings},
            "/embeddings": {"POST": embeddings},
            "/v1/models": {"GET": self.models},
            "/models": {"GET": self.models},
            "/health": {"GET": self.health, "HEAD": self.health},
            **self.observe.routes,
        }
        if self.cache is not None and self.cache.admin_key:
            self.routes["/admin/cache/purge"] = {"POST": cache_phase.make_purge(self.cache)}
        if self.keys is not None:  # gateway keys guard /v1/* (the model list too), not /health
            self.routes["/v1/models"] = self.routes["/models"] = {
                "GET": guard(self.keys, self.models)
            }

    async def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        methods = self.routes.get(request.path)
        if methods is None:
            path = request.path.rstrip("/")
            methods = self.routes.get(path) if path != request.path else None
            if methods is None:
                raise HelixError(
                    ErrorKind.NOT_FOUND,
                    f"Unknown request URL: {request.method} {request.path}. "
                    "Helix serves /v1/chat/completions, /v1/embeddings, /v1/models and /health.",
                )
        handler = methods.get(request.method)
        if handler is None:
            raise HelixError(
                ErrorKind.METHOD_NOT_ALLOWED,
                f"Method {request.method} is not allowed for {request.path}; "
                f"use {', '.join(methods)}.",
                headers=[(b"allow", ", ".join(methods).encode())],
            )
        await handler(exchange)

    async def health(self, exchange: Exchange) -> None:
        exchange.respond(200, _JSON, b'{"status":"ok"}')

    async def models(self, exchange: Exchange) -> None:
        exchange.respond(200, _JSON, self._models_body)

    def _models_json(self) -> bytes:
        data, seen = [], set()
        for name, deps in self.registry.by_name.items():
            if name not in seen:
                seen.add(name)
                data.append({"id": name, "object": "model", "created": 0,
                             "owned_by": deps[0].provider})
        return _encode({"object": "list", "data": data})

    async def close(self) -> None:
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
