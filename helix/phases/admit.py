"""admit: rate limits and budgets at admission, and the recorder that settles them.

:class:`Gate` is built once per worker when ``rate_limits`` is configured
(else absent).  Per request, ``admit`` (after ``decode``: the estimate needs
the view):

1. collects the checks of the request's scopes -- ``global``; ``per_team``
   (the key's team, else the ``Helicone-Team-Id`` header); ``per_user`` (the
   key's user, else ``Helicone-User-Id``); ``per_key`` (the key's own
   ``limits``, else ``per_key``).  A key's user/team wins over the header, so
   a key bound to a user cannot spend another user's allowance.  A request
   without a user (team) is not subject to ``per_user`` (``per_team``).
2. estimates what it may use when token or dollar limits apply: the view's
   own estimate (``tokens()``: prompt bytes / 4 and the completion limit the
   client set, else ``rate_limits.default_max_tokens``); dollars from the
   model registry's prices for the requested model (a model without prices
   costs 0).
3. asks the store (one atomic decision over every check: requests by GCRA,
   tokens and dollars reserved), adds ``x-ratelimit-*`` headers to whatever
   response is sent, and answers 429 (``Retry-After``) when refused -- or, with
   ``rate_limits.queue``, first waits in the refusing scope's queue, in priority
   order (``Helix-Priority``, a key's ``priority``), up to ``max_wait``
   (``helix/limit/queue.py``).

The ``settle`` recorder replaces the reservation by the real usage
(``ctx.usage`` / ``ctx.cost``, from the body or the end of the stream).  A
request that failed before any answer releases it; an answer whose usage is
unknown (a stream cut short, a provider without usage) keeps the estimate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from helix.errors import ErrorKind, HelixError
from helix.limit.policy import (
    COST,
    REQUESTS,
    RESET_MS,
    SCOPE_NAMES,
    TOKENS,
    Check,
    Result,
    compile_limits,
    rate_headers,
    refusal,
    reset_bytes,
)
from helix.pipeline.context import RequestContext

__all__ = ["Gate", "build"]

log = logging.getLogger("helix.limit")
_MAX_CACHED_SCOPES = 65536


class Gate:
    def __init__(self, config, worker, models, keys=None, metrics=None, store=None) -> None:
        rl = config.rate_limits
        self.config = rl
        self.models = models
        self.metrics = metrics
        self.default_max_tokens = rl.default_max_tokens
        self.global_ = compile_limits(rl.global_)
        self.per_user = compile_limits(rl.per_user)
        self.per_team = compile_limits(rl.per_team)
        self.per_key = compile_limits(rl.per_key)
        every = [self.global_, self.per_user, self.per_team, self.per_key]
        every += [k.limits for k in (keys.keys if keys else []) if k.limits]
        kinds = {check_kind(u) for spec in every for u, _ in spec}
        self.estimating = TOKENS in kinds or COST in kinds
        self.pricing = COST in kinds
        self._scopes: dict[str, list[Check]] = {}
        self._global = [Check("g", u, lim) for u, lim in self.global_]
        self._tasks: set[asyncio.Task] = set()
        self.fail_closed = rl.failure_policy == "fail_closed"
        if store is not None:
            self.store = store
        elif rl.backend == "redis":
            from helix.limit.redis import RedisStore

            self.store = RedisStore(rl.redis_url, rl.redis_timeout)
        else:
            self.store = _local_store(worker, rl)
        self.is_async = rl.backend == "redis" if store is None else hasattr(store, "client")
        self.admit = self._admit_async if self.is_async else self._admit_sync
        self.queue = rl.queue
        if self.queue is not None:
            if hasattr(self.store, "depth"):
                self.store.depth = self.queue.max_depth
            if not self.is_async and getattr(self.store, "queue", None) is None:
                log.warning("rate limits: the queue table was not planned at start; "
                            "rate_limits.queue takes effect on restart")
            else:
                self.admit = self._admit_queued
        lone = self._lone_request_limit(keys)
        if lone is not None:
            self.admit = lone.admit
        if metrics is not None and hasattr(self.store, "on_error"):
            self.store.on_error = lambda: metrics.add("helix_ratelimit_backend_errors_total", ())

    def _lone_request_limit(self, keys):
        """The one-call admission (``helix._fast.gate``) when every request meets exactly one
        request limit, the global one, on the local table without a queue; else None."""
        from helix.limit.local import LocalStore

        if (len(self._global) != 1 or self._global[0].kind != REQUESTS or self.per_user
                or self.per_team or self.per_key or self.queue is not None
                or any(k.limits for k in (keys.keys if keys else []))
                or type(self.store) is not LocalStore):
            return None
        from helix._fast import LoneLimit

        check = self._global[0]

        def refused(ctx, remaining, reset, retry) -> None:
            if self.metrics is not None:
                self.metrics.rate_limited(SCOPE_NAMES[check.scope[0]])
            raise refusal(check, Result(False, 0, retry, [remaining], [reset], [0]), 1)

        return LoneLimit(self.store, check, refused, reset_bytes, RESET_MS)

    def state(self) -> dict:
        """For GET /status: the backend and, for Redis, whether it answers (this worker's view)."""
        out = {"state": "enabled", "backend": self.config.backend,
               "failure_policy": self.config.failure_policy}
        if self.queue is not None:
            out["queue"] = {"max_wait_s": float(self.queue.max_wait),
                            "max_depth": self.queue.max_depth}
        if hasattr(self.store, "errors"):
            out["redis_reachable"] = not getattr(self.store, "_down", False)
            out["redis_errors_this_worker"] = self.store.errors
        return out

    # -- the request's checks and estimate -----------------------------------------

    def _scope(self, scope: str, limits) -> list[Check]:
        checks = self._scopes.get(scope)
        if checks is None:
            if len(self._scopes) >= _MAX_CACHED_SCOPES:
                self._scopes.clear()
            checks = self._scopes[scope] = [Check(scope, u, lim) for u, lim in limits]
        return checks

    def checks(self, ctx: RequestContext) -> list[Check]:
        key = ctx.principal
        headers = ctx.exchange.request.headers
        checks = list(self._global)
        if self.per_team:
            team = (key.team if key is not None else None) or headers.get("helicone-team-id")
            if team:
                checks += self._scope("t:" + team, self.per_team)
        if self.per_user:
            user = (key.user if key is not None else None) or headers.get("helicone-user-id")
            if user:
                checks += self._scope("u:" + user, self.per_user)
        if key is not None:
            limits = key.limits if key.limits is not None else self.per_key
            if limits:
                checks += self._scope("k:" + key.name, limits)
        return checks

    def estimate(self, ctx: RequestContext) -> tuple[int, int, int]:
        """(1 request, tokens, nano-USD) this request may use."""
        view = ctx.view
        prompt, completion = view.tokens()
        if completion is None:
            completion = self.default_max_tokens
        nano = 0
        if self.pricing:
            info = self.models.lookup(view.model)
            if info is not None and info.input_per_mtok is not None:
                usd_mtok = prompt * info.input_per_mtok + completion * (info.output_per_mtok or 0)
                nano = math.ceil(usd_mtok * 1000)  # USD/Mtok * tokens -> nano-USD
        return (1, prompt + completion, nano)

    # -- admission -------------------------------------------------------------------

    def _decided(self, ctx, checks, amounts, result) -> None:
        headers = rate_headers(checks, result)
        if headers:
            ctx.response_headers.extend(headers)
        if not result.allowed:
            check = checks[result.failed]
            if self.metrics is not None:
                self.metrics.rate_limited(SCOPE_NAMES[check.scope[0]])
            raise refusal(check, result, amounts[check.kind])
        if self.estimating and any(c.kind != REQUESTS for c in checks):
            ctx.limits = (checks, result.windows, amounts)

    def _admit_sync(self, ctx: RequestContext) -> None:
        checks = self.checks(ctx)
        if not checks:
            return
        amounts = self.estimate(ctx) if self.estimating else (1, 0, 0)
        self._decided(ctx, checks, amounts, self.store.admit(checks, amounts))

    async def _admit_async(self, ctx: RequestContext) -> None:
        from helix.limit.redis import RedisDown

        checks = self.checks(ctx)
        if not checks:
            return
        amounts = self.estimate(ctx) if self.estimating else (1, 0, 0)
        try:
            result = await self.store.admit(checks, amounts)
        except RedisDown:
            if self.fail_closed:
                raise HelixError(
                    ErrorKind.UNAVAILABLE,
                    "Rate limits cannot be checked right now (the limits store is unreachable) "
                    "and this gateway is configured to refuse requests then (fail_closed).",
                    code="rate_limiter_unavailable",
                    headers=[(b"retry-after", b"1")],
                ) from None
            return  # fail_open: served without limits, no reservation to settle
        self._decided(ctx, checks, amounts, result)

    async def _admit_queued(self, ctx: RequestContext) -> None:
        """``admit`` with ``rate_limits.queue``: a refused request waits for its turn."""
        from helix.limit import queue as q

        checks = self.checks(ctx)
        if not checks:
            return
        prio = q.priority_of(ctx, ctx.exchange.request.headers.get("helix-priority"))
        amounts = self.estimate(ctx) if self.estimating else (1, 0, 0)
        clock = time.monotonic
        start = clock()
        ticket = q.Ticket(prio, q.user_of(ctx), float(self.queue.max_wait), start)
        store = self.store
        sync = not self.is_async
        try:
            result = store.admit(checks, amounts, ticket) if sync else \
                await store.admit(checks, amounts, ticket)
            if not result.allowed:
                if self._waitable(checks, amounts, result):
                    if self.metrics is not None:
                        self.metrics.add("helix_ratelimit_queued_requests_total",
                                         (q.NAMES[prio],))
                    try:
                        result = await q.wait_turn(store, ticket, checks, amounts, result,
                                                   clock, sync)
                    finally:
                        ctx.queued = clock() - start
                elif ticket.placed:
                    store.queue_leave(ticket) if sync else await store.queue_leave(ticket)
        except Exception as exc:
            from helix.limit.redis import RedisDown

            if not isinstance(exc, RedisDown):
                raise
            if self.fail_closed:
                raise self._unavailable() from None
            return
        self._decided(ctx, checks, amounts, result)

    def _waitable(self, checks, amounts, result) -> bool:
        """Whether waiting can help: the refused amount fits its limit at all, and the
        limit frees up within ``max_wait``."""
        if result.full:
            return False
        check = checks[result.failed]
        if check.kind != REQUESTS and amounts[check.kind] > check.limit:
            return False
        return result.retry_after <= float(self.queue.max_wait)

    def _unavailable(self) -> HelixError:
        return HelixError(
            ErrorKind.UNAVAILABLE,
            "Rate limits cannot be checked right now (the limits store is unreachable) "
            "and this gateway is configured to refuse requests then (fail_closed).",
            code="rate_limiter_unavailable",
            headers=[(b"retry-after", b"1")],
        )

    _admit_sync.__name__ = _admit_async.__name__ = _admit_queued.__name__ = "admit"

    # -- settlement (a recorder: never raises) ---------------------------------------

    def actual(self, ctx: RequestContext, estimate: tuple[int, int, int]) -> tuple[int, int, int]:
        usage = ctx.usage
        if usage is not None:
            tokens = usage.tokens
            cost = ctx.cost
            nano = math.ceil(cost * 1e9) if cost is not None else estimate[COST]
            return (1, tokens, nano)
        if ctx.deployment is not None and (
            ctx.committed or (ctx.error is None and 0 < ctx.status < 400)
        ):
            return estimate  # answered, usage unknown: keep the estimate
        return (1, 0, 0)  # nothing was served: release

    def settle(self, ctx: RequestContext) -> None:
        pending = ctx.limits
        if pending is None:
            return
        ctx.limits = None
        checks, windows, estimate = pending
        actual = self.actual(ctx, estimate)
        if actual == estimate:
            return
        if not self.is_async:
            self.store.settle(checks, windows, estimate, actual)
            return
        task = asyncio.get_running_loop().create_task(
            self._settle_async(checks, windows, estimate, actual)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    settle.__name__ = "settle_limits"

    async def _settle_async(self, checks, windows, estimate, actual) -> None:
        from helix.limit.redis import RedisDown

        try:
            await self.store.settle(checks, windows, estimate, actual)
        except RedisDown:
            pass  # counted and logged by the store; the reservation stands until its window ends

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        close = getattr(self.store, "close", None)
        if close is not None:
            await close()


def check_kind(unit: int) -> int:
    from helix.limit.policy import UNITS

    return UNITS[unit][1]


def _local_store(worker, rl):
    from helix.limit import local

    if worker is not None and local.TABLE in worker.shm:
        table = worker.table(local.TABLE)
        if table.rows < rl.local_capacity:
            log.warning(
                "rate limits: the shared table has %d rows (planned at start); "
                "local_capacity %d takes effect on restart", table.rows, rl.local_capacity,
            )
        return local.attach(worker)
    # No master (an App built directly, e.g. in tests): a private table, exact in-process.
    from helix._fast import RowLocks
    from helix.limit import queue as q
    from helix.master.shm import SharedMemory, ShmLayout

    layout = ShmLayout()
    layout.alloc(local.TABLE, rows=rl.local_capacity, cols=local.COLS, dtype="q")
    if rl.queue is not None:
        layout.alloc(q.TABLE, rows=rl.queue.max_depth + 1, cols=q.COLS, dtype="q")
    shm = SharedMemory(layout)
    table = shm.table(local.TABLE)
    import os

    places = None
    if rl.queue is not None:
        qt = shm.table(q.TABLE)
        places = q.LocalQueue(qt, RowLocks(qt.view, os.getpid(), shm._lock))
    return local.LocalStore(table, RowLocks(table.view, os.getpid(), shm._lock),
                            queue=places)


def build(config, worker, models, metrics=None):
    """``(keys, gate)`` for this config: each None when not configured (the phase is absent)."""
    from helix.limit.keys import KeyTable

    keys = KeyTable.from_config(config.auth)
    gate = Gate(config, worker, models, keys, metrics) if config.rate_limits is not None else None
    return keys, gate
