"""``helix try``: send a test request through a running Helix (or load it at a steady rate).

    helix try [--url http://127.0.0.1:8080] [--model M] [--stream] [-m TEXT]
    helix try --run-forever --rate N [--duration S] [--concurrency C]

One request: print the status, the routing headers (``x-helix-*``, ``x-request-id``)
and the answer (streamed token by token with ``--stream``).  ``--run-forever``:
open-loop load at ``--rate`` requests per second over keep-alive connections, one
line of counts and latencies per second, a summary on Ctrl-C / SIGTERM (or after
``--duration``).  Exit status: 0 when every request got a 2xx, 1 otherwise, 2 on a
usage error.

Only the standard library, uvloop and httptools: the OpenAI SDK is not a runtime
dependency of Helix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import httptools
import orjson

DEFAULT_URL = "http://127.0.0.1:8080"
ROUTING_HEADERS = ("x-request-id",)


class HTTPError(Exception):
    pass


class _Response:
    """httptools callbacks for one response; ``on_chunk`` sees the body as it arrives."""

    def __init__(self, on_chunk=None, on_head=None) -> None:
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.done = False
        self.head_done = False
        self.on_chunk = on_chunk
        self.on_head = on_head
        self.parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head_done = True
        if self.on_head is not None and self.parser is not None:
            self.on_head(self.parser.get_status_code(), self.headers)

    def on_body(self, body: bytes) -> None:
        if self.on_chunk is not None:
            self.on_chunk(body)
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class Target:
    """Where requests go: scheme, host, port, and the API path prefix."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url must be an http(s) URL, got {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        prefix = parts.path.rstrip("/")
        self.prefix = prefix if prefix.endswith("/v1") else f"{prefix}/v1"
        default_port = self.port == (443 if self.tls else 80)
        self.authority = self.host if default_port else f"{self.host}:{self.port}"

    async def connect(self, timeout: float) -> _Conn:
        ctx = ssl.create_default_context() if self.tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=ctx), timeout
        )
        return _Conn(reader, writer)


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reusable = True

    def close(self) -> None:
        self.reusable = False
        with contextlib.suppress(Exception):
            self.writer.close()

    async def request(self, target: Target, path: str, body: bytes, headers: dict[str, str],
                      on_chunk=None, on_head=None) -> tuple[int, _Response]:
        """POST ``body``; ``on_head(status, headers)`` runs before the first body chunk."""
        head = [f"POST {target.prefix}{path} HTTP/1.1", f"host: {target.authority}",
                "content-type: application/json", f"content-length: {len(body)}",
                "user-agent: helix-try"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        resp = _Response(on_chunk, on_head)
        parser = resp.parser = httptools.HttpResponseParser(resp)
        while not resp.done:
            data = await self.reader.read(65536)
            if not data:
                if resp.head_done:  # a close-delimited body ends here
                    self.reusable = False
                    return parser.get_status_code(), resp
                raise HTTPError("connection closed before the response completed")
            parser.feed_data(data)
        self.reusable = parser.should_keep_alive()
        return parser.get_status_code(), resp


def chat_body(model: str, message: str, stream: bool) -> bytes:
    doc: dict = {"model": model, "messages": [{"role": "user", "content": message}]}
    if stream:
        doc["stream"] = True
        doc["stream_options"] = {"include_usage": True}
    return orjson.dumps(doc)


def routing_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.startswith("x-helix-") or k in ROUTING_HEADERS]


def error_text(body: bytes) -> str:
    try:
        err = orjson.loads(body)["error"]
        return f"{err.get('type')}: {err.get('message')}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body.decode("utf-8", "replace")[:500]


class SSEPrinter:
    """Print each ``choices[0].delta.content`` of an SSE stream as it arrives."""

    def __init__(self, out) -> None:
        self.out = out
        self.buf = b""
        self.usage: dict | None = None
        self.error: str | None = None
        self.events = 0
        self.raw: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.raw.append(data)
        self.buf += data.replace(b"\r\n", b"\n")
        while b"\n\n" in self.buf:
            event, self.buf = self.buf.split(b"\n\n", 1)
            self._event(event)

    def _event(self, event: bytes) -> None:
        kind = b"message"
        data = []
        for line in event.split(b"\n"):
            if line.startswith(b"event:"):
                kind = line[6:].strip()
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        payload = b"\n".join(data)
        if not payload or payload == b"[DONE]":
            return
        self.events += 1
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if kind == b"error" or "error" in doc:
            err = doc.get("error", doc)
            self.error = f"{err.get('type')}: {err.get('message')}"
            return
        if doc.get("usage"):
            self.usage = doc["usage"]
        for choice in doc.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                self.out.write(text)
                self.out.flush()


