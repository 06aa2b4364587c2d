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

from helix._fast import ContextFactory
from helix.errors import ErrorKind, HelixError, release
from helix.observe import timing
from helix.pipeline.context import RequestContext

log = logging.getLogger("helix.server")

Phase = Callable[[RequestContext], object]
Recorder = Callable[[RequestContext], None]

# RequestContext(exchange, api, started), made in C when compiled (access_c ContextFactory).
_new_context = ContextFactory(RequestContext).new


class Pipeline:
    __slots__ = ("_phases", "_recorders", "api", "names")

    def __init__(self, api, phases: list[Phase], recorders: list[Recorder]) -> None:
        self.api = api
        phases = _wrap_forward(phases)
        self._phases = [(p, _awaits(p)) for p in phases]
        self._recorders = list(recorders)
        self.names = [p.__name__ for p in phases]

    async def run(self, exchange) -> None:
        ctx = _new_context(exchange, self.api, time.monotonic())
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
            if ctx.error is not None:
                release(ctx.error)  # its traceback's frames hold ctx: a cycle (issue 14.3)


def _awaits(phase: Phase) -> bool:
    """Whether the runner awaits what ``phase`` returns: a coroutine function, or a plain
    function marked ``returns_awaitable`` (it starts a coroutine and hands it back, one
    frame fewer on every resume of the request)."""
    return inspect.iscoroutinefunction(phase) or getattr(phase, "returns_awaitable", False)


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

    A model with a first-token deadline or hedging (``policy.timing``) runs
    its attempts in two halves (``forward.prepare`` / ``forward.commit``):
    nothing reaches the client until an attempt has its first chunk (a
    stream) or its head (JSON).  An attempt past its deadline is abandoned
    (its connection closed) and counts as a failure with a latency sample of
    the time it was given; it is retried on another deployment, without
    backoff (once even without a ``retries`` section).  A hedge is another
    attempt started on another deployment when the first has nothing after
    ``hedge.after``; the first to produce wins and commits, the others are
    cancelled at once (connections closed; no health verdict; their elapsed
    time raises, never lowers, their latency estimate).
    """
    from helix.routing.health import FAILURE, SUCCESS
    from helix.routing.resilience import (
        FIRST_TOKEN_TIMEOUT,
        backoff,
        classify,
        first_token_error,
        is_context_overflow,
    )

    begin = balancer.begin
    end = balancer.end
    end_lost = balancer.end_lost
    select = balancer.select
    rnd = balancer._rnd
    # A forward without halves (a test's stand-in) runs plain attempts only.
    prepare = getattr(forward, "prepare", None)
    commit = getattr(forward, "commit", None)
    monotonic = time.monotonic

    async def attempt(ctx: RequestContext, dep) -> None:
        start = clock()
        begin(dep)
        try:
            if prepare is None:
                await forward(ctx)
            else:
                # What forward(ctx) does (phases/forward.py; keep the two in step), run
                # here: one coroutine fewer on every resume of the request (the upstream's
                # head and body each resume the whole chain).
                ctx.deployment = dep
                t = monotonic()
                try:
                    p = await prepare(ctx, dep)
                finally:
                    ctx.waited += monotonic() - t
                await commit(ctx, p)
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

        def forward_once(ctx: RequestContext):
            dep = ctx.deployment
            if dep is None:
                dep = ctx.candidates[0]
                ctx.deployment = dep
            return attempt(ctx, dep)

        forward_once.__name__ = "forward"
        forward_once.returns_awaitable = True
        return forward_once

    import asyncio

    max_attempts = policy.max_attempts
    # Each model's chain (itself, then its fallbacks), built once; a request copies it only
    # to insert a context-window fallback.
    chains = {model: (model, *rest) for model, rest in policy.fallbacks.items()}
    context_fallbacks = policy.context_fallbacks
    deadline_s = policy.deadline
    # No first-token deadline or hedge anywhere (the usual config): no lookup per model.
    timed = prepare is not None and (policy.timing_default is not None or any(
        t is not None for t in policy.timings.values()))
    timing_of = policy.timing
    inf = float("inf")

    def ttft_missed(dep) -> None:
        if metrics is not None:
            metrics.add("helix_resilience_first_token_timeouts_total", (dep.provider, dep.model_id))

    async def finish(ctx: RequestContext, dep, p, start: float) -> None:
        """Commit a prepared attempt, with ``attempt``'s bookkeeping."""
        ctx.deployment = dep
        try:
            await commit(ctx, p)
        except HelixError as err:
            event, _, wait = classify(err)
            end(dep, event, clock(), None, wait)
            raise
        except BaseException:
            end(dep, -1, clock())
            raise
        now = clock()
        if ctx.error is not None:
            end(dep, classify(ctx.error)[0], now)
        else:
            end(dep, SUCCESS, now, (p.first_at if p.stream else now) - start)

    async def deadline_attempt(ctx: RequestContext, dep, ttft: float) -> None:
        """One attempt with a first-token deadline and no hedge: no extra task."""
        start = clock()
        begin(dep)
        try:
            async with asyncio.timeout(ttft):
                p = await prepare(ctx, dep)
        except TimeoutError:
            now = clock()
            end(dep, FAILURE, now, now - start)
            ttft_missed(dep)
            raise first_token_error(dep, ttft) from None
        except HelixError as err:
            event, _, wait = classify(err)
            end(dep, event, clock(), None, wait)
            raise
        except BaseException:
            end(dep, -1, clock())
            raise
        finally:
            ctx.waited += clock() - start
        await finish(ctx, dep, p, start)

    class Run:
        __slots__ = ("abandoned", "dep", "due", "start", "task")

    def reaper(r: Run):
        def reap(task) -> None:
            # A raced attempt's task: retrieve its outcome (so none is logged as never
            # retrieved); an answer that arrived after its attempt was abandoned is closed.
            if task.cancelled():
                return
            if task.exception() is None and r.abandoned:
                task.result().close()

        return reap

    async def hedged_attempt(ctx: RequestContext, dep, cands, tried: list, timing, deadline,
                             counted) -> None:
        """Race up to ``1 + timing.hedges`` attempts; commit the first to produce."""
        loop = asyncio.get_running_loop()
        ttft = timing.ttft
        runs: list[Run] = []

        def launch(d, now: float) -> None:
            r = Run()
            r.dep = d
            r.start = now
            r.due = now + ttft if ttft else inf
            r.abandoned = False
            begin(d)
            r.task = task = loop.create_task(prepare(ctx, d))
            task.add_done_callback(reaper(r))
            runs.append(r)

        t0 = clock()
        launch(dep, t0)
        left = timing.hedges
        next_hedge = t0 + timing.after if left > 0 else inf
        last: HelixError | None = None
        won = None
        try:
            while runs:
                now = clock()
                wake = next_hedge
                for r in runs:
                    if r.due < wake:
                        wake = r.due
                if wake > now:
                    await asyncio.wait([r.task for r in runs],
                                       timeout=None if wake == inf else wake - now,
                                       return_when=asyncio.FIRST_COMPLETED)
                    now = clock()
                for r in list(runs):  # finished ones, in launch order
                    task = r.task
                    if not task.done():
                        continue
                    runs.remove(r)
                    exc = task.exception()
                    if exc is None:
                        p = task.result()
                        if won is None:
                            won = (r, p)
                        else:  # done in the same instant as the winner: lost all the same
                            p.close()
                            end_lost(r.dep, now, (p.first_at or p.head_at) - r.start)
                    elif isinstance(exc, HelixError):
                        event, retryable, wait = classify(exc)
                        end(r.dep, event, now, None, wait)
                        tried.append(r.dep)
                        last = release(exc)
                        if not retryable:
                            raise exc
                    else:
                        end(r.dep, -1, now)
                        raise exc
                if won is not None:
                    break
                for r in list(runs):  # past the first-token deadline: abandoned
                    if now >= r.due:
                        runs.remove(r)
                        r.abandoned = True
                        r.task.cancel()
                        end(r.dep, FAILURE, now, now - r.start)
                        tried.append(r.dep)
                        ttft_missed(r.dep)
                        last = first_token_error(r.dep, ttft)
                if runs and now >= next_hedge:
                    if deadline is not None and now >= deadline:
                        left = 0  # resilience.deadline: no attempt starts after it
                    busy = [*tried, *(r.dep for r in runs)]
                    d = select(cands, now, ctx.view, busy, False, ctx.prefix) if left else None
                    if d is None or d in busy:
                        left = 0  # no other deployment to hedge on
                    else:
                        left -= 1
                        counted(d)
                        if metrics is not None:
                            metrics.add("helix_resilience_hedges_total", (d.provider, d.model_id))
                        launch(d, now)
                    next_hedge = now + timing.after if left > 0 else inf
        except BaseException:
            now = clock()
            for r in runs:
                r.abandoned = True
                r.task.cancel()
                end(r.dep, -1, now)
            runs.clear()
            raise
        finally:
            now = clock()
            ctx.waited += now - t0
            for r in runs:  # the losers: cancelled at once (their connections close)
                r.abandoned = True
                r.task.cancel()
                end_lost(r.dep, now, now - r.start)
        if won is None:
            raise last if last is not None else first_token_error(dep, ttft)
        r, p = won
        await finish(ctx, r.dep, p, r.start)

    def hedge_counter(headers: list, slot: int, attempts: list):
        def counted(d) -> None:  # a hedge started: one more attempt
            n = attempts[0] = attempts[0] + 1
            headers[slot] = (_ATTEMPTS, _ATTEMPT_VALUES[n] if n < 64 else str(n).encode())

        return counted

    async def forward_resilient(ctx: RequestContext, resume=None) -> None:
        """The attempt loop.  ``resume``: ``(slot, started, err)`` of a first attempt
        :func:`forward_first` already made on ``ctx.deployment`` (its bookkeeping done,
        its ``x-helix-attempts`` header at ``slot``) that failed with ``err``: the loop
        takes it up as its own first attempt's failure."""
        deadline = ctx.started + deadline_s if deadline_s is not None else None
        model = ctx.view.model
        chain = chains.get(model) or (model,)
        headers = ctx.response_headers
        resumed = None
        if resume is None:
            slot = len(headers)
            headers.append((_ATTEMPTS, b"0"))
        else:
            slot, first_started, resumed = resume
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
            timing = timing_of(name) if timed else None
            tried: list = []
            overflow = False
            limit = max_attempts
            quick = False  # the last failure was a first-token timeout: no backoff
            n = 0
            while n < limit:
                if n > 0 and not quick:
                    delay = backoff(n, policy.backoff, policy.initial_delay, policy.max_delay,
                                    rnd())
                    if deadline is not None and clock() + delay >= deadline:
                        break
                    if delay > 0:
                        await asyncio.sleep(delay)
                        ctx.waited += delay
                if deadline is not None and clock() >= deadline:
                    break
                if dep is None:
                    dep = select(cands, clock(), ctx.view, tried, not more, ctx.prefix)
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
                    if resumed is not None:  # forward_first's attempt: its failure, here
                        started = first_started
                        err, resumed = resumed, None
                        raise err
                    if timing is None:
                        # attempt(ctx, dep) inline (keep the two in step): one coroutine
                        # fewer on every resume of the request, ≈ 1,800 instructions.
                        begin(dep)
                        try:
                            if prepare is None:
                                await forward(ctx)
                            else:
                                t = monotonic()
                                try:
                                    p = await prepare(ctx, dep)
                                finally:
                                    ctx.waited += monotonic() - t
                                await commit(ctx, p)
                        except HelixError as err:
                            event, _, wait = classify(err)
                            end(dep, event, clock(), None, wait)
                            raise
                        except BaseException:
                            end(dep, -1, clock())
                            raise
                        now = clock()
                        if ctx.error is not None:
                            end(dep, classify(ctx.error)[0], now)
                        elif ctx.first_chunk_at:
                            end(dep, SUCCESS, now, ctx.first_chunk_at - started)
                        else:
                            end(dep, SUCCESS, now, now - started)
                    elif timing.hedges and len(cands) > 1:
                        count = [attempts]
                        try:
                            await hedged_attempt(ctx, dep, cands, tried, timing, deadline,
                                                 hedge_counter(headers, slot, count))
                        finally:
                            attempts = count[0]
                    elif timing.ttft:
                        await deadline_attempt(ctx, dep, timing.ttft)
                    else:
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
                            chain = [*chain[:ci + 1], target, *chain[ci + 1:]]
                        overflow = True
                        break
                    if not classify(err)[1]:
                        raise
                    quick = err.code == FIRST_TOKEN_TIMEOUT
                    if quick and not policy.retries and limit == max_attempts:
                        limit = n + 2  # without a retries section: one retry elsewhere
                    if dep not in tried:
                        tried.append(dep)
                    dep = None
                n += 1
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

    if timed or deadline_s is not None or prepare is None:
        forward_resilient.__name__ = "forward"
        return forward_resilient

    one = (_ATTEMPTS, _ATTEMPT_VALUES[1])

    async def forward_first(ctx: RequestContext) -> None:
        """The usual request under a ``resilience`` section without a deadline or
        first-token timing: its first attempt, on the deployment route chose, with
        ``attempt``'s bookkeeping and none of the loop's set-up (chain, backoff, deadline:
        ≈ 120 bytecodes a request; keep its bookkeeping in step with ``attempt`` and the
        loop's inline copy).  A failure is handed to :func:`forward_resilient`, which
        decides as for any attempt's (retry, fallback, or raise)."""
        dep = ctx.deployment
        if dep is None:  # nothing available on route: the loop picks (or falls back)
            return await forward_resilient(ctx)
        headers = ctx.response_headers
        slot = len(headers)
        headers.append(one)
        failed = None
        started = clock()
        begin(dep)
        try:
            t = monotonic()
            try:
                p = await prepare(ctx, dep)
            finally:
                ctx.waited += monotonic() - t
            await commit(ctx, p)
        except HelixError as err:
            event, _, wait = classify(err)
            end(dep, event, clock(), None, wait)
            failed = release(err)  # its traceback holds this frame: a cycle otherwise
        except BaseException:
            end(dep, -1, clock())
            raise
        if failed is not None:  # out of the except block: no exception context to chain
            await forward_resilient(ctx, (slot, started, failed))
            return
        now = clock()
        if ctx.error is not None:
            end(dep, classify(ctx.error)[0], now)
        elif ctx.first_chunk_at:
            end(dep, SUCCESS, now, ctx.first_chunk_at - started)
        else:
            end(dep, SUCCESS, now, now - started)

    forward_first.__name__ = "forward"
    return forward_first


def _respond_error(exchange, err: HelixError, ctx: RequestContext) -> None:
    if ctx.response_headers:
        err.headers = [*err.headers, *ctx.response_headers]
    if timing.ON:
        err.headers = [*err.headers, timing.header(ctx)]
    exchange.respond_error(err, ctx.api.error_body(err))
