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
and queues it; the lines of one event-loop tick are written to stderr
together.  The text line keeps the shape of the log format
(``<time> INFO [pid] helix.access: ...``); the JSON line is one object per
request.  Only names, statuses, timings, counts and the request id are
written: never headers, keys or bodies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from itertools import count

import msgspec

_encode = msgspec.json.Encoder().encode
_RID = b"x-request-id"
_SAFE = frozenset(range(0x21, 0x7F))


class RequestIds:
    """Per-worker request id source."""

    __slots__ = ("_next", "prefix")

    def __init__(self) -> None:
        self.prefix = f"{random.getrandbits(32):08x}-"
        self._next = count(1).__next__

    def new(self) -> str:
        return f"{self.prefix}{self._next():x}"

    def pick(self, headers: dict[str, str]) -> str:
        rid = headers.get("x-request-id")
        if rid and len(rid) <= 128 and all(ord(c) in _SAFE for c in rid):
            return rid
        return self.new()


def make_request_id_phase(ids: RequestIds):
    """First phase: pick the request id, keep it in ``ctx.request_id``, return it."""
    pick = ids.pick

    def request_id(ctx) -> None:
        rid = pick(ctx.exchange.request.headers)
        ctx.request_id = rid
        ctx.response_headers.append((_RID, rid.encode("ascii")))

    return request_id


class LineWriter:
    """Lines queued during one loop tick, written to stderr together (or at once off-loop)."""

    __slots__ = ("_lines", "_scheduled", "stream")

    def __init__(self, stream=None) -> None:
        self.stream = stream
        self._lines: list[str] = []
        self._scheduled = False

    def write(self, line: str) -> None:
        self._lines.append(line)
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        lines = self._lines
        if not lines:
            return
        self._lines = []
        stream = self.stream or sys.stderr
        try:
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass


_second = -1
_stamp = ""


def _asctime(now: float) -> str:
    """logging.Formatter's default time format, the date part cached per second."""
    global _second, _stamp
    sec = int(now)
    if sec != _second:
        _second = sec
        _stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec))
    return f"{_stamp},{int((now - sec) * 1000):03d}"


_iso_second = -1
_iso_stamp = ""


def _iso(now: float) -> str:
    """UTC ISO-8601 with milliseconds, the date part cached per second."""
    global _iso_second, _iso_stamp
    sec = int(now)
    if sec != _iso_second:
        _iso_second = sec
        _iso_stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_iso_stamp}.{int((now - sec) * 1000):03d}Z"


def make_access_recorder(fmt: str, writer: LineWriter | None = None):
    """The access-log recorder for ``format`` ``text`` or ``json``."""
    writer = writer or LineWriter()
    write = writer.write
    pid = os.getpid()
    monotonic = time.monotonic
    wall = time.time

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

    else:

        def log_access(ctx) -> None:
            rid, req, dep, ms, ttft = fields(ctx)
            usage = ctx.usage
            tokens = f"{usage.input}/{usage.output}" if usage is not None else "-"
            cost = ctx.cost
            write(
                f"{_asctime(wall())} INFO    [{pid}] helix.access: "
                f"{req.client[0] if req.client else '-'} \"{req.method} {req.path}\" "
                f"{ctx.status} {ms:.1f}ms "
                f"model={dep.model_id if dep else '-'} provider={dep.provider if dep else '-'} "
                f"tokens={tokens} cost={f'{cost:.8f}' if cost is not None else '-'} "
                f"ttft={f'{ttft:.1f}ms' if ttft is not None else '-'} "
                f"cache={ctx.cache or '-'} attempts={ctx.attempts} rid={rid or '-'}"
            )

    log_access.writer = writer
    return log_access


def access_enabled(config) -> bool:
    lc = config.observability.logging
    return bool(lc.access_log) and logging.getLogger("helix.access").isEnabledFor(logging.INFO)
