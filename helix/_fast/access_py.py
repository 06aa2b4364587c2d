"""Per-request text: the pure-Python twin of access_c.pyx.  The text access line, the
``server-timing`` header's value (:mod:`helix.observe.timing`) and the
``x-helix-cost-usd`` header's value.

``helix/observe/access.py`` says which fields the line has and why; this is how the
text one is built (``observability.logging.access_log``, ``format: text``)::

    2026-12-06 05:13:36,582 INFO    [3735] helix.access: 127.0.0.1 "POST /v1/chat/completions"
    200 3.0ms model=gpt-4o-mini provider=m tokens=1/4 cost=0.00000255 ttft=- cache=-
    attempts=1 rid=f91452bd-1
"""

from __future__ import annotations

__all__ = ["cost_value", "text_line", "timing_value"]


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
