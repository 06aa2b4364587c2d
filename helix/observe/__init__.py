"""Observability: metrics, traces, access log, Helicone export, /status.

:func:`build` runs once per worker (in ``App.__init__``) and decides from
config what exists: the recorders and phases of a feature that is off are
not in the pipeline at all.  Per request, with everything on, the pipeline
gains up to two phases (``request_id``, ``trace_context``) and up to four recorders (metrics, span,
Helicone, access line), each a few microseconds at most; every export
happens later, in the worker's background tasks.
"""

from __future__ import annotations

from helix.errors import ErrorKind, HelixError

_PROM = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]


class Observability:
    def __init__(self, config, worker=None, registry=None) -> None:
        from helix.observe.access import (
            RequestIds,
            access_enabled,
            make_access_recorder,
            make_request_id_phase,
        )
        from helix.observe.helicone import build_helicone
        from helix.observe.metrics import Metrics
        from helix.observe.status import Status, make_guard
        from helix.observe.tracing import build_tracer

        obs = config.observability
        self.phases: list = []
        self.recorders: list = []
        self.exporters: dict = {}
        rid = bool(obs.logging.request_id)
        if rid:
            self.phases.append(make_request_id_phase(RequestIds()))
        self.metrics = Metrics.attach(worker, config)
        if self.metrics is not None:
            self.recorders.append(self.metrics.recorder())
        tracer = build_tracer(config, self.metrics)
        if tracer is not None:
            phase, recorder, exporter = tracer
            self.phases.append(phase)
            self.recorders.append(recorder)
            self.exporters["tracing"] = exporter
        helicone = build_helicone(config, self.metrics)
        if helicone is not None:
            recorder, exporter = helicone
            self.recorders.append(recorder)
            self.exporters["helicone"] = exporter
        access = access_enabled(config)
        if access:
            self.recorders.append(make_access_recorder(obs.logging.format))
        from helix.limit.keys import KeyTable

        self.guard = make_guard(obs.admin, KeyTable.from_config(config.auth))
        self.status = Status(config, worker, registry, self.metrics, self.exporters,
                             {"access_log": access, "request_id": rid})
        # /status: JSON, or the live page for a browser (Accept: text/html); /ui: the page.
        self.routes: dict = {"/status": {"GET": self.status_handler},
                             "/ui": {"GET": self.ui_handler}}
        if self.metrics is not None:
            self.routes[obs.metrics.prometheus_endpoint] = {"GET": self.metrics_handler}

    def start(self) -> None:
        """Start the exporters' tasks (needs the worker's running loop)."""
        for exporter in self.exporters.values():
            exporter.start()
        import asyncio

        self.status.start(asyncio.get_running_loop())

    def _check(self, exchange) -> None:
        if self.guard is not None:
            self.guard(exchange)

    async def metrics_handler(self, exchange) -> None:
        try:
            self._check(exchange)
        except HelixError as err:
            exchange.respond_error(err)
            return
        exchange.respond(200, list(_PROM), self.metrics.render())

    async def ui_handler(self, exchange) -> None:
        from helix.observe.ui import page

        try:
            self._check(exchange)
        except HelixError as err:
            exchange.respond_error(err)
            return
        headers, body = page()
        exchange.respond(200, headers, body)

    async def status_handler(self, exchange) -> None:
        from helix.observe.ui import wants_html

        if wants_html(exchange.request.headers.get("accept")):
            await self.ui_handler(exchange)
            return
        try:
            self._check(exchange)
        except HelixError as err:
            exchange.respond_error(err)
            return
        try:
            await self.status.handle(exchange)
        except Exception as exc:
            if exchange.committed:
                raise
            exchange.respond_error(HelixError(ErrorKind.INTERNAL, "status failed", cause=exc))

    async def close(self) -> None:
        self.status.stop()
        for exporter in self.exporters.values():
            await exporter.close()
            sender = getattr(exporter, "sender", None)
            if sender is not None:
                await sender.close()
        for recorder in self.recorders:
            writer = getattr(recorder, "writer", None)
            if writer is not None:
                writer.flush()


def build(config, worker=None, registry=None) -> Observability:
    return Observability(config, worker, registry)
