"""Per-request text: the pure-Python twin of access_c.pyx.  The text access line, the
``server-timing`` header's value (:mod:`helix.observe.timing`), the
``x-helix-cost-usd`` header's value and the request id (:class:`RequestIds`, which is
also the ``request_id`` phase).

``helix/observe/access.py`` says which fields the line has and why; this is how the
text one is built (``observability.logging.access_log``, ``format: text``)::

    2026-12-06 05:13:36,582 INFO    [3735] helix.access: 127.0.0.1 "POST /v1/chat/completions"
    200 3.0ms model=gpt-4o-mini provider=m tokens=1/4 cost=0.00000255 ttft=- cache=-
    attempts=1 rid=f91452bd-1
"""

from __future__ import annotations

import random
import time

__all__ = ["AccessLine", "ContextFactory", "RequestIds", "clock", "cost_value", "text_line",
           "timing_value"]

_RID = b"x-request-id"
_SAFE = frozenset(range(0x21, 0x7F))


class RequestIds:
    """Per-worker request ids, and the ``request_id`` phase (``ids(ctx)``): the client's
    ``x-request-id`` when it is sane (printable ASCII, no spaces, at most 128 characters),
    else a new one, kept in ``ctx.request_id`` and sent back in ``ctx.response_headers``.
    A new id is ``prefix`` (random per worker unless given) and a hex counter from 1."""

    __slots__ = ("_n", "prefix")
    __name__ = "request_id"  # what the pipeline calls this phase (Pipeline.names)

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = f"{random.getrandbits(32):08x}-" if prefix is None else prefix
        self._n = 0

    def new(self) -> str:
        self._n += 1
        return f"{self.prefix}{self._n:x}"

    def pick(self, headers: dict[str, str]) -> str:
        rid = headers.get("x-request-id")
        if type(rid) is str and 0 < len(rid) <= 128 and all(ord(c) in _SAFE for c in rid):
            return rid
        return self.new()

    def __call__(self, ctx) -> None:
        rid = self.pick(ctx.exchange.request.headers)
        ctx.request_id = rid
        ctx.response_headers.append((_RID, rid.encode("ascii")))


def text_line(stamp: str, head: str, ctx, now: float) -> str:
    """The line for ``ctx`` finished at ``now`` (monotonic), ``stamp`` its wall time."""
    req = ctx.exchange.request
    started = ctx.started
    ms = (now - started) * 1000.0
    ttft = ctx.first_chunk_at
    usage = ctx.usage
    cost = ctx.cost
    client = req.client
    dep = ctx.deployment
    return (
        f"{stamp}{head}{client[0] if client else '-'} "
        f"\"{req.method} {req.path}\" {ctx.status} {ms:.1f}ms "
        f"model={dep.model_id if dep else '-'} provider={dep.provider if dep else '-'} "
        f"tokens={f'{usage.input}/{usage.output}' if usage is not None else '-'} "
        f"cost={f'{cost:.8f}' if cost is not None else '-'} "
        f"ttft={f'{(ttft - started) * 1000.0:.1f}ms' if ttft else '-'} "
        f"cache={ctx.cache or '-'} attempts={ctx.attempts} rid={ctx.request_id or '-'}"
    )



def clock(fmt: str, tm, suffix: str):
    """A wall-clock text format, the text cached per millisecond (the date part per second):
    ``stamp(now)`` for ``now`` in seconds since the epoch."""
    last = [-1, -1, "", ""]  # ms, second, date text, full text

    def stamp(now: float) -> str:
        ms = int(now * 1000)
        if ms == last[0]:
            return last[3]
        sec, frac = divmod(ms, 1000)
        if sec != last[1]:
            last[1] = sec
            last[2] = time.strftime(fmt, tm(sec))
        last[0] = ms
        last[3] = text = f"{last[2]}{frac:03d}{suffix}"
        return text

    return stamp


class AccessLine:
    """The text access-log recorder (``observability.logging.access_log``, ``format: text``):
    ``recorder(ctx)`` writes :func:`text_line` for ``ctx``, stamped with ``wall()`` in the
    ``fmt`` of ``tm`` (and ``suffix``), to ``writer`` (a ``LineWriter``, or anything with a
    ``write(line)``).  One call a request instead of three Python frames."""

    __slots__ = ("_monotonic", "_stamp", "_wall", "_write", "head", "writer")
    __name__ = "log_access"  # what the runner and the status page call this recorder

    def __init__(self, head: str, writer, fmt: str, tm, suffix: str = "",
                 wall=time.time, monotonic=time.monotonic) -> None:
        self.head = head
        self.writer = writer
        self._write = writer.write
        self._stamp = clock(fmt, tm, suffix)
        self._wall = wall
        self._monotonic = monotonic

    def __call__(self, ctx) -> None:
        self._write(text_line(self._stamp(self._wall()), self.head, ctx, self._monotonic()))


def timing_value(ctx, now: float) -> bytes:
    """The ``server-timing`` value for ``ctx`` as of ``now`` (helix/observe/timing.py says
    what each duration is): milliseconds, three decimals."""
    queued = ctx.queued
    own = now - ctx.started - ctx.waited - queued
    value = b"helix;dur=%.3f" % (own * 1000.0 if own > 0.0 else 0.0)
    if queued:
        value += b", queue;dur=%.3f" % (queued * 1000.0)
    sent = ctx.upstream_started
    if sent and ctx.head_at >= sent:
        value += b", upstream;dur=%.3f" % ((ctx.head_at - sent) * 1000.0)
        first = ctx.first_chunk_at
        if first >= sent:
            value += b", ttft;dur=%.3f" % ((first - sent) * 1000.0)
    return value


def cost_value(usd: float) -> bytes:
    """The ``x-helix-cost-usd`` value: USD, ten decimals."""
    return b"%.10f" % usd


class ContextFactory:
    """A request's context, made: ``ContextFactory(cls).new(exchange, api, started)`` is
    ``cls(exchange, api, started)`` (helix/pipeline/context.py RequestContext).  The compiled
    twin (access_c.pyx) makes the same object without running ``__init__``: it fills the
    slots by offset from a template instance."""

    __slots__ = ("cls", "new")

    def __init__(self, cls) -> None:
        self.cls = cls
        self.new = cls
