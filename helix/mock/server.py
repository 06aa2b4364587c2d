"""A fast standalone mock LLM provider: uvloop + a small httptools HTTP/1.1 protocol.

Used by Helix's integration tests and as the upstream in benchmarks. Independent of
``helix.server`` on purpose. Provider wire formats live in route modules (see ``base``).

Run: ``python -m helix.mock --port 0`` prints ``mock listening on http://HOST:PORT``.

Per-request controls (headers; CLI flags give the defaults):

* ``x-mock-latency-ms``: delay before the response head
* ``x-mock-chunks``: content (or tool-argument) deltas per stream
* ``x-mock-chunk-interval-ms``: spacing between stream chunks
* ``x-mock-status``: answer with this error status (provider-shaped body; 429 adds retry-after,
  value from ``x-mock-retry-after``, default 1)
* ``x-mock-fail``: ``reset`` (RST before answering), ``hang`` (never answer), ``close`` (FIN,
  no response), ``reset-mid-stream`` (send about half the stream / body, then RST)
* ``x-mock-slow-p`` / ``x-mock-slow-ms``, ``--prompt-cache N``: tail latency and prompt
  caching (``knobs.py``); a request record gets ``completed`` or ``closed_early``

Test helpers: ``GET /_mock/requests`` (recorded requests as JSON), ``DELETE /_mock/requests``,
``GET /_mock/health``. With ``--workers N`` each process records its own requests, so tests
that read the recording should use one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import signal
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from types import ModuleType
from typing import Any

import httptools
import orjson
import uvloop

from . import knobs, openai_routes
from .base import BadRequest, Controls, MockRequest, Reply, StreamReply


def _route_modules() -> list[ModuleType]:
    """openai_routes plus every other provider wire format that exists in this tree."""
    import importlib
    import importlib.util

    mods = [openai_routes]
    for name in ("responses_routes", "anthropic_routes", "gemini_routes", "bedrock_routes",
                 "cohere_routes"):
        if importlib.util.find_spec(f"helix.mock.{name}") is not None:
            mods.append(importlib.import_module(f"helix.mock.{name}"))
    return mods


PROVIDERS: list[ModuleType] = _route_modules()
FAIL_MODES = ("reset", "hang", "reset-mid-stream", "close")


@dataclass
class MockConfig:
    host: str = "127.0.0.1"
    port: int = 0
    controls: Controls = field(default_factory=Controls)
    require_key: str | None = None
    record: bool = True
    fail_rate: float = 0.0
    fail_status: int = 0
    fail_mode: str = ""
    workers: int = 1
    seed: int | None = None
    slow_p: float = 0.0  # knobs.slow_sometimes
    slow_ms: float = 0.0
    prompt_cache: int = 0  # knobs.PromptCache capacity (0: off)


class Router:
    """Maps (method, path) to (provider module, handler) across all provider route modules."""

    def __init__(self, providers: list[ModuleType]) -> None:
        self.exact: dict[tuple[str, str], tuple[ModuleType, Any]] = {}
        self.prefix: list[tuple[str, str, ModuleType, Any]] = []
        self.paths: set[str] = set()
        for mod in providers:
            for (method, path), handler in mod.ROUTES.items():
                self.exact[(method, path)] = (mod, handler)
                self.paths.add(path)
            for method, prefix, handler in getattr(mod, "PREFIX_ROUTES", ()):
                self.prefix.append((method, prefix, mod, handler))
        self.default = providers[0]

    def lookup(self, method: str, path: str) -> tuple[ModuleType, Any] | bool | None:
        """(provider, handler); False when the path exists with another method; None if unknown."""
        hit = self.exact.get((method, path))
        if hit is not None:
            return hit
        for m, prefix, mod, handler in self.prefix:
            if m == method and path.startswith(prefix) and len(path) > len(prefix):
                return mod, handler
        if path in self.paths:
            return False
        return None


class MockState:
    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.router = Router(PROVIDERS)
        self.recorded: list[dict[str, Any]] = []
        self.rng = random.Random(config.seed)
        self.connections: set[MockProtocol] = set()
        self.prompt_cache = knobs.PromptCache(config.prompt_cache) if config.prompt_cache else None
        self.accepted = 0  # connections ever accepted (a proxy's connection churn shows here)


_date_cache = [0, b""]


def _http_date() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]  # type: ignore[return-value]


_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def _head(
    status: int,
    content_type: str,
    length: int | None,
    keep_alive: bool,
    extra: list[tuple[str, str]],
) -> bytes:
    parts = [
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
        b"content-type: " + content_type.encode() + b"\r\n",
        b"date: " + _http_date() + b"\r\n",
        b"server: helix-mock\r\n",
    ]
    if length is None:
        parts.append(b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n")
    else:
        parts.append(b"content-length: %d\r\n" % length)
    for name, value in extra:
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _controls(defaults: Controls, headers: dict[str, str]) -> Controls:
    ctl = Controls(
        defaults.latency_ms,
        defaults.chunks,
        defaults.chunk_interval_ms,
        defaults.status,
        defaults.fail,
        defaults.retry_after,
    )
    v = headers.get("x-mock-latency-ms")
    if v is not None:
        ctl.latency_ms = float(v)
    v = headers.get("x-mock-chunks")
    if v is not None:
        ctl.chunks = max(1, int(v))
    v = headers.get("x-mock-chunk-interval-ms")
    if v is not None:
        ctl.chunk_interval_ms = float(v)
    v = headers.get("x-mock-status")
    if v is not None:
        ctl.status = int(v)
    v = headers.get("x-mock-fail")
    if v is not None:
        ctl.fail = v.strip().lower()
    v = headers.get("x-mock-retry-after")
    if v is not None:
        ctl.retry_after = v
    return ctl


class _Pending:
    __slots__ = ("keep_alive", "req")

    def __init__(self, req: MockRequest, keep_alive: bool) -> None:
        self.req = req
        self.keep_alive = keep_alive


class MockProtocol(asyncio.Protocol):
    def __init__(self, state: MockState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.busy = False
        self.dead = False
        self.queue: deque[_Pending] = deque()
        self.task: asyncio.Task[None] | None = None
        self.writable: asyncio.Future[None] | None = None
        self.record: dict[str, Any] | None = None  # the request being answered

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)
        self.state.accepted += 1

    def connection_lost(self, exc: Exception | None) -> None:
        knobs.note_closed(self.record)
        self.dead = True
        self.transport = None
        self.state.connections.discard(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        if self.writable is None or self.writable.done():
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._write_reply(openai_routes.error_reply(400, "upgrade not supported"), False)
        except httptools.HttpParserError as exc:
            self._write_reply(openai_routes.error_reply(400, f"bad HTTP request: {exc}"), False)

    # -- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        prev = self.headers.get(key)
        self.headers[key] = val if prev is None else f"{prev}, {val}"

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url = self.url.decode("latin-1")
        path, _, query = url.partition("?")
        raw = b"".join(self.body)
        parsed = None
        if raw:
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
        req = MockRequest(self.parser.get_method().decode(), path, query, self.headers, raw, parsed)
        pending = _Pending(req, self.parser.should_keep_alive())
        if self.busy:
            self.queue.append(pending)
        else:
            self._dispatch(pending)

    # -- request handling --------------------------------------------------------------
    def _dispatch(self, pending: _Pending) -> None:
        if self.dead:
            return
        state = self.state
        req = pending.req
        keep_alive = pending.keep_alive
        if req.path.startswith("/_mock/"):
            self._write_reply(self._internal(req), keep_alive)
            return
        self.record = None
        if state.config.record:
            self.record = {
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "headers": dict(req.headers),
                "body": req.json,
                "body_text": None
                if req.json is not None
                else req.body.decode("utf-8", "replace"),
                # the exact bytes, for pass-through tests that compare them
                "body_b64": base64.b64encode(req.body).decode(),
                "time": time.time(),
            }
            state.recorded.append(self.record)
        cfg = state.config
        try:
            ctl = _controls(state.config.controls, req.headers)
            knobs.slow_sometimes(ctl, req.headers, (cfg.slow_p, cfg.slow_ms), state.rng.random)
        except ValueError as exc:
            self._write_reply(
                openai_routes.error_reply(400, f"bad x-mock header: {exc}"), keep_alive
            )
            return
        if cfg.fail_rate > 0 and state.rng.random() < cfg.fail_rate:
            if cfg.fail_mode and not ctl.fail:
                ctl.fail = cfg.fail_mode
            elif cfg.fail_status and ctl.status < 400:
                ctl.status = cfg.fail_status
        reply = self._build(req, ctl)
        if state.prompt_cache is not None:
            reply = state.prompt_cache.apply(req, reply)
        if ctl.latency_ms <= 0 and not ctl.fail and isinstance(reply, Reply):
            self._write_reply(reply, keep_alive)
            knobs.note_completed(self.record)
            return
        self.busy = True
        self.task = asyncio.get_running_loop().create_task(self._slow(reply, ctl, keep_alive))

    def _build(self, req: MockRequest, ctl: Controls) -> Reply | StreamReply:
        state = self.state
        hit = state.router.lookup(req.method, req.path)
        provider = hit[0] if isinstance(hit, tuple) else state.router.default
        if state.config.require_key is not None and not provider.check_auth(
            req, state.config.require_key
        ):
            return provider.error_reply(
                401, "Incorrect API key provided (mock requires a specific key)."
            )
        if ctl.status >= 400:
            reply = provider.error_reply(ctl.status)
            if ctl.status == 429:
                reply.headers.append(("retry-after", ctl.retry_after))
            return reply
        if hit is None:
            return provider.error_reply(
                404, f"Invalid URL ({req.method} {req.path})", "unknown_url"
            )
        if hit is False:
            return provider.error_reply(405, f"Method {req.method} not allowed for {req.path}")
        try:
            return hit[1](req, ctl)
        except BadRequest as exc:
            return provider.error_reply(exc.status, exc.message, param=exc.param)
        except Exception as exc:
            return provider.error_reply(500, f"mock handler error: {exc!r}")

    def _internal(self, req: MockRequest) -> Reply:
        state = self.state
        if req.path == "/_mock/requests":
            if req.method == "GET":
                return Reply(200, orjson.dumps(state.recorded))
            if req.method == "DELETE":
                n = len(state.recorded)
                state.recorded.clear()
                return Reply(200, orjson.dumps({"cleared": n}))
            return openai_routes.error_reply(405, "use GET or DELETE")
        if req.path == "/_mock/health":
            return Reply(200, orjson.dumps({"ok": True, "accepted": state.accepted,
                                            "open": len(state.connections)}))
        return openai_routes.error_reply(404, f"unknown mock path {req.path}")

    def _write_reply(self, reply: Reply, keep_alive: bool) -> None:
        t = self.transport
        if t is None:
            return
        head = _head(reply.status, reply.content_type, len(reply.body), keep_alive, reply.headers)
        t.write(head + reply.body)
        if not keep_alive:
            self.dead = True
            t.close()

    async def _slow(self, reply: Reply | StreamReply, ctl: Controls, keep_alive: bool) -> None:
        try:
            if ctl.latency_ms > 0:
                await asyncio.sleep(ctl.latency_ms / 1000.0)
            if self.transport is None:
                return
            fail = ctl.fail
            if fail == "hang":
                self.dead = True
                return
            if fail == "close":
                self.dead = True
                self.transport.close()
                return
            if fail == "reset":
                self._reset()
                return
            if isinstance(reply, Reply):
                if fail == "reset-mid-stream":
                    # Send the head and half the body, then RST.
                    head = _head(
                        reply.status, reply.content_type, len(reply.body), True, reply.headers
                    )
                    self.transport.write(head + reply.body[: len(reply.body) // 2])
                    await self._reset_after_flush()
                    return
                self._write_reply(reply, keep_alive)
                knobs.note_completed(self.record)
            elif await self._stream(reply, ctl, keep_alive):
                knobs.note_completed(self.record)
        except asyncio.CancelledError:
            return
        finally:
            self.busy = False
            self.task = None
        while self.queue and not self.busy and not self.dead:
            self._dispatch(self.queue.popleft())

    async def _stream(self, reply: StreamReply, ctl: Controls, keep_alive: bool) -> bool:
        """Send a streamed reply; True when all of it was written."""
        t = self.transport
        assert t is not None
        head = _head(reply.status, reply.content_type, None, keep_alive, reply.headers)
        events = reply.events
        cut = len(events)
        if ctl.fail == "reset-mid-stream":
            cut = max(1, len(events) // 2)
        frames = [b"%x\r\n%s\r\n" % (len(ev), ev) for ev in events[:cut]]
        interval = ctl.chunk_interval_ms / 1000.0
        if interval <= 0:
            t.write(head + b"".join(frames) + (b"0\r\n\r\n" if cut == len(events) else b""))
        else:
            # The last frame goes out in one write with the terminator (when the stream
            # ends), as real servers flush their final event and end together: two writes
            # would let a reader see them in one read or two, depending on timing.
            if cut == len(events):
                frames[-1] += b"0\r\n\r\n"
            t.write(head + frames[0])
            for frame in frames[1:]:
                await asyncio.sleep(interval)
                if self.transport is None:
                    return False
                if self.writable is not None and not self.writable.done():
                    await self.writable
                if self.transport is None:
                    return False
                t.write(frame)
        if cut < len(events):
            await self._reset_after_flush()
            return False
        if not keep_alive:
            self.dead = True
            t.close()
        return True

    async def _reset_after_flush(self) -> None:
        # Let already-written bytes reach the peer before the RST discards anything unsent.
        for _ in range(100):
            t = self.transport
            if t is None or t.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        self._reset()

    def _reset(self) -> None:
        t = self.transport
        self.dead = True
        if t is None:
            return
        sock = t.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.abort()


async def serve(config: MockConfig, sock: socket.socket) -> None:
    """Serve on an already-bound, listening socket until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    state = MockState(config)
    server = await loop.create_server(lambda: MockProtocol(state), sock=sock, backlog=4096)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(RuntimeError, ValueError):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    try:
        await stop
    finally:
        server.close()
        for conn in list(state.connections):
            if conn.transport is not None:
                conn.transport.abort()


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def run_worker(config: MockConfig, sock: socket.socket) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config, sock))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="helix mock", description="Mock OpenAI-compatible LLM provider for tests/benchmarks."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000, help="0 picks a free port (printed)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay before the response head")
    p.add_argument("--chunks", type=int, default=5, help="content deltas per stream")
    p.add_argument("--chunk-interval-ms", type=float, default=0.0, help="spacing between chunks")
    p.add_argument("--require-key", default=None, help="require 'Authorization: Bearer KEY'")
    p.add_argument("--no-record", action="store_true", help="do not record requests")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the socket")
    p.add_argument(
        "--status",
        type=int,
        default=0,
        help="inject this error status (on --fail-rate of requests)",
    )
    p.add_argument(
        "--fail-mode", choices=FAIL_MODES, default="", help="inject this connection failure instead"
    )
    p.add_argument(
        "--fail-rate",
        type=float,
        default=None,
        help="fraction of requests that get the injected fault (default 1.0 with --status or "
        "--fail-mode; with neither, faults are status 500)",
    )
    p.add_argument("--retry-after", default="1", help="retry-after header value on 429")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for --fail-rate and --slow-p sampling")
    p.add_argument("--slow-p", type=float, default=0.0,
                   help="fraction of requests that wait --slow-ms before the head")
    p.add_argument("--slow-ms", type=float, default=0.0, help="see --slow-p")
    p.add_argument("--prompt-cache", type=int, default=0, metavar="N",
                   help="report cached prompt tokens for the last N prefixes seen (0: off)")
    return p


