"""Small uvloop + httptools HTTP/1.1 load generator for the Helix benchmarks.

Modes (each prints one JSON object on stdout):

* ``openloop``: fixed-rate open-loop load. Requests are scheduled on a fixed timetable over a
  pool of keep-alive connections; latency is measured from the *scheduled* start, so a slow
  target cannot hide queueing (no coordinated omission). Failures count as infinite latency.
* ``ttfb``: c=1 streaming requests, each read to its end; time from sending the request to
  the first body byte.
* ``streams``: N concurrent streaming requests on N connections; verifies every stream
  completes with the exact content, every chunk, finish_reason "stop" and ``[DONE]``.

Usage: ``python bench/loadgen.py openloop --host 127.0.0.1 --port 8080 --rate 1000 --duration 10``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from typing import TYPE_CHECKING, Any

import httptools
import orjson
import uvloop

if TYPE_CHECKING:
    import socket

PATH = "/v1/chat/completions"


def build_request(host: str, port: int, body: bytes, auth: str) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Response:
    __slots__ = ("body", "done", "first", "first_body", "gaps", "last_body", "status")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.status = 0
        self.body: list[bytes] = []
        self.first_body = 0.0
        self.last_body = 0.0
        self.gaps = 0.0
        self.done: asyncio.Future[Response] = loop.create_future()
        self.first: asyncio.Future[None] | None = None


class ClientConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, keep_body: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.resp: Response | None = None
        self.keep_body = keep_body
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        r = self.resp
        if r is not None and not r.done.done():
            r.done.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            r = self.resp
            if r is not None and not r.done.done():
                r.done.set_exception(ConnectionError(f"bad response: {exc}"))
            self.close()

    def on_headers_complete(self) -> None:
        if self.resp is not None:
            self.resp.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        r = self.resp
        if r is None:
            return
        now = time.monotonic()
        if not r.first_body:
            r.first_body = now
            if r.first is not None and not r.first.done():
                r.first.set_result(None)
        elif now - r.last_body > r.gaps:
            r.gaps = now - r.last_body
        r.last_body = now
        if self.keep_body:
            r.body.append(body)

    def on_message_complete(self) -> None:
        r = self.resp
        self.resp = None
        if r is not None and not r.done.done():
            r.done.set_result(r)
        if not self.parser.should_keep_alive():
            self.close()

    def send(self, data: bytes) -> Response:
        assert self.transport is not None and self.resp is None
        self.resp = Response(asyncio.get_running_loop())
        self.transport.write(data)
        return self.resp

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int, keep_body: bool = False) -> ClientConn:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: ClientConn(keep_body), host, port)
    return proto


def read_answer(sock: socket.socket) -> bytes:
    """One whole content-length answer read from a blocking socket (the scripts that send
    one request at a time: idlegap.py, coldset.py); the caller checks its status."""
    buf = b""
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        buf += data
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            continue
        head = buf[:i].lower()
        j = head.find(b"content-length:")
        if j < 0:
            raise ValueError("no content-length in the answer")
        length = int(head[j + 15 :].split(b"\r\n")[0])
        if len(buf) >= i + 4 + length:
            return buf


def percentile(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return math.nan
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def chat_body(model: str, text: str, stream: bool) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


# -- open loop -------------------------------------------------------------------------------


async def openloop(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    req = build_request(args.host, args.port, chat_body(args.model, "hello", False), args.auth)
    idle: list[ClientConn] = []
    waiters: list[asyncio.Future[ClientConn]] = []
    opened = 0

    async def acquire() -> ClientConn:
        nonlocal opened
        while idle:
            c = idle.pop()
            if not c.closed:
                return c
        if opened < args.conns:
            opened += 1
            try:
                return await connect(args.host, args.port)
            except OSError:
                opened -= 1
                raise
        fut: asyncio.Future[ClientConn] = loop.create_future()
        waiters.append(fut)
        return await fut

    def release(c: ClientConn) -> None:
        nonlocal opened
        if c.closed:
            opened -= 1
            return
        while waiters:
            w = waiters.pop(0)
            if not w.done():
                w.set_result(c)
                return
        idle.append(c)

    for _ in range(min(args.conns, args.preconnect)):
        idle.append(await connect(args.host, args.port))
        opened += 1

    results: list[float] = []
    errors: dict[str, int] = {}

    async def one(sched: float, record: bool) -> None:
        c = None
        ok = False
        try:
            c = await acquire()
            r = await asyncio.wait_for(c.send(req).done, timeout=args.timeout)
            lat = time.monotonic() - sched
            if r.status != 200:
                raise ValueError(f"status {r.status}")
            ok = True
            if record:
                results.append(lat)
        except Exception as exc:
            if record:
                key = type(exc).__name__ if not isinstance(exc, ValueError) else str(exc)
                errors[key] = errors.get(key, 0) + 1
                results.append(math.inf)
        finally:
            if c is not None:
                if not ok:
                    c.close()
                release(c)

    async def run_phase(rate: float, duration: float, record: bool) -> tuple[int, float]:
        total = int(rate * duration)
        tasks = set()
        start = time.monotonic() + 0.05
        for i in range(total):
            sched = start + i / rate
            delay = sched - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t = loop.create_task(one(sched, record))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        end_sched = time.monotonic()
        if tasks:
            _, pending = await asyncio.wait(set(tasks), timeout=args.timeout + 1)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        return total, end_sched - start

    await run_phase(args.rate, args.warmup, record=False)
    results.clear()
    errors.clear()
    total, sched_span = await run_phase(args.rate, args.duration, record=True)
    if len(results) < total:
        errors["unfinished"] = total - len(results)
        results.extend([math.inf] * (total - len(results)))
    results.sort()
    ok = [x for x in results if math.isfinite(x)]
    for c in idle:
        c.close()
    ms = 1000.0
    return {
        "mode": "openloop",
        "rate": args.rate,
        "duration": args.duration,
        "scheduled": len(results),
        "ok": len(ok),
        "errors": errors,
        "schedule_span_s": sched_span,
        "achieved_rps": len(ok) / args.duration if args.duration else 0.0,
        "conns_used": opened,
        "p50_ms": percentile(results, 50) * ms,
        "p90_ms": percentile(results, 90) * ms,
        "p99_ms": percentile(results, 99) * ms,
        "max_ms": (results[-1] if results else math.nan) * ms,
    }


# -- streams ---------------------------------------------------------------------------------


def check_stream(raw: bytes, expected: str, chunks: int) -> str | None:
    """None if the SSE body is a complete, exact stream; else a short reason."""
    events = raw.split(b"\n\n")
    if events[-1].strip():
        return "trailing partial event"
    datas = [e for e in events if e.strip()]
    if not datas or datas[-1].strip() != b"data: [DONE]":
        return "no [DONE]"
    content = []
    n_content = 0
    finish = None
    for ev in datas[:-1]:
        line = ev.strip()
        if not line.startswith(b"data:"):
            continue
        obj = orjson.loads(line[5:])
        for ch in obj.get("choices") or []:
            piece = (ch.get("delta") or {}).get("content")
            if piece:
                content.append(piece)
                n_content += 1
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
    text = "".join(content)
    if text != expected:
        return "content mismatch"
    if chunks and n_content != chunks:
        return f"chunks {n_content} != {chunks}"
    if finish != "stop":
        return f"finish_reason {finish}"
    return None


async def ttfb(args: argparse.Namespace) -> dict[str, Any]:
    text = "time to first byte"
    req = build_request(args.host, args.port, chat_body(args.model, text, True), args.auth)
    vals = []
    errors: dict[str, int] = {}
    for i in range(args.n + 2):
        c = await connect(args.host, args.port, keep_body=False)
        try:
            t0 = time.monotonic()
            r = c.send(req)
            r.first = asyncio.get_running_loop().create_future()
            await asyncio.wait(
                [r.first, r.done], timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if r.done.done() and r.done.exception() is not None:
                raise r.done.exception()  # type: ignore[misc]
            if not r.first_body:
                raise TimeoutError("no first byte")
            if r.status != 200:
                raise ValueError(f"status {r.status}")
            if i >= 2:  # first two are warmup
                vals.append((r.first_body - t0) * 1000.0)
            # Read the stream to its end, as a real client does: hanging up
            # early makes a proxy abort its upstream request (correctly: that
            # stops the generation), and the next request would then measure
            # a fresh upstream connect instead of the proxy's relay.
            await asyncio.wait([r.done], timeout=args.timeout)
        except Exception as exc:
            key = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
            errors[key] = errors.get(key, 0) + 1
        finally:
            c.close()
            if r.done.done():
                r.done.exception()
            else:
                r.done.cancel()
        await asyncio.sleep(0.01)
    vals.sort()
    return {
        "mode": "ttfb",
        "n": len(vals),
        "errors": errors,
        "median_ms": percentile(vals, 50),
        "p90_ms": percentile(vals, 90),
        "max_ms": vals[-1] if vals else math.nan,
    }


async def streams(args: argparse.Namespace) -> dict[str, Any]:
    conns: list[ClientConn] = []
    errors: dict[str, int] = {}
    sem = asyncio.Semaphore(64)

    async def open_one() -> None:
        async with sem:
            try:
                conns.append(await connect(args.host, args.port, keep_body=True))
            except OSError as exc:
                errors[f"connect {type(exc).__name__}"] = (
                    errors.get(f"connect {type(exc).__name__}", 0) + 1
                )

    await asyncio.gather(*(open_one() for _ in range(args.n)))
    reqs = []
    expected = []
    for i in range(len(conns)):
        text = f"stream number {i} of the concurrency test"
        expected.append("mock reply to: " + text[:40])
        reqs.append(
            build_request(args.host, args.port, chat_body(args.model, text, True), args.auth)
        )
    t0 = time.monotonic()
    resps = [c.send(r) for c, r in zip(conns, reqs, strict=True)]
    futs = [r.done for r in resps]
    _, pending = await asyncio.wait(futs, timeout=args.timeout)
    duration = time.monotonic() - t0
    complete = 0
    stalled = len(pending)
    max_gap = 0.0
    last_done = 0.0
    for resp, exp, fut in zip(resps, expected, futs, strict=True):
        if fut in pending:
            fut.cancel()
            continue
        exc = fut.exception()
        if exc is not None:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        if resp.status != 200:
            errors[f"status {resp.status}"] = errors.get(f"status {resp.status}", 0) + 1
            continue
        why = check_stream(b"".join(resp.body), exp, args.chunks)
        if why is not None:
            errors[why] = errors.get(why, 0) + 1
            continue
        complete += 1
        max_gap = max(max_gap, resp.gaps)
        last_done = max(last_done, resp.last_body)
    for c in conns:
        c.close()
    return {
        "mode": "streams",
        "n": args.n,
        "connected": len(conns),
        "complete": complete,
        "stalled": stalled,
        "errors": errors,
        "duration_s": (last_done - t0) if last_done else duration,
        "max_chunk_gap_ms": max_gap * 1000.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=("openloop", "ttfb", "streams"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", default="gpt-4o-mini")
    p.add_argument("--auth", default="sk-bench")
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--conns", type=int, default=256, help="max pool size (openloop)")
    p.add_argument("--preconnect", type=int, default=16)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("-n", type=int, default=20, help="requests (ttfb) or streams (streams)")
    p.add_argument("--chunks", type=int, default=0, help="expected content chunks per stream")
    args = p.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        p.error("benchmarks only target loopback")
    fn = {"openloop": openloop, "ttfb": ttfb, "streams": streams}[args.mode]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        out = runner.run(fn(args))
    # JSON has no infinity; "inf" marks latencies of failed/unfinished requests.
    out = {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in out.items()}
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
