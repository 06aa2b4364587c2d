"""The request pipeline: an ordered list of phases, run once per request.

A phase is ``phase(ctx)`` -- a plain function, or a coroutine function when it
can suspend -- that fills the context or answers the client.  It returns a
truthy value when it has answered (a cache hit, a 429) to end the run early.
It never calls the next phase.  The list is built once at start-up from
config: a feature that is off is *absent*, not a no-op that still runs.

Failures are ``HelixError``.  Before the response is committed the runner
renders them in OpenAI's shape; the recorders always run, and must not fail.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable

from helix.errors import ErrorKind, HelixError
from helix.pipeline.context import RequestContext

log = logging.getLogger("helix.server")

Phase = Callable[[RequestContext], object]
Recorder = Callable[[RequestContext], None]


class Pipeline:
    __slots__ = ("_phases", "_recorders", "endpoint", "names")

    def __init__(self, endpoint: str, phases: list[Phase], recorders: list[Recorder]) -> None:
        self.endpoint = endpoint
        self._phases = [(p, inspect.iscoroutinefunction(p)) for p in phases]
        self._recorders = list(recorders)
        self.names = [p.__name__ for p in phases]

    async def run(self, exchange) -> None:
        ctx = RequestContext(exchange, self.endpoint, time.monotonic())
        try:
            for phase, is_async in self._phases:
                done = (await phase(ctx)) if is_async else phase(ctx)
                if done:
                    break
        except HelixError as err:
            ctx.error = err
            ctx.status = err.status
            if exchange.committed:
                raise
            _respond_error(exchange, err, ctx)
        except Exception as exc:
            if exchange.committed:
                raise
            log.exception("internal error in %s pipeline", self.endpoint)
            err = HelixError(ErrorKind.INTERNAL, "Helix hit an internal error.", cause=exc)
            ctx.error = err
            ctx.status = err.status
            _respond_error(exchange, err, ctx)
        finally:
            for record in self._recorders:
                try:
                    record(ctx)
                except Exception:  # recording must never fail a request
                    log.exception("recorder %s failed", getattr(record, "__name__", record))


def _respond_error(exchange, err: HelixError, ctx: RequestContext) -> None:
    if ctx.response_headers:
        err.headers = [*err.headers, *ctx.response_headers]
    exchange.respond_error(err)