def config_from_args(args: argparse.Namespace) -> MockConfig:
    fail_rate = args.fail_rate
    status = args.status
    if fail_rate is None:
        fail_rate = 1.0 if (status or args.fail_mode) else 0.0
    elif not status and not args.fail_mode:
        status = 500
    return MockConfig(
        host=args.host,
        port=args.port,
        controls=Controls(
            latency_ms=args.latency_ms,
            chunks=max(1, args.chunks),
            chunk_interval_ms=args.chunk_interval_ms,
            retry_after=args.retry_after,
        ),
        require_key=args.require_key,
        record=not args.no_record,
        fail_rate=fail_rate,
        fail_status=status,
        fail_mode=args.fail_mode,
        workers=max(1, args.workers),
        seed=args.seed,
        slow_p=args.slow_p,
        slow_ms=args.slow_ms,
        prompt_cache=max(0, args.prompt_cache),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    sock = bind_socket(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    sys.stdout.write(f"mock listening on http://{shown}:{port}\n")
    sys.stdout.flush()
    if config.workers == 1:
        run_worker(config, sock)
        return 0
    children: list[int] = []
    for _ in range(config.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run_worker(config, sock)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        while True:
            try:
                _, st = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                st = 0
                break
        if os.waitstatus_to_exitcode(st) not in (0, -signal.SIGTERM):
            status = 1
    return status