async def try_once(args, out=sys.stdout) -> int:
    target = Target(args.url)
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    body = chat_body(args.model, args.message, args.stream)
    started = time.perf_counter()
    printer = SSEPrinter(out) if args.stream else None
    status_seen = [0]

    def on_head(status: int, resp_headers: list[tuple[str, str]]) -> None:
        status_seen[0] = status
        _print_head(out, status, resp_headers, started)

    def on_chunk(data: bytes) -> None:
        if 200 <= status_seen[0] < 300:
            printer.feed(data)
        else:
            printer.raw.append(data)

    conn = await target.connect(args.timeout)
    try:
        status, resp = await asyncio.wait_for(
            conn.request(target, "/chat/completions", body, headers,
                         on_chunk=on_chunk if printer is not None else None, on_head=on_head),
            args.timeout,
        )
    finally:
        conn.close()
    if printer is None:
        raw = b"".join(resp.chunks)
        if not 200 <= status < 300:
            out.write(f"error: {error_text(raw)}\n")
            return 1
        doc = orjson.loads(raw)
        for choice in doc.get("choices") or ():
            msg = choice.get("message") or {}
            if msg.get("content"):
                out.write(msg["content"] + "\n")
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") or {}
                out.write(f"[tool call] {fn.get('name')}({fn.get('arguments')})\n")
        if doc.get("usage"):
            out.write(f"usage: {_usage_text(doc['usage'])}\n")
        return 0
    if not 200 <= status < 300:
        out.write(f"error: {error_text(b''.join(printer.raw))}\n")
        return 1
    out.write("\n")
    if printer.usage:
        out.write(f"usage: {_usage_text(printer.usage)}\n")
    out.write(f"({printer.events} events, {(time.perf_counter() - started) * 1000:.1f} ms)\n")
    if printer.error:
        out.write(f"stream error: {printer.error}\n")
        return 1
    return 0


def _print_head(out, status: int, headers: list[tuple[str, str]], started: float) -> None:
    out.write(f"HTTP {status} ({(time.perf_counter() - started) * 1000:.1f} ms to head)\n")
    for k, v in routing_headers(headers):
        out.write(f"{k}: {v}\n")
    out.write("\n")
    out.flush()


def _usage_text(usage: dict) -> str:
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return ", ".join(f"{k}={usage[k]}" for k in keys if k in usage)


# --- load mode ----------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


class LoadStats:
    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.errors = 0
        self.skipped = 0  # not sent: --concurrency requests already in flight
        self.statuses: Counter[str] = Counter()
        self.providers: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.window: list[float] = []

    def line(self, elapsed: float, inflight: int) -> str:
        w = sorted(self.window)
        self.window = []
        return (f"t={elapsed:5.1f}s sent={self.sent} ok={self.ok} err={self.errors} "
                f"skipped={self.skipped} inflight={inflight} "
                f"p50={percentile(w, 0.5) * 1000:.1f}ms p99={percentile(w, 0.99) * 1000:.1f}ms")

    def summary(self, elapsed: float) -> str:
        lat = sorted(self.latencies)
        rate = self.sent / elapsed if elapsed > 0 else 0.0
        parts = [
            f"summary: {self.sent} sent in {elapsed:.1f}s ({rate:.1f}/s), {self.ok} ok, "
            f"{self.errors} errors, {self.skipped} skipped",
            f"latency: p50={percentile(lat, 0.5) * 1000:.1f}ms "
            f"p90={percentile(lat, 0.9) * 1000:.1f}ms p99={percentile(lat, 0.99) * 1000:.1f}ms "
            f"max={(lat[-1] if lat else 0.0) * 1000:.1f}ms",
            "statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(self.statuses.items())),
        ]
        if self.providers:
            parts.append("routed to: " + ", ".join(
                f"{k}={v}" for k, v in self.providers.most_common()))
        return "\n".join(parts) + "\n"


