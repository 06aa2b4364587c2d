"""The request pipeline: an ordered list of phases, run once per request.

A phase is ``phase(ctx)`` -- a plain function, or a coroutine function when it
can suspend -- that fills the context or answers the client.  It returns a
truthy value when it has answered (a cache hit, a 429) to end the run early.
It never calls the next phase.  The list is built once at start-up from
config: a feature that is off is *absent*, not a no-op that still runs.

Failures are ``HelixError``.  Before the response is committed the runner
renders them in the client's dialect (``ctx.api.error_body``); the recorders
always run, and must not fail.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable

from helix.errors import ErrorKind, HelixError, release
from helix.pipeline.context import RequestContext

log = logging.getLogger("helix.server")

Phase = Callable[[RequestContext], object]
Recorder = Callable[[RequestContext], None]


class Pipeline:
    __slots__ = ("_phases", "_recorders", "api", "names")

    def __init__(self, api, phases: list[Phase], recorders: list[Recorder]) -> None:
        self.api = api
        phases = _wrap_forward(phases)
        self._phases = [(p, inspect.iscoroutinefunction(p)) for p in phases]
        self._recorders = list(recorders)
        self.names = [p.__name__ for p in phases]

    async def run(self, exchange) -> None:
        ctx = RequestContext(exchange, self.api, time.monotonic())
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
            log.exception("internal error in %s pipeline", self.api.name)
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
            release(ctx.error)  # its traceback's frames hold ctx: a cycle (issue 14.3)


def _wrap_forward(phases: list[Phase]) -> list[Phase]:
    """Put the route phase's attempt loop around the ``forward`` phase that follows it.

    The list keeps its shape (the wrapped phase is still named ``forward``):
    a route phase with ``wrap_forward`` (phases/route.py) hands over the
    balancer and the resilience policy, built once from config.
    """
    out: list[Phase] = []
    wrap = None
    for p in phases:
        if wrap is not None and getattr(p, "__name__", "") == "forward":
            p = wrap(p)
            wrap = None
        else:
            wrap = getattr(p, "wrap_forward", None) or wrap
        out.append(p)
    return out


_ATTEMPTS = b"x-helix-attempts"
_ATTEMPT_VALUES = [str(i).encode() for i in range(64)]


def make_attempts(forward: Phase, balancer, policy, resolve, clock, metrics=None) -> Phase:
    """The attempt loop around ``forward``: bookkeeping always, retries when configured.

    Every attempt brackets ``forward`` with ``balancer.begin``/``end``: the
    in-flight count, the latency sample (time to first chunk for a stream,
    the whole answer otherwise; failures give none) and the health event.

    ``policy`` None (no ``resilience`` section): exactly one attempt, nothing
    else per request.  Otherwise: up to ``max_attempts`` per model, each retry
    after a backoff and on a deployment not yet tried when there is one, only
    for retryable failures (connect errors, timeouts, 429, 5xx), never once
    the response is committed, and none starting past ``deadline``; then the
    model's fallback chain, and on a context-window overflow the configured
    larger-context model.  ``x-helix-attempts`` says how many were made.
    """
    from helix.routing.health import SUCCESS
    from helix.routing.resilience import backoff, classify, is_context_overflow

    begin = balancer.begin
    end = balancer.end
    select = balancer.select
    rnd = balancer._rnd

    async def attempt(ctx: RequestContext, dep) -> None:
        start = clock()
        begin(dep)
        try:
            await forward(ctx)
        except HelixError as err:
            event, _, wait = classify(err)
            end(dep, event, clock(), None, wait)
            raise
        except BaseException:
            end(dep, -1, clock())  # cancelled (client gone) or internal: no verdict
            raise
        now = clock()
        if ctx.error is not None:  # broke mid-stream, after commit
            end(dep, classify(ctx.error)[0], now)
        elif ctx.first_chunk_at:
            end(dep, SUCCESS, now, ctx.first_chunk_at - start)
        else:
            end(dep, SUCCESS, now, now - start)

    if policy is None:

        async def forward_once(ctx: RequestContext) -> None:
            dep = ctx.deployment
            if dep is None:
                dep = ctx.deployment = ctx.candidates[0]
            await attempt(ctx, dep)

        forward_once.__name__ = "forward"
        return forward_once

    import asyncio

    max_attempts = policy.max_attempts
    fallbacks = policy.fallbacks
    context_fallbacks = policy.context_fallbacks
    deadline_s = policy.deadline

    async def forward_resilient(ctx: RequestContext) -> None:
        deadline = ctx.started + deadline_s if deadline_s is not None else None
        model = ctx.view.model
        chain = [model, *fallbacks.get(model, ())]
        headers = ctx.response_headers
        slot = len(headers)
        headers.append((_ATTEMPTS, b"0"))
        cands = ctx.candidates
        dep = ctx.deployment
        attempts = 0
        failed = None  # the previous attempt, if it failed: traced once a retry starts
        last: HelixError | None = None
        ci = 0
        while ci < len(chain):
            name = chain[ci]
            more = ci + 1 < len(chain)
            if ci > 0:
                try:
                    cands = resolve(name)
                except HelixError as err:
                    last = last or err
                    ci += 1
                    continue
                dep = None
            tried: list = []
            overflow = False
            for n in range(max_attempts):
                if n > 0:
                    delay = backoff(n, policy.backoff, policy.initial_delay, policy.max_delay,
                                    rnd())
                    if deadline is not None and clock() + delay >= deadline:
                        break
                    if delay > 0:
                        await asyncio.sleep(delay)
                if deadline is not None and clock() >= deadline:
                    break
                if dep is None:
                    dep = select(cands, clock(), ctx.view, tried, not more)
                    if dep is None:
                        break  # nothing available here: on to the fallback model
                attempts += 1
                headers[slot] = (_ATTEMPTS, _ATTEMPT_VALUES[attempts] if attempts < 64
                                 else str(attempts).encode())
                if metrics is not None and attempts > 1:
                    if n == 0:  # the first attempt on a fallback model
                        metrics.fallback(model, name)
                    else:
                        metrics.retry(dep.provider, dep.model_id)
                ctx.candidates = cands
                ctx.deployment = dep
                if failed is not None and ctx.trace is not None and ctx.trace.sampled:
                    # Another attempt does start: the failed one gets its own span.
                    ctx.trace.attempt_failed(ctx, *failed)
                failed = None
                started = clock()
                try:
                    await attempt(ctx, dep)
                    return
                except HelixError as err:
                    last = release(err)  # kept in this frame, which its traceback holds
                    failed = (dep, started, clock(), err)
                    if ctx.committed or ctx.exchange.committed:
                        raise
                    if is_context_overflow(err) and name in context_fallbacks:
                        target = context_fallbacks[name]
                        if target not in chain[ci + 1:]:
                            chain.insert(ci + 1, target)
                        overflow = True
                        break
                    if not classify(err)[1]:
                        raise
                    tried.append(dep)
                    dep = None
            if deadline is not None and clock() >= deadline and not overflow:
                break
            ci += 1
        if last is None:
            raise HelixError(
                ErrorKind.NO_DEPLOYMENT,
                f"No deployment of '{model}' is available right now (all are cooling down "
                f"or their circuit is open), and no fallback answered.",
            )
        raise last

    forward_resilient.__name__ = "forward"
    return forward_resilient


def _respond_error(exchange, err: HelixError, ctx: RequestContext) -> None:
    if ctx.response_headers:
        err.headers = [*err.headers, *ctx.response_headers]
    exchange.respond_error(err, ctx.api.error_body(err))
