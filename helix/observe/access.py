"""Request ids and the access log: one line per request, written off the logging module.

``X-Request-Id``: the client's value is kept when it is sane (printable ASCII,
no spaces, at most 128 characters), otherwise Helix makes one: a random
per-worker prefix and a counter (unique across workers and restarts, and far
cheaper than a uuid4).  The ``request_id`` phase (first in the pipeline)
puts it in ``ctx.request_id`` and in ``ctx.response_headers``, which every
response of the pipeline carries (JSON, error or stream); the provider's own
``x-request-id`` reaches the client as ``x-upstream-request-id``.

The access line: ``logging`` costs several microseconds per record (record
object, handler lock, formatter), so the access recorder formats its own line
and buffers it; buffered lines are written to stderr together, at most 50 ms
or 512 lines later (:class:`LineWriter`).  The text line keeps the shape of the log format
(``<time> INFO [pid] helix.access: ...``); the JSON line is one object per
request.  Only names, statuses, timings, counts and the request id are
written: never headers, keys or bodies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import msgspec

from helix._fast import RequestIds
from helix._fast.access_py import clock as _clock

_encode = msgspec.json.Encoder().encode


def make_request_id_phase(ids: RequestIds):
    """First phase: pick the request id, keep it in ``ctx.request_id``, send it back.

    A :class:`RequestIds` is that phase itself (``ids(ctx)``; compiled, one C call a
    request: ``helix/_fast/access_py.py`` is its pure twin)."""
    return ids


class LineWriter:
    """Access lines buffered in memory and written to stderr together.

    One ``write`` per loop tick still cost a system call per request or two under load
    (a tick rarely holds more), ≈ 3 µs each.  Lines are held for at most
    :attr:`delay` seconds (50 ms) or :attr:`limit` lines, whichever comes first, like
    nginx's ``access_log ... buffer= flush=``; :meth:`flush` runs at shutdown, and off
    a running loop every line is written at once.
    """

    __slots__ = ("_timer", "delay", "limit", "lines", "stream")

    def __init__(self, stream=None, delay: float = 0.05, limit: int = 512) -> None:
        self.stream = stream
        self.delay = delay
        self.limit = limit
        # The held lines: one list for the writer's life, and the timer is armed exactly
        # while it holds lines (on a running loop).  The compiled text recorder
        # (helix/_fast AccessLine) relies on both to append a line itself.
        self.lines: list[str] = []
        self._timer = None

    def write(self, line: str) -> None:
        lines = self.lines
        lines.append(line)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.delay, self._due)
        elif len(lines) >= self.limit:
            self.flush()

    def _due(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
        lines = self.lines
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        lines.clear()
        stream = self.stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass


# logging.Formatter's default time format (local time, comma before the milliseconds).
ASCTIME = ("%Y-%m-%d %H:%M:%S,", time.localtime, "")
# UTC ISO-8601 with milliseconds.
_iso = _clock("%Y-%m-%dT%H:%M:%S.", time.gmtime, "Z")


def make_access_recorder(fmt: str, writer: LineWriter | None = None, wall=time.time,
                         monotonic=time.monotonic):
    """The access-log recorder for ``format`` ``text`` or ``json`` (``wall`` and
    ``monotonic`` are the clocks it reads, for tests)."""
    writer = writer or LineWriter()
    write = writer.write
    pid = os.getpid()

    def fields(ctx):
        req = ctx.exchange.request
        dep = ctx.deployment
        now = monotonic()
        ttft = ctx.first_chunk_at
        return (
            ctx.request_id,
            req,
            dep,
            (now - ctx.started) * 1000.0,
            (ttft - ctx.started) * 1000.0 if ttft else None,
        )

    if fmt == "json":

        def log_access(ctx) -> None:
            rid, req, dep, ms, ttft = fields(ctx)
            usage = ctx.usage
            doc = {
                "ts": _iso(wall()),
                "level": "info",
                "logger": "helix.access",
                "pid": pid,
                "msg": "access",
                "request_id": rid,
                "client": req.client[0] if req.client else None,
                "method": req.method,
                "route": req.path,
                "endpoint": ctx.api.name,
                "status": ctx.status,
                "latency_ms": round(ms, 3),
                "ttft_ms": round(ttft, 3) if ttft is not None else None,
                "model": dep.model_id if dep else None,
                "provider": dep.provider if dep else None,
                "prompt_tokens": usage.input if usage else None,
                "completion_tokens": usage.output if usage else None,
                "cost_usd": ctx.cost,
                "cache": ctx.cache,
                "attempts": ctx.attempts,
            }
            if ctx.error is not None:
                doc["error"] = ctx.error.kind.name.lower()
            write(_encode(doc).decode())

        log_access.writer = writer
        return log_access

    # The text line, one C call (helix/_fast/access_py.py AccessLine; compiled twin in
    # access_c.pyx): the recorder, its time stamp and the buffer append.
    from helix._fast import AccessLine

    return AccessLine(f" INFO    [{pid}] helix.access: ", writer, *ASCTIME, wall, monotonic)


def access_enabled(config) -> bool:
    lc = config.observability.logging
    return bool(lc.access_log) and logging.getLogger("helix.access").isEnabledFor(logging.INFO)