async def run_load(args, out=sys.stdout) -> int:
    target = Target(args.url)
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    body = chat_body(args.model, args.message, args.stream)
    stats = LoadStats()
    idle: list[_Conn] = []
    inflight: set[asyncio.Task] = set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError):  # not the main thread: Ctrl-C stops it
            loop.add_signal_handler(sig, stop.set)

    async def one() -> None:
        started = time.perf_counter()
        conn = idle.pop() if idle else None
        try:
            if conn is None:
                conn = await target.connect(args.timeout)
            status, resp = await asyncio.wait_for(
                conn.request(target, "/chat/completions", body, headers,
                             on_chunk=(lambda _d: None) if args.stream else None),
                args.timeout,
            )
        except (TimeoutError, OSError, HTTPError, httptools.HttpParserError) as exc:
            if conn is not None:
                conn.close()
            stats.errors += 1
            stats.statuses[type(exc).__name__] += 1
            return
        took = time.perf_counter() - started
        stats.latencies.append(took)
        stats.window.append(took)
        stats.statuses[str(status)] += 1
        if 200 <= status < 300:
            stats.ok += 1
        else:
            stats.errors += 1
        for k, v in resp.headers:
            if k == "x-helix-provider":
                stats.providers[v] += 1
        if conn.reusable and not stop.is_set():
            idle.append(conn)
        else:
            conn.close()

    interval = 1.0 / args.rate
    start = time.perf_counter()
    next_send = start
    next_report = start + 1.0
    out.write(f"load: {args.rate:g} req/s to {target.authority}{target.prefix}/chat/completions "
              f"(model {args.model}{', stream' if args.stream else ''}); Ctrl-C to stop\n")
    out.flush()
    while not stop.is_set():
        now = time.perf_counter()
        if args.duration and now - start >= args.duration:
            break
        if now >= next_report:
            out.write(stats.line(now - start, len(inflight)) + "\n")
            out.flush()
            next_report += 1.0
        while next_send <= now:
            next_send += interval
            if len(inflight) >= args.concurrency:
                stats.skipped += 1
                continue
            stats.sent += 1
            task = asyncio.ensure_future(one())
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        wake = min(next_send, next_report) - time.perf_counter()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), max(wake, 0.0005))
    if inflight:
        await asyncio.wait(set(inflight), timeout=args.timeout)
    for task in list(inflight):
        task.cancel()
    for conn in idle:
        conn.close()
    out.write(stats.summary(time.perf_counter() - start))
    out.flush()
    return 0 if stats.errors == 0 and stats.sent > 0 else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="helix try",
        description="Send a test chat request through a running Helix and print the answer "
        "and the routing headers; --run-forever loads it at a steady rate.",
    )
    p.add_argument("--url", default=os.environ.get("HELIX_URL", DEFAULT_URL),
                   help=f"Helix base URL (default $HELIX_URL, else {DEFAULT_URL})")
    p.add_argument("--model", default="gpt-4o-mini", help="model to ask for (default %(default)s)")
    p.add_argument("--message", "-m", default="Hello from helix try!", help="the user message")
    p.add_argument("--stream", action="store_true", help="ask for an SSE stream")
    p.add_argument("--api-key", default=os.environ.get("HELIX_API_KEY"),
                   help="sent as 'Authorization: Bearer ...' (default $HELIX_API_KEY)")
    p.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    p.add_argument("--run-forever", action="store_true",
                   help="load mode: send --rate requests per second until Ctrl-C")
    p.add_argument("--rate", type=float, default=10.0, help="load mode: requests per second")
    p.add_argument("--concurrency", type=int, default=256,
                   help="load mode: most requests in flight (more are counted as skipped)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="load mode: stop after this many seconds (default 0 = until Ctrl-C)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.concurrency < 1 or args.timeout <= 0 or args.duration < 0:
        parser.error("--rate and --timeout must be > 0, --concurrency >= 1, --duration >= 0")
    try:
        Target(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        return runner(run_load(args) if args.run_forever else try_once(args))
    except (TimeoutError, OSError, HTTPError, httptools.HttpParserError) as exc:
        msg = str(exc) or type(exc).__name__
        print(f"helix try: {args.url}: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
