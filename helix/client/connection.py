# cython: annotation_typing=False
"""One HTTP/1.1 connection to an upstream origin: an asyncio protocol that
parses responses with ``httptools.HttpResponseParser``.

The connection is a small state machine driven by the pool:

``IDLE`` -> ``send()`` -> ``HEAD`` (request written, waiting for the status
line and headers) -> ``BODY`` (head delivered, body pieces buffered in a
deque) -> ``DONE`` (message complete) -> back to ``IDLE`` when the pool takes
it back.  ``closed`` is set once the transport is gone, whatever the state.

Two deadlines exist per connection and at most one is live at a time:
``first_byte``/total while in ``HEAD`` and ``read``/total while a consumer
waits for the next body piece.  Both share one lazily re-armed timer handle
(as the server's connections do): ending a deadline only forgets it, and a
new deadline later than the armed handle leaves the handle alone -- it fires
early, sees the later deadline (or none) and re-arms (or stops).  So a reused
connection schedules no timer per request or per stream chunk; a timer
scheduled and cancelled each time cost ~1.8 us on uvloop.  The handle is
cancelled for real only when the connection dies.

Every foreign exception (``OSError``, ``ssl.SSLError``, httptools errors,
``TimeoutError``) is turned into a :class:`HelixError` here, by
:func:`connect_error` for the connect phase and inside the protocol callbacks
for the exchange.  Messages name ``host:port`` and never carry headers.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import Callable

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from helix.errors import ErrorKind, HelixError, Retry

__all__ = ["BODY", "DONE", "HEAD", "IDLE", "Connection", "connect_error", "open_connection"]

IDLE = 0
HEAD = 1
BODY = 2
DONE = 3

# A response head larger than this is treated as hostile / broken.
MAX_HEAD_BYTES = 256 * 1024

_PROTO = ErrorKind.UPSTREAM_PROTOCOL

# Lower-cased response header names by the raw name on the wire: every response shares one
# object per name instead of a new one per header (a provider sends the same few dozen).
# Bounded, like the server's request-header names (helix/server/protocol.py _NAMES), so an
# upstream sending random names cannot grow it without limit.
_LOWER: dict[bytes, bytes] = {}
_LOWER_MAX = 1024


def connect_error(exc: BaseException, label: str) -> HelixError:
    """Convert a failure of DNS/TCP connect/TLS handshake into a HelixError."""
    if isinstance(exc, HelixError):
        return exc
    if isinstance(exc, TimeoutError):
        return HelixError(ErrorKind.CONNECT_TIMEOUT, f"connect to {label} timed out", cause=exc)
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or "failed"
        return HelixError(ErrorKind.TLS, f"TLS handshake with {label} failed: {reason}", cause=exc)
    if isinstance(exc, OSError):
        what = exc.strerror or type(exc).__name__
        return HelixError(
            ErrorKind.CONNECT_REFUSED, f"connect to {label} failed: {what}", cause=exc
        )
    return HelixError(ErrorKind.CONNECT_REFUSED, f"connect to {label} failed", cause=exc)


class _UnexpectedMessage(Exception):
    """Raised inside a parser callback to stop parsing (a second response, 101)."""


class Connection:
    """The protocol object of one upstream socket.  Driven by the pool and
    :class:`~helix.client.pool.UpstreamResponse`; not used directly.

    No asyncio.Protocol base: the loop duck-types protocols, and the build compiles this
    module a second time as helix/_fast/conn_c (typed by conn_c.pxd), where the class is a
    cdef class, which cannot derive from a Python class."""

    __slots__ = (
        "_head_size",
        "_informational",
        "_lost_cb",
        "_parser",
        "_version",
        "body",
        "body_waiter",
        "buffered",
        "closed",
        "deadline",
        "due",
        "error",
        "got_bytes",
        "head_only",
        "head_waiter",
        "headers",
        "high_water",
        "keep_alive",
        "label",
        "last_used",
        "loop",
        "low_water",
        "op",
        "paused",
        "read_timeout",
        "requests",
        "retryable",
        "reusable",
        "sink",
        "state",
        "status",
        "timer",
        "timer_at",
        "transport",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        label: str,
        *,
        high_water: int = 1024 * 1024,
        low_water: int = 256 * 1024,
        lost_cb: Callable[[Connection], None] | None = None,
        op: object = None,
    ) -> None:
        self.loop = loop
        self.label = label
        self.high_water = high_water
        self.low_water = low_water
        self._lost_cb = lost_cb
        self.op = op  # the pool's per-origin record; opaque here
        self.transport: asyncio.Transport | None = None
        self._parser = HttpResponseParser(self)
        self.state = IDLE
        self.closed = False
        self.requests = 0
        self.last_used = 0.0
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.head_waiter: asyncio.Future | None = None
        self.body_waiter: asyncio.Future | None = None
        # The armed handle (fires at timer_at) and the live deadline (None: none).
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.due: float | None = None
        self.error: HelixError | None = None
        self.got_bytes = False
        self.retryable = False
        self.reusable = False
        self.keep_alive = True
        self.head_only = False
        self.read_timeout = 0.0
        self.deadline: float | None = None
        self._head_size = 0
        self._informational = False
        # The upstream's HTTP version, read from its first response: 0 not yet, 1 HTTP/1.1,
        # 2 another.  httptools formats it as a str on each ask (≈ 1,900 instructions).
        self._version = 0
        # A stream relayed by push (UpstreamResponse.push): called with each read's body.
        self.sink: Callable[[bytes, bool], bool] | None = None

    # ------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state in (BODY, HEAD):
            self.got_bytes = True
            if state == HEAD:
                # Checked before adding: a read that completes the head may carry
                # plenty of body bytes too.
                if self._head_size > MAX_HEAD_BYTES:
                    self.fail(HelixError(_PROTO, f"response head from {self.label} too large"))
                    return
                self._head_size += len(data)
            try:
                self._parser.feed_data(data)
            except (HttpParserError, HttpParserUpgrade) as exc:
                if self.state == DONE:
                    # A complete response followed by junk or a second message:
                    # the body is intact, the socket is not reusable.
                    self.reusable = False
                    if self.sink is not None and self.body:
                        self._push()
                    self.transport.abort()
                else:
                    self.fail(
                        HelixError(_PROTO, f"malformed response from {self.label}", cause=exc)
                    )
                return
            if self.sink is not None and self.body:
                self._push()
        elif state == DONE:
            self.reusable = False
            self.transport.abort()
        else:
            # Bytes on an idle socket: the peer is confused or closing.  Drop it.
            self.reusable = False
            self.transport.abort()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        state = self.state
        if state == HEAD:
            if self.error is None:
                # Dead before a single response byte on a reused socket: the
                # peer closed an idle keep-alive connection -> safe to retry.
                self.retryable = self.requests > 1 and not self.got_bytes
                what = "reset" if exc is not None else "closed"
                where = "mid-response" if self.got_bytes else "before the response"
                self.fail(
                    HelixError(
                        _PROTO,
                        f"connection to {self.label} {what} {where}",
                        retry=Retry.REUSED_ONLY if self.retryable else None,
                        cause=exc,
                    )
                )
        elif state == BODY and self.error is None:
            if exc is None and self._close_delimited():
                self._complete()
            else:
                what = "reset" if exc is not None else "closed"
                self.fail(
                    HelixError(_PROTO, f"connection to {self.label} {what} mid-response", cause=exc)
                )
        self._drop_timer()
        cb = self._lost_cb
        if cb is not None:
            cb(self)

    def pause_writing(self) -> None:  # request bodies are written in one go
        pass

    def resume_writing(self) -> None:
        pass

    # --------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        if self.state != HEAD:
            raise _UnexpectedMessage

    def on_header(self, name: bytes, value: bytes) -> None:
        key = _LOWER.get(name)
        if key is None:
            key = name.lower()
            if len(_LOWER) < _LOWER_MAX:
                _LOWER[name] = key
        self.headers.append((key, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if not 100 <= status <= 599:
            # RFC 9110 status codes are 100-599; anything else is not HTTP we can relay.
            self.fail(HelixError(_PROTO, f"invalid status {status} from {self.label}"))
            raise _UnexpectedMessage
        if status < 200:
            if status == 101:
                raise _UnexpectedMessage
            self._informational = True  # 100/102/103: skip, the real head follows
            self.headers = []
            return
        self.status = status
        self.state = BODY
        self._cancel_timer()
        waiter = self.head_waiter
        self.head_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.head_only:
            # HEAD: no body follows whatever content-length says.  The parser
            # does not know the request method, so end here and do not reuse.
            self.keep_alive = False
            self._complete()

    def on_body(self, data: bytes) -> None:
        if self.state != BODY:
            return
        self.body.append(data)
        self.buffered += len(data)
        if self.buffered > self.high_water and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        if self.sink is not None:
            return  # pushed at the end of data_received; the pushing task sleeps on
        self._wake_body()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            self.state = HEAD
            return
        if self.state != BODY:
            return
        parser = self._parser
        if self.keep_alive and not (parser.should_keep_alive() and self._http11(parser)):
            self.keep_alive = False
        self._complete()

    # ------------------------------------------------------------- helpers

    def _http11(self, parser) -> bool:
        """Whether the upstream answers in HTTP/1.1 (only then is its connection reused),
        asked of the parser once per connection: a server does not change versions between
        responses, and one that did would have asked for keep-alive explicitly."""
        version = self._version
        if version == 0:
            version = self._version = 1 if parser.get_http_version() == "1.1" else 2
        return version == 1

    def _push(self) -> None:
        """Hand this read's body to the push sink (UpstreamResponse.push): the relay runs
        here, in the read callback, instead of in a task woken for every chunk."""
        sink = self.sink
        data = self.take()
        end = self.state == DONE
        try:
            wait = sink(data, end)
        except Exception as exc:
            # The relay refused the bytes (an error event, a nesting bomb) or the client is
            # gone: the stream stops here and the pushing task gets the exception.
            self.sink = None
            self.reusable = False
            self._drop_timer()
            self._wake_body(exc)
            if not self.closed and self.transport is not None:
                self.transport.abort()
            return
        if end or wait:
            # The end (_complete left the waiter to us: a sink that raised on the last bytes
            # must still be heard), or the client takes no more for now: stop reading
            # upstream until it drains (the pushing task waits for that, then resumes).
            self.sink = None
            if not end and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            self._wake_body()
            return
        # Data came: the idle timeout starts again (the armed handle fires at its old time,
        # sees the later ``due`` and re-arms: no timer work per chunk).
        when = self.loop.time() + self.read_timeout
        deadline = self.deadline
        if deadline is not None and deadline < when:
            when = deadline
        self._arm(when)

    def _wake_body(self, exc: BaseException | None = None) -> None:
        """Wake the task waiting for body bytes (raising ``exc`` in it, if given)."""
        waiter = self.body_waiter
        if waiter is not None:
            self.body_waiter = None
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    def resume(self) -> None:
        """Read again after :meth:`_push` paused for a slow client."""
        if self.paused:
            self.paused = False
            if not self.closed:
                self.transport.resume_reading()

    def _complete(self) -> None:
        self.state = DONE
        self.reusable = self.keep_alive and not self.closed
        self._cancel_timer()
        if self.paused:
            self.paused = False
            if not self.closed:
                self.transport.resume_reading()
        if self.sink is not None and self.body:
            return  # inside data_received: _push wakes the pushing task after the sink ran
        self._wake_body()

    def _close_delimited(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return False
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                return False
        return True

    def _arm(self, when: float) -> None:
        """Make ``when`` the live deadline; schedule only if nothing armed fires by then."""
        self.due = when
        timer = self.timer
        if timer is not None:
            if self.timer_at <= when:
                return  # fires early, sees ``due``, re-arms
            timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        """No live deadline any more (the armed handle, if any, finds none and stops)."""
        self.due = None

    def _drop_timer(self) -> None:
        """The connection is gone: cancel the handle itself."""
        self.due = None
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    def _on_timer(self) -> None:
        self.timer = None
        due = self.due
        if due is None:
            return
        if self.loop.time() + 0.005 < due:
            self.timer_at = due
            self.timer = self.loop.call_at(due, self._on_timer)
            return
        self.due = None
        deadline = self.deadline
        if deadline is not None and self.loop.time() >= deadline:
            msg = f"upstream {self.label} exceeded the total time budget"
        elif self.state == HEAD:
            msg = f"upstream {self.label} sent no response head in time"
        else:
            msg = f"upstream {self.label} sent no data for {self.read_timeout:g}s"
        self.fail(HelixError(ErrorKind.READ_TIMEOUT, msg))

    def fail(self, err: HelixError) -> None:
        """Record *err*, wake whoever waits, and kill the socket."""
        if self.error is None:
            self.error = err
        self.reusable = False
        self._drop_timer()
        waiter = self.head_waiter
        if waiter is not None:
            self.head_waiter = None
            if not waiter.done():
                waiter.set_exception(err)
        self._wake_body(err)
        if not self.closed and self.transport is not None:
            self.transport.abort()

    def abort(self) -> None:
        """Close now, state unknown: never reused."""
        self.reusable = False
        self._drop_timer()
        if not self.closed and self.transport is not None:
            self.transport.abort()

    def close_idle(self) -> None:
        """Politely close an idle socket (FIN, not RST)."""
        self.reusable = False
        self._drop_timer()
        if not self.closed and self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ requests

    def send(
        self,
        data: bytes,
        body: bytes,
        keep_alive: bool,
        head_only: bool,
        first_byte: float,
        read_timeout: float,
        deadline: float | None,
    ) -> asyncio.Future:
        """Write one request and return a future resolved when the head arrives."""
        self.requests += 1
        loop = self.loop
        waiter = self.head_waiter = loop.create_future()
        if self.closed:
            self.retryable = self.requests > 1
            self.fail(HelixError(_PROTO, f"connection to {self.label} closed before the request"))
            return waiter
        self.state = HEAD
        self.status = 0
        self.headers = []
        self.error = None
        self.got_bytes = False
        self.retryable = False
        self.reusable = False
        self._head_size = 0
        self._informational = False
        self.keep_alive = keep_alive
        self.head_only = head_only
        self.read_timeout = read_timeout
        self.deadline = deadline
        transport = self.transport
        if not body:
            transport.write(data)
        else:  # a large body (the pool joins a small one to its head): no copy of it
            transport.writelines((data, body))
        when = loop.time() + first_byte
        if deadline is not None and deadline < when:
            when = deadline
        self._arm(when)
        return waiter

    async def wait_body(self) -> None:
        """Wait until more body arrives, the message ends, or a timeout hits."""
        loop = self.loop
        when = loop.time() + self.read_timeout
        deadline = self.deadline
        if deadline is not None and deadline < when:
            when = deadline
        waiter = self.body_waiter = loop.create_future()
        self._arm(when)
        try:
            await waiter
        finally:
            self.body_waiter = None
            self._cancel_timer()

    def take(self) -> bytes:
        """Everything buffered, as one bytes (caller checked it is non-empty)."""
        body = self.body
        if len(body) == 1:
            data = body.popleft()
        else:
            data = b"".join(body)
            body.clear()
        self.buffered -= len(data)
        if self.paused and self.buffered <= self.low_water:
            self.paused = False
            if not self.closed:
                self.transport.resume_reading()
        return data

    def reset_idle(self, now: float) -> None:
        self.state = IDLE
        self.last_used = now
        self.body.clear()
        self.buffered = 0
        self.headers = []


def _writable(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


async def _connect(loop: asyncio.AbstractEventLoop, sock: socket.socket, sockaddr: tuple) -> None:
    """``loop.sock_connect`` for an address already resolved (``helix/client/resolver.py``).

    uvloop's ``sock_connect`` passes every address, an IP literal too, through
    ``getaddrinfo`` on its thread pool: a thread hop on every new connection (≈ 110 µs more
    than this) and, on a worker's first, four threads started before the first byte goes
    upstream.  This is asyncio's own non-blocking connect: start it, wait until the socket
    is writable, read the outcome from ``SO_ERROR``.
    """
    try:
        sock.connect(sockaddr)
        return
    except (BlockingIOError, InterruptedError):
        pass
    fd = sock.fileno()
    fut = loop.create_future()
    loop.add_writer(fd, _writable, fut)
    try:
        await fut
    finally:
        loop.remove_writer(fd)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, f"Connect call failed {sockaddr}")


async def open_connection(
    loop: asyncio.AbstractEventLoop,
    host: str,
    addresses: list[tuple[int, tuple]],
    label: str,
    ssl_context: ssl.SSLContext | None,
    conn: Connection,
    handshake_timeout: float,
) -> None:
    """Connect *conn* to the first reachable address (TCP, then TLS).

    Raises the raw exception; the caller converts it with
    :func:`connect_error` under its own timeout.
    """
    last_exc: BaseException | None = None
    sock = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await _connect(loop, sock, sockaddr)
        except OSError as exc:
            sock.close()
            sock = None
            last_exc = exc
            continue
        except BaseException:
            sock.close()
            raise
        break
    if sock is None:
        raise last_exc if last_exc is not None else OSError(f"no address for {label}")
    try:
        await loop.create_connection(
            lambda: conn,
            sock=sock,
            ssl=ssl_context,
            server_hostname=host if ssl_context is not None else None,
            ssl_handshake_timeout=handshake_timeout if ssl_context is not None else None,
        )
    except BaseException:
        sock.close()
        raise
