"""One finished request added to its metrics row: the pure-Python twin of hist_c.pyx.

A request row (helix/observe/metrics.py) is flat float64 columns in shared memory: a
request count, a cost sum and five histograms, each ``[sum, bucket_0 .. bucket_n, +Inf]``
(non-cumulative, a value ``x`` lands in the first bucket whose bound is ``>= x``: what
``bisect_left`` gives).  :meth:`RowWriter.observe` adds one request: the duration always,
the upstream duration and time to first token when given, the token counts when the
answer had usage, the cost when priced (``None``: absent).
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["RequestRecorder", "RowWriter"]


class RowWriter:
    """Writes observations into a metrics view (one worker's rows: a single writer)."""

    __slots__ = ("c_cost", "c_dur", "c_in", "c_out", "c_ttft", "c_up", "cols", "dur", "tok",
                 "ttft", "view")

    def __init__(self, view, cols, dur_bounds, ttft_bounds, tok_bounds,
                 c_cost, c_dur, c_up, c_ttft, c_in, c_out) -> None:
        self.view = view
        self.cols = cols
        self.dur = tuple(dur_bounds)
        self.ttft = tuple(ttft_bounds)
        self.tok = tuple(tok_bounds)
        self.c_cost, self.c_dur, self.c_up = c_cost, c_dur, c_up
        self.c_ttft, self.c_in, self.c_out = c_ttft, c_in, c_out

    def observe(self, b, dur, up, ttft, tin, tout, cost) -> None:
        """Add a request to the row starting at flat index ``b`` (column 0: the count)."""
        view = self.view
        if b < 0 or b + self.cols > len(view):
            raise IndexError("metrics row out of range")
        view[b] += 1.0
        self._hist(b + self.c_dur, self.dur, dur)
        if up is not None:
            self._hist(b + self.c_up, self.dur, up)
        if ttft is not None:
            self._hist(b + self.c_ttft, self.ttft, ttft)
        if tin is not None:
            self._hist(b + self.c_in, self.tok, tin)
        if tout is not None:
            self._hist(b + self.c_out, self.tok, tout)
        if cost is not None:
            view[b + self.c_cost] += cost

    def _hist(self, c, bounds, x) -> None:
        """One histogram ``[sum, buckets.., +Inf]`` starting at column ``c``."""
        view = self.view
        view[c] += x
        view[c + 1 + bisect_left(bounds, x)] += 1.0


class RequestRecorder:
    """The metrics request recorder (helix/observe/metrics.py): ``recorder(ctx)`` adds a
    finished request to its row in ``writer`` -- the row of (endpoint, model, provider,
    status) from ``index``, made by ``new_row(key)`` the first time -- with its duration,
    upstream duration, time to first chunk, tokens and cost; then the prompt-cache token
    counters (``prompt_cache(dep, usage)``, not for a cache hit) and the cache lookup
    counter (``cache_result(hit)``) when they apply."""

    __slots__ = ("cache_result", "index", "monotonic", "new_row", "prompt_cache", "writer")
    __name__ = "record_metrics"  # what the runner calls this recorder

    def __init__(self, writer, index, new_row, prompt_cache, cache_result, monotonic) -> None:
        self.writer = writer
        self.index = index
        self.new_row = new_row
        self.prompt_cache = prompt_cache
        self.cache_result = cache_result
        self.monotonic = monotonic

    def __call__(self, ctx) -> None:
        now = self.monotonic()
        dep = ctx.deployment
        if dep is not None:
            key = (ctx.api.name, dep.model_id, dep.provider, ctx.status)
        else:
            key = (ctx.api.name, "", "", ctx.status)
        b = self.index.get(key)
        if b is None:
            b = self.new_row(key)
        started = ctx.started
        up = ctx.upstream_started
        first = ctx.first_chunk_at
        usage = ctx.usage
        self.writer.observe(b, now - started, now - up if up else None,
                            first - started if first else None,
                            usage.input if usage is not None else None,
                            usage.output if usage is not None else None, ctx.cost)
        cache = ctx.cache
        if usage is not None and (usage.cache_read or usage.cache_write) and dep is not None \
                and cache != "hit":
            self.prompt_cache(dep, usage)
        if cache is not None:  # set by the cache phase only when caching applies
            self.cache_result(cache == "hit")
