"""Micro-benchmark of the observability request-path cost (not collected by pytest).

    python -m tests.observe.bench_recorder

Prints microseconds per request for each piece Helix adds to a request when
it is on (a feature that is off adds nothing: it is absent from the
pipeline), and for the same metric families recorded with prometheus-client
in multiprocess mode, the alternative the shared-memory design was measured
against.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import time

from helix.observe.access import (
    LineWriter,
    RequestIds,
    make_access_recorder,
    make_request_id_phase,
)
from helix.observe.helicone import make_helicone_recorder
from helix.observe.metrics import DURATION_BOUNDS, TOKEN_BOUNDS, TTFT_BOUNDS, Metrics
from helix.observe.tracing import make_span_recorder, make_trace_phase
from helix.pipeline.context import RequestContext
from tests.observe.kit import FakeExchange, fake_dep, make_shm, obs_config, worker

N = 100_000


def real_ctx(stream: bool) -> RequestContext:
    now = time.monotonic()
    ex = FakeExchange({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                       "content-type": "application/json", "authorization": "Bearer x",
                       "user-agent": "OpenAI/Python 1.0", "host": "h", "accept": "*/*"})
    ctx = RequestContext(ex, "chat", now - 0.25)

    class View:
        model = "gpt-4o-mini"

    ctx.view = View()
    ctx.view.stream = stream
    ctx.deployment = fake_dep()
    ctx.status = 200
    ctx.usage = {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}
    ctx.cost = 0.0000123
    ctx.upstream_started = now - 0.2
    ctx.head_at = now - 0.1
    ctx.attempts = 1
    if stream:
        ctx.first_chunk_at = now - 0.05
    else:
        ctx.response_body = (b'{"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,'
                             b'"finish_reason":"stop","message":{"content":"hi"}}]}')
    return ctx


def per_call(fn, ctx, n: int = N) -> float:
    for _ in range(1000):
        fn(ctx)
    t = time.perf_counter()
    for _ in range(n):
        fn(ctx)
    return (time.perf_counter() - t) / n * 1e6


async def in_loop(fmt: str, ctx) -> float:
    """Inside a loop, as in a worker: the lines of one tick are written together."""
    out = io.StringIO()
    writer = LineWriter(out)
    record = make_access_recorder(fmt, writer)
    us = per_call(record, ctx)
    await asyncio.sleep(0)
    assert out.getvalue().count("\n") == N + 1000
    return us


class Sink:
    def offer(self, item, size=0):
        return True


def prometheus_multiprocess(ctx) -> float:
    """The same families through prometheus-client's multiprocess mode."""
    d = tempfile.mkdtemp(prefix="helix-prom-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
    import prometheus_client as pc

    lbl = ("endpoint", "model", "provider")
    reqs = pc.Counter("b_requests", "r", (*lbl, "status"))
    cost = pc.Counter("b_cost", "c", lbl)
    dur = pc.Histogram("b_dur", "d", lbl, buckets=DURATION_BOUNDS)
    up = pc.Histogram("b_up", "u", lbl, buckets=DURATION_BOUNDS)
    ttft = pc.Histogram("b_ttft", "t", lbl, buckets=TTFT_BOUNDS)
    tok = pc.Histogram("b_tok", "k", (*lbl, "token_type"), buckets=TOKEN_BOUNDS)
    monotonic = time.monotonic

    def record(ctx):
        now = monotonic()
        dep = ctx.deployment
        labels = (ctx.endpoint, dep.model_id, dep.provider)
        reqs.labels(*labels, str(ctx.status)).inc()
        dur.labels(*labels).observe(now - ctx.started)
        up.labels(*labels).observe(now - ctx.upstream_started)
        if ctx.first_chunk_at:
            ttft.labels(*labels).observe(ctx.first_chunk_at - ctx.started)
        tok.labels(*labels, "input").observe(ctx.usage["prompt_tokens"])
        tok.labels(*labels, "output").observe(ctx.usage["completion_tokens"])
        cost.labels(*labels).inc(ctx.cost)

    try:
        return per_call(record, ctx, N // 4)
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    cfg = obs_config(metrics={"enabled": True})
    metrics = Metrics.attach(worker(make_shm(cfg), 0), cfg)
    rows = []
    for stream in (False, True):
        ctx = real_ctx(stream)
        kind = "stream" if stream else "json"
        rows.append((f"metrics recorder, shared memory ({kind})",
                     per_call(metrics.recorder(), ctx)))
        rows.append((f"request id phase ({kind})",
                     per_call(make_request_id_phase(RequestIds()),
                              ctx) if not stream else None))
        trace_phase = make_trace_phase(1.0)
        rows.append((f"trace_context phase ({kind})", per_call(trace_phase, ctx)))
        trace_phase(ctx)
        rows.append((f"span recorder, sampled ({kind})",
                     per_call(make_span_recorder(Sink()), ctx)))
        if not stream:
            unsampled = real_ctx(stream)
            unsampled.exchange.request.headers = {}
            make_trace_phase(0.0)(unsampled)
            rows.append((f"span recorder, not sampled ({kind})",
                         per_call(make_span_recorder(Sink()), unsampled)))
        rows.append((f"helicone recorder ({kind})",
                     per_call(make_helicone_recorder(Sink(), {"env": "x"}, True), ctx)))
        for fmt in ("text", "json"):
            rows.append((f"access line, {fmt} ({kind})", asyncio.run(in_loop(fmt, ctx))))
    rows.append(("prometheus-client multiprocess, same families (stream)",
                 prometheus_multiprocess(real_ctx(True))))
    for name, us in rows:
        if us is not None:
            print(f"{name:60s} {us:7.2f} us")


if __name__ == "__main__":
    main()
