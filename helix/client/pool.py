# cython: annotation_typing=False
"""Connection-pooled HTTP/1.1 upstream client.

Design
------
Every decision is taken synchronously on plain data structures, then I/O is
done (httpcore's idea); every structure is O(1) per request (aiohttp's):

* ``_OriginPool.idle`` -- an ``OrderedDict`` used as an ordered set of idle
  connections.  Reuse is **most-recently-used first** (pop from the end):
  the hottest socket is the least likely to have been closed by the
  provider's keep-alive timer, and after a burst the surplus sockets sink to
  the front where the single per-pool sweep timer closes them once they have
  been idle for ``idle_timeout``.  A dead idle socket is removed in O(1) from
  ``connection_lost``.
* ``_OriginPool.active`` -- connections in use *or still connecting*.  A slot
  is taken before the connect starts and is given back on failure or
  cancellation; ``active + len(idle) <= max_connections_per_origin`` always.
* ``_OriginPool.waiters`` -- FIFO ``OrderedDict`` of futures.  A freed slot or
  a reusable connection is handed directly to the oldest waiter, so
  newcomers cannot overtake the queue.

A request on a *reused* connection that dies before any response byte
arrives (the provider closed the idle socket as we wrote) is retried once on
a fresh connection in the same slot.  Nothing else is retried here.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from helix import _fast
from helix.client.resolver import Resolver
from helix.client.tls import client_context
from helix.errors import ErrorKind, HelixError, Retry
from helix.schema.jsonsafe import check_json_object

# The typed build of the upstream connection when it is compiled (helix/_fast/conn_c.pxd);
# its module's open_connection makes connections of its own class.
_connection = _fast.pick_module("conn_c", "helix.client.connection")
DONE = _connection.DONE
Connection = _connection.Connection
connect_error = _connection.connect_error
open_connection = _connection.open_connection
# A request body up to this size is joined to its head (one copy, one write); a larger one
# goes out as a second buffer of the same writelines (Connection.send: no copy).
ONE_WRITE_BODY = 65536
_length_line = _fast.length_line
_crlf = _fast.crlf

__all__ = [
    "Origin",
    "PoolLimits",
    "Timeouts",
    "UpstreamPool",
    "UpstreamResponse",
    "parse_url",
]


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_url(url: str) -> tuple[Origin, str]:
    """``"https://api.x.com/v1/"`` -> ``(Origin("https", "api.x.com", 443), "/v1")``.

    Host names are lower-cased; IPv6 literals are given without brackets
    (``http://[::1]:8080`` -> host ``"::1"``).  The base path has no trailing
    slash (``""`` for the root).
    """
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise HelixError(ErrorKind.INVALID_REQUEST, f"invalid upstream URL: {exc}") from exc
    if scheme not in _DEFAULT_PORTS:
        raise HelixError(ErrorKind.INVALID_REQUEST, "upstream URL must be http:// or https://")
    if not host:
        raise HelixError(ErrorKind.INVALID_REQUEST, "upstream URL has no host")
    if parts.username is not None or parts.password is not None:
        raise HelixError(
            ErrorKind.INVALID_REQUEST, "credentials in upstream URLs are not supported"
        )
    if parts.query or parts.fragment:
        raise HelixError(ErrorKind.INVALID_REQUEST, "upstream base URL must not have a query")
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    return Origin(scheme, host, port), parts.path.rstrip("/")


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0  # TCP + TLS handshake (DNS included)
    first_byte: float = 600.0  # request sent -> response head received
    read: float = 300.0  # max gap between body chunks
    # The whole exchange (pool wait, head, body) when the body is read whole
    # (``read()``), and the head of a streamed one; None = unlimited.
    total: float | None = None
    # Once the body is consumed as a stream (``next_chunk()``), this replaces
    # ``total``, counted from the same start; None = only the ``read`` gap bounds it.
    stream_total: float | None = None


@dataclass(frozen=True, slots=True)
class PoolLimits:
    max_connections_per_origin: int = 256
    max_idle_per_origin: int = 64
    idle_timeout: float = 60.0
    pool_timeout: float = 30.0
    read_high_water: int = 1024 * 1024
    read_low_water: int = 256 * 1024
    # A body read whole (``read()``) larger than this fails (502); streams are not bounded.
    max_response_bytes: int | None = 32 * 1024 * 1024


_DEFAULT_TIMEOUTS = Timeouts()
_DEFAULT_LIMITS = PoolLimits()
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


def _host_header(origin: Origin) -> bytes:
    host = origin.host
    try:
        if ipaddress.ip_address(host.split("%", 1)[0]).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    if origin.port != _DEFAULT_PORTS.get(origin.scheme):
        host = f"{host}:{origin.port}"
    return host.encode("idna") if not host.isascii() else host.encode("ascii")


def _label(origin: Origin) -> str:
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    return f"{host}:{origin.port}"


class _OriginPool:
    __slots__ = (
        "active",
        "conns",
        "host_line",
        "idle",
        "label",
        "origin",
        "ssl",
        "verify",
        "waiters",
    )

    def __init__(self, origin: Origin, verify: bool, ssl_context) -> None:
        self.origin = origin
        self.verify = verify
        self.ssl = ssl_context
        self.label = _label(origin)
        self.host_line = b"host: " + _host_header(origin) + b"\r\n"
        self.active = 0
        self.idle: collections.OrderedDict[Connection, None] = collections.OrderedDict()
        self.waiters: collections.OrderedDict[asyncio.Future, None] = collections.OrderedDict()
        self.conns: set[Connection] = set()


class HeaderBlock(list):
    """A header list that never changes (a deployment's static headers): serialized once,
    on first use, instead of on every request."""

    __slots__ = ("_block",)

    def serialized(self) -> tuple[bytes, int, bool, bool, bool]:
        """(header lines, line count, has a Host header, keep-alive, free of stray CR/LF)."""
        block = getattr(self, "_block", None)
        if block is None:
            lines, n, has_host, keep_alive = _serialize(self)
            clean = lines.count(b"\n") == n and lines.count(b"\r") == n
            block = self._block = (lines, n, has_host, keep_alive, clean)
        return block


def _serialize(headers) -> tuple[bytes, int, bool, bool]:
    parts: list[bytes] = []
    lines = 0
    has_host = False
    keep_alive = True
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-length" or lname == b"transfer-encoding":
            continue  # we frame the body ourselves
        if lname == b"host":
            has_host = True
        elif lname == b"connection" and b"close" in value.lower():
            keep_alive = False
        parts += (name, b": ", value, b"\r\n")
        lines += 1
    return b"".join(parts), lines, has_host, keep_alive


def _build_head(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    host_line: bytes,
    tail: bytes = b"",
) -> tuple[bytes, bool]:
    """Serialize the request head; returns (head, keep_alive).  ``tail`` (the body, when the
    caller sends it in the same write) is joined after the head in the same copy."""
    static = type(headers) is HeaderBlock
    if static:  # built and checked once per deployment
        block, n, has_host, keep_alive, clean = headers.serialized()
        # Only the method and target vary (the host line comes from a parsed URL, which
        # has no CR/LF): check those.
        if not clean or _crlf(method, target):
            raise HelixError(ErrorKind.INVALID_REQUEST, "request line or header contains CR/LF")
    else:
        block, n, has_host, keep_alive = _serialize(headers)
    parts = [method, b" ", target, b" HTTP/1.1\r\n", block]
    lines = 2 + n  # request line + blank line + one per header
    if not has_host:
        parts.append(host_line)
        lines += 1
    if body or method in _BODY_METHODS:
        parts.append(_length_line(len(body)))
        lines += 1
    else:
        parts.append(b"\r\n")
    if static:
        if tail:
            parts.append(tail)
        return b"".join(parts), keep_alive
    head = b"".join(parts)
    # CR/LF smuggled into a method, target, name or value would add lines.
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise HelixError(ErrorKind.INVALID_REQUEST, "request line or header contains CR/LF")
    return (head + tail if tail else head), keep_alive


def _over_budget(conn: Connection) -> None:
    """The exchange's total time budget has passed: fail the connection and raise."""
    conn.fail(HelixError(ErrorKind.READ_TIMEOUT,
                         f"upstream {conn.label} exceeded the total time budget"))
    raise conn.error


class UpstreamResponse:
    """A response whose head has arrived; the body is pulled on demand.

    ``read()`` takes the body whole (bounded by ``max_response_bytes`` and the
    ``total`` deadline); calling ``next_chunk()`` directly consumes it as a
    stream (the ``stream_total`` deadline then applies instead).
    """

    __slots__ = (
        "_conn",
        "_error",
        "_json",
        "_label",
        "_max_bytes",
        "_pool",
        "_relayed",
        "_started",
        "_stream_total",
        "_streaming",
        "headers",
        "read_result",
        "reader",
        "status",
    )

    def __init__(
        self,
        conn: Connection,
        pool: UpstreamPool,
        started: float = 0.0,
        stream_total: float | None = None,
        max_bytes: int | None = None,
    ) -> None:
        # Read back through the slot: typed in the compiled build (pool_c.pxd), so C reads.
        self._conn: Connection | None = conn
        self.status: int = self._conn.status
        self.headers: list[tuple[bytes, bytes]] = self._conn.headers
        self._label = self._conn.label
        self._pool = pool
        self._error: HelixError | None = None
        self._started = started
        self._stream_total = stream_total
        self._streaming = False
        self._json = False
        self._max_bytes = max_bytes
        self._relayed = 0
        # ``reader(body, label, prefix)``: checks a JSON body as check_json_object does (the
        # same 502s) and reads what its caller wants from it in the same pass, kept in
        # read_result (forward reads a native answer's usage so: one decode, not two).
        self.reader = None
        self.read_result = None

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status}>"

    def header(self, name: bytes) -> bytes | None:
        """First value of header *name* (case-insensitive), or None."""
        return self._header(name.lower())

    def _header(self, name: bytes) -> bytes | None:
        # ``name`` lower-case already (the parser lower-cases what it stores).
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def check_answer(self) -> None:
        """Refuse a 2xx answer that is not what a JSON API sends (issue 14.7).

        An HTML page (a captive portal, a proxy's error page served as 200) is
        a 502 at once; a body later taken with :meth:`read` must be a JSON
        object (unless content-encoded, which Helix relays untouched).
        """
        ctype = encoding = None
        for key, value in self.headers:  # one pass for both
            if key == b"content-type":
                if ctype is None:
                    ctype = value
            elif key == b"content-encoding" and encoding is None:
                encoding = value
        if ctype is not None and ctype[:9].lower() == b"text/html":
            self.close()
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL,
                f"upstream {self._label} answered with an HTML page instead of JSON",
                code="upstream_invalid_response",
            )
        self._json = encoding is None or encoding.strip().lower() == b"identity"

    async def read(self) -> bytes:
        """The whole (remaining) body; the connection is released afterwards."""
        data = self.arrived()
        if data is not None:
            return data
        conn = self._conn
        limit = self._max_bytes
        if conn is not None and limit is not None:
            declared = self._header(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                self._abandon(conn)
                raise self._too_large(limit)
        chunks = []
        size = 0
        while True:
            chunk = await self._next_chunk()
            if chunk is None:
                break
            size += len(chunk)
            if limit is not None and size > limit:
                chunks.clear()
                self.close()
                raise self._too_large(limit)
            chunks.append(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self._json:
            self._check(data)
        return data

    def _check(self, data: bytes) -> None:
        reader = self.reader
        if reader is None:
            check_json_object(data, self._label, "upstream ")
        else:
            self.read_result = reader(data, self._label, "upstream ")

    def arrived(self) -> bytes | None:
        """The whole body if it has already arrived (the usual case for a JSON answer of a
        few KiB), checked as :meth:`read` checks it, and the connection goes back; else
        None.  No coroutine and no header lookups: callers try it before awaiting
        :meth:`read` or :meth:`read_upto`."""
        conn = self._conn
        if conn is None or conn.state != DONE:
            return None
        data = conn.take() if conn.body else b""
        self._finish(conn)
        limit = self._max_bytes
        if limit is not None and len(data) > limit:
            raise self._too_large(limit)
        if self._json:
            self._check(data)
        return data

    async def read_upto(self, upto: int) -> tuple[bytes, bool]:
        """``(body, True)`` when the whole body is at most ``upto`` bytes (checked as
        :meth:`read` checks it); else ``(the bytes so far, False)``: the rest then comes
        from :meth:`body_chunk`, and nobody holds the whole answer.  A body declared larger
        than ``max_response_bytes`` is refused at once, as :meth:`read` does."""
        data = self.arrived()
        if data is not None:
            return data, True
        conn = self._conn
        limit = self._max_bytes
        declared = self._header(b"content-length")
        if conn is not None and limit is not None and declared is not None \
                and declared.isdigit() and int(declared) > limit:
            self._abandon(conn)
            raise self._too_large(limit)
        if conn is None or (
                declared is not None and declared.isdigit() and int(declared) <= upto):
            return await self.read(), True
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await self._next_chunk()
            if chunk is None:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                if self._json:
                    self._check(data)
                return data, True
            chunks.append(chunk)
            size += len(chunk)
            if limit is not None and size > limit:
                chunks.clear()
                self.close()
                raise self._too_large(limit)
            if size > upto:
                self._relayed = size
                return b"".join(chunks), False

    async def body_chunk(self) -> bytes | None:
        """The next body bytes of an answer relayed as it comes (after :meth:`read_upto`);
        None at the end.  The request's deadline is unchanged (it is not a stream); past
        ``max_response_bytes`` the answer is cut (the connection is closed)."""
        chunk = await self._next_chunk()
        if chunk is not None and self._max_bytes is not None:
            self._relayed += len(chunk)
            if self._relayed > self._max_bytes:
                self.close()
                raise self._too_large(self._max_bytes)
        return chunk

    def _too_large(self, limit: int) -> HelixError:
        return HelixError(
            ErrorKind.UPSTREAM_PROTOCOL,
            f"the answer from upstream {self._label} is larger than "
            f"upstream.max_response_bytes ({limit} bytes)",
            code="upstream_response_too_large",
            retry=Retry.NO,
        )

    @property
    def ended(self) -> bool:
        """Whether the next :meth:`next_chunk` returns None (the body has been taken whole:
        its end came with the last chunk)."""
        return self._conn is None and self._error is None

    def _as_stream(self) -> None:
        """The body is consumed as a stream: the exchange's deadline becomes
        ``stream_total`` (from the same start)."""
        self._streaming = True
        conn = self._conn
        if conn is not None:
            total = self._stream_total
            conn.deadline = None if total is None else self._started + total

    async def next_chunk(self) -> bytes | None:
        """The body bytes buffered so far (waiting if none), or None at the end.

        Consuming the body this way makes it a stream: from the first call on,
        the exchange's deadline is ``stream_total`` (from the same start)."""
        if not self._streaming:
            self._as_stream()
        return await self._next_chunk()

    async def push(self, sink, drain) -> None:
        """Relay the rest of a streamed body by push: ``sink(data, end)`` gets each read's
        body bytes, called from the connection's read callback (no task woken per chunk);
        ``end`` is true when the body ended with them.  A true return means the client takes
        no more for now: reading upstream pauses until ``await drain()`` returns.  Returns at
        the end of the body (the connection released); raises what :meth:`next_chunk` would
        (a timeout, a broken upstream) or what ``sink`` raised.  The stream deadline applies
        as for :meth:`next_chunk`."""
        if not self._streaming:
            self._as_stream()
        conn = self._conn
        if conn is None:
            if self._error is not None:
                raise self._error
            return
        try:
            while True:
                if conn.body:  # arrived while nobody pushed (or with the head)
                    end = conn.state == DONE
                    if sink(conn.take(), end) and not end:
                        await drain()
                        continue
                if conn.state == DONE:
                    break
                if conn.error is not None:
                    raise conn.error
                deadline = conn.deadline
                if deadline is not None and conn.loop.time() >= deadline:
                    _over_budget(conn)
                conn.sink = sink
                try:
                    await conn.wait_body()
                finally:
                    conn.sink = None
                if conn.paused and not conn.body:  # the sink paused reading: client is slow
                    await drain()
                    conn.resume()
        except BaseException as exc:
            if isinstance(exc, HelixError):
                self._error = exc
            self._abandon(conn)
            raise
        self._finish(conn)

    async def _next_chunk(self) -> bytes | None:
        conn = self._conn
        if conn is None:
            if self._error is not None:
                raise self._error
            return None
        body = conn.body
        deadline = conn.deadline
        try:
            if deadline is not None and conn.loop.time() >= deadline:
                _over_budget(conn)
            while not body:
                if conn.state == DONE:
                    self._finish(conn)
                    return None
                if conn.error is not None:
                    raise conn.error
                await conn.wait_body()
        except BaseException as exc:
            if isinstance(exc, HelixError):
                self._error = exc
            self._abandon(conn)
            raise
        data = conn.take()
        if conn.state == DONE and not body:
            self._finish(conn)  # release eagerly: the next call returns None
        return data

    def __aiter__(self) -> UpstreamResponse:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    def close(self) -> None:
        """Abandon the body.  The socket is reused only if the whole response
        had already arrived off the wire; otherwise it is closed.  Idempotent."""
        conn = self._conn
        if conn is not None:
            if conn.state == DONE and conn.reusable:
                self._finish(conn)
            else:
                self._abandon(conn)

    @property
    def released(self) -> bool:
        """True once the connection went back to the pool (or was closed)."""
        return self._conn is None

    def _finish(self, conn: Connection) -> None:
        self._conn = None
        self._pool._release(conn)

    def _abandon(self, conn: Connection) -> None:
        self._conn = None
        self._pool._discard(conn)

    def __del__(self) -> None:
        # Safety net for a response dropped without close(): never leak a slot.
        conn = self._conn
        if conn is not None:
            self._conn = None
            try:
                self._pool._discard(conn)
            except Exception:
                pass


class UpstreamPool:
    """Per-worker pool of keep-alive HTTP/1.1 connections, keyed by origin."""

    def __init__(
        self,
        limits: PoolLimits = _DEFAULT_LIMITS,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        ssl_context_factory: Callable[[bool], object] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.limits = limits
        # Read on every exchange: kept here (typed in the compiled build) rather than looked
        # up on the frozen PoolLimits each time.
        self._max_idle = limits.max_idle_per_origin
        self._max_bytes = limits.max_response_bytes
        self._loop = loop
        self._ssl_factory = ssl_context_factory or client_context
        self._resolver = resolver if resolver is not None else Resolver()
        self._pools: dict[Origin, _OriginPool] = {}
        self._insecure: dict[Origin, _OriginPool] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    # ------------------------------------------------------------ public

    async def request(
        self,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Timeouts = _DEFAULT_TIMEOUTS,
        *,
        verify_tls: bool = True,
    ) -> UpstreamResponse:
        """Send one request; returns once the response head has arrived."""
        if self._closed:
            raise HelixError(
                ErrorKind.UNAVAILABLE, f"upstream pool is closed ({origin.host}:{origin.port})"
            )
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        pools = self._pools if verify_tls or origin.scheme != "https" else self._insecure
        op = pools.get(origin)
        if op is None:
            op = self._new_origin(origin, verify_tls or origin.scheme != "https", pools)
        # A small body is joined in the head's copy: one allocation, one write.
        if body and len(body) <= ONE_WRITE_BODY:
            head, keep_alive = _build_head(method, target, headers, body, op.host_line, body)
            body = b""
        else:
            head, keep_alive = _build_head(method, target, headers, body, op.host_line)
        head_only = method == b"HEAD"
        total = timeouts.total
        started = loop.time()
        deadline = None if total is None else started + total

        conn = self._take_idle(op)
        if conn is None:
            conn = await self._acquire(op, timeouts, deadline)
        try:
            await conn.send(
                head, body, keep_alive, head_only, timeouts.first_byte, timeouts.read, deadline
            )
        except HelixError:
            if not conn.retryable:
                self._discard(conn)
                raise
            # Stale keep-alive socket: same slot, one fresh connection, one retry.
            conn.abort()
            self._forget(conn)
            conn = await self._connect(op, timeouts, deadline)
            try:
                await conn.send(
                    head, body, keep_alive, head_only, timeouts.first_byte, timeouts.read, deadline
                )
            except BaseException:
                self._discard(conn)
                raise
        except BaseException:
            self._discard(conn)
            raise
        return UpstreamResponse(
            conn, self, started, timeouts.stream_total, self._max_bytes
        )

    async def close(self) -> None:
        """Close every connection and fail every waiter.  In-flight exchanges
        fail with UPSTREAM_PROTOCOL; later requests with UNAVAILABLE."""
        if self._closed:
            return
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for pools in (self._pools, self._insecure):
            for op in pools.values():
                waiters = list(op.waiters)
                op.waiters.clear()
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(
                            HelixError(
                                ErrorKind.UNAVAILABLE, f"upstream pool is closed ({op.label})"
                            )
                        )
                idle = op.idle
                for conn in list(op.conns):
                    if conn in idle:
                        conn.close_idle()
                    else:
                        conn.abort()
                idle.clear()
                op.conns.clear()
        await asyncio.sleep(0)  # let transports run connection_lost

    def stats(self) -> dict:
        """``{"https://host:port": {"active", "idle", "waiting"}}`` (insecure
        pools get a ``" (insecure)"`` suffix)."""
        out = {}
        for pools, suffix in ((self._pools, ""), (self._insecure, " (insecure)")):
            for origin, op in pools.items():
                out[f"{origin.scheme}://{op.label}{suffix}"] = {
                    "active": op.active,
                    "idle": len(op.idle),
                    "waiting": len(op.waiters),
                }
        return out

    # ----------------------------------------------------------- internals

    def _new_origin(self, origin: Origin, verify: bool, pools: dict) -> _OriginPool:
        if origin.scheme not in _DEFAULT_PORTS:
            raise HelixError(ErrorKind.INVALID_REQUEST, f"unsupported scheme {origin.scheme!r}")
        ctx = self._ssl_factory(verify) if origin.scheme == "https" else None
        op = pools[origin] = _OriginPool(origin, verify, ctx)
        return op

    def _take_idle(self, op: _OriginPool) -> Connection | None:
        idle = op.idle
        while idle:
            conn = idle.popitem()[0]  # most recently used
            if not conn.closed:
                op.active += 1
                return conn
        return None

    async def _acquire(
        self, op: _OriginPool, timeouts: Timeouts, deadline: float | None
    ) -> Connection:
        if op.active < self.limits.max_connections_per_origin:
            op.active += 1
            return await self._connect(op, timeouts, deadline)
        # Queue (FIFO) for a slot or a handed-over connection.
        loop = self._loop
        fut = loop.create_future()
        op.waiters[fut] = None
        when = loop.time() + self.limits.pool_timeout
        if deadline is not None and deadline < when:
            when = deadline
        timer = loop.call_at(when, self._waiter_timeout, op, fut)
        try:
            got = await fut
        except BaseException:
            timer.cancel()
            op.waiters.pop(fut, None)
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                # Granted in the same tick we were cancelled: give it back.
                granted = fut.result()
                if granted is None:
                    self._release_slot(op)
                else:
                    self._release(granted)
            raise
        timer.cancel()
        if got is None:
            return await self._connect(op, timeouts, deadline)
        return got

    def _waiter_timeout(self, op: _OriginPool, fut: asyncio.Future) -> None:
        if not fut.done():
            op.waiters.pop(fut, None)
            fut.set_exception(
                HelixError(ErrorKind.POOL_TIMEOUT, f"no free connection to {op.label} in time")
            )

    async def _connect(
        self, op: _OriginPool, timeouts: Timeouts, deadline: float | None
    ) -> Connection:
        """Open a connection in a slot the caller already holds; on any
        failure (or cancellation) the slot is released."""
        loop = self._loop
        limits = self.limits
        conn = Connection(
            loop,
            op.label,
            high_water=limits.read_high_water,
            low_water=limits.read_low_water,
            lost_cb=self._on_lost,
            op=op,
        )
        when = loop.time() + timeouts.connect
        if deadline is not None and deadline < when:
            when = deadline
        origin = op.origin
        try:
            try:
                async with asyncio.timeout_at(when):
                    addresses = await self._resolver.resolve(origin.host, origin.port)
                    await open_connection(
                        loop,
                        origin.host,
                        addresses,
                        op.label,
                        op.ssl,
                        conn,
                        max(when - loop.time(), 0.0) + 1.0,
                    )
            except HelixError:
                raise
            except (OSError, ValueError) as exc:  # TimeoutError, ssl.SSLError included
                raise connect_error(exc, op.label) from exc
        except BaseException:
            conn.abort()
            self._release_slot(op)
            raise
        if self._closed:
            conn.abort()
            self._release_slot(op)
            raise HelixError(ErrorKind.UNAVAILABLE, f"upstream pool is closed ({op.label})")
        op.conns.add(conn)
        return conn

    def _release(self, conn: Connection) -> None:
        """Take back a connection whose exchange ended (reusable or not)."""
        op = conn.op
        if not conn.reusable or conn.closed or self._closed:
            conn.abort()
            self._forget(conn)
            self._release_slot(op)
            return
        conn.reset_idle(self._loop.time())
        waiters = op.waiters
        while waiters:
            fut = waiters.popitem(last=False)[0]
            if not fut.done():
                fut.set_result(conn)  # slot and socket move to the waiter
                return
        op.active -= 1
        if len(op.idle) >= self._max_idle:
            conn.close_idle()
            self._forget(conn)
            return
        op.idle[conn] = None
        if self._sweep is None:
            self._sweep = self._loop.call_at(
                conn.last_used + self.limits.idle_timeout, self._sweep_idle
            )

    def _discard(self, conn: Connection) -> None:
        """Close a connection in an unknown state and free its slot."""
        conn.abort()
        self._forget(conn)
        self._release_slot(conn.op)

    def _forget(self, conn: Connection) -> None:
        conn.op.conns.discard(conn)

    def _release_slot(self, op: _OriginPool) -> None:
        waiters = op.waiters
        while waiters:
            fut = waiters.popitem(last=False)[0]
            if not fut.done():
                fut.set_result(None)  # the slot moves to the waiter; it connects
                return
        op.active -= 1

    def _on_lost(self, conn: Connection) -> None:
        op = conn.op
        if op.idle.pop(conn, 0) is None:
            # It was idle: already not counted in ``active``.
            op.conns.discard(conn)

    def _sweep_idle(self) -> None:
        self._sweep = None
        now = self._loop.time()
        timeout = self.limits.idle_timeout
        next_at = None
        for pools in (self._pools, self._insecure):
            for op in pools.values():
                idle = op.idle
                while idle:
                    conn = next(iter(idle))  # least recently used
                    expires = conn.last_used + timeout
                    if expires > now:
                        if next_at is None or expires < next_at:
                            next_at = expires
                        break
                    del idle[conn]
                    op.conns.discard(conn)
                    conn.close_idle()
        if next_at is not None and not self._closed:
            self._sweep = self._loop.call_at(next_at, self._sweep_idle)
