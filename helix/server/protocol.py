# cython: annotation_typing=False
"""HttpProtocol: one client connection, parsed with httptools (llhttp).

Responsibilities, in order of the bytes' journey:

* feed bytes to the parser and enforce head/body limits and framing rules
  that llhttp leaves to us (see ``_on_headers_complete``);
* queue complete requests and run one handler task at a time, so pipelined
  requests are answered strictly in order;
* keep one lazily re-armed timer for the keep-alive / header / body timeouts;
* flow control in both directions (reading paused while too many pipelined requests wait;
  a streaming handler's :meth:`HttpProtocol.drain` waits while the client is slow);
* on client disconnect, cancel the running handler (which cancels the
  upstream call it is making).

Nothing here builds response bytes; that is :mod:`helix.server.writer`.
"""

from __future__ import annotations

import asyncio
import heapq
import importlib
import logging
import re
import sys
from collections import deque
from typing import TYPE_CHECKING

import httptools

from helix import _fast

# Request and Exchange of this module's own build: the typed ones (helix/_fast/exchange_c.pxd)
# for the compiled protocol, which the typed exchange holds typed, the pure ones for this
# pure module. Bound before the helix.server imports below: those load the server package,
# which reads this module's Exchange and Request, and compiled, the two typed modules
# cimport each other, so either may be the one loading the other here.
_exchange = (
    _fast.pick_module("exchange_c", "helix.server.exchange")
    if __name__ == "helix._fast.protocol_c"
    else importlib.import_module("helix.server.exchange")
)
Exchange = _exchange.Exchange
Request = _exchange.Request

from helix.errors import ErrorKind, HelixError  # noqa: E402
from helix.server.flow import ClientDisconnected  # noqa: E402
from helix.server.writer import CONTINUE_100  # noqa: E402

if TYPE_CHECKING:
    from helix.server.server import Server
# A request target's path and query, in C when built (helix/_fast/head_c.pyx).
_split_target = _fast.split_target
_http11_line = _fast.http11_line

__all__ = ["HttpProtocol"]

logger = logging.getLogger("helix.server")

_HttpParserError = httptools.HttpParserError
_Task = asyncio.Task
_TASK_NAME = "helix-request"
_HttpParserUpgrade = httptools.HttpParserUpgrade

# Parse states.
_P_IDLE = 0  # between messages
_P_HEAD = 1  # request line / headers in progress
_P_BODY = 2  # head done, body in progress

# Timer kinds.
_T_NONE = 0
_T_KEEPALIVE = 1
_T_HEADER = 2
_T_BODY = 3

# During a graceful shutdown an idle keep-alive connection is kept this long
# so a request already on its way is answered (with "connection: close").
_DRAIN_IDLE = 1.0
# When Helix closes a connection after a response (an error, "connection:
# close", HTTP/1.0), it shuts down its write side and keeps reading (and
# discarding) for up to this long before closing: closing with unread input
# makes the kernel send RST, which can destroy the response before the client
# reads it (nginx's lingering close).  The client's EOF ends it sooner.
_LINGER = 2.0

# RFC 9112 3.2 / RFC 3986 3.2.2: uri-host [ ":" port ].
_HOST_RE = re.compile(
    r"(?:\[[0-9A-Za-z:._~%!$&'()*+,;=-]+\]|[0-9A-Za-z._~%!$&'()*+,;=-]+)(?::[0-9]*)?"
)
_HOSTS_OK: set[str] = set()  # valid Host values seen (bounded)
_HOSTS_MAX = 256

# Interned method strings: avoids a decode per request for the usual ones.
_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}

# Lower-cased, decoded header names for raw names seen on the wire: a table of _PAIRS
# pairs of (raw name, name) entries, the pair picked by the raw name's FNV-1a hash.  A
# name is found by its hash and a bytes compare per way, in one cache line, not by a dict
# lookup that hashes the new bytes httptools made for it with SipHash and compares
# through rich comparison (≈ 400 instructions a header; the openai SDK sends 17).  Fixed
# size: a client sending random names only evicts (its own lookups take the slow path).
_PAIRS = 1024
_M32 = 0xFFFFFFFF
_TABLE: list[bytes | str] = [b"", "", b"", ""] * _PAIRS


def _header_name(name: bytes) -> str:
    h = 2166136261
    for c in name:
        h = ((h ^ c) * 16777619) & _M32
    i = ((h ^ (h >> 16)) & (_PAIRS - 1)) * 4  # FNV's low bits alone mix poorly
    raw = _TABLE[i]
    if raw == name:
        return _TABLE[i + 1]
    other = _TABLE[i + 2]
    if other == name:
        return _TABLE[i + 3]
    key = name.decode("latin-1").lower()
    # The newest first; the one it displaces to the pair's second way.
    _TABLE[i + 2] = raw
    _TABLE[i + 3] = _TABLE[i + 1]
    _TABLE[i] = name
    _TABLE[i + 1] = key
    return key


class _Abort(Exception):
    """Raised inside a parser callback to stop parsing; the reason is in ``_reject``."""


def _bad(message: str) -> HelixError:
    return HelixError(ErrorKind.MALFORMED_HTTP, message)


def _busy() -> HelixError:
    return HelixError(
        ErrorKind.UNAVAILABLE,
        "Helix is holding too many request bodies right now; retry shortly.",
        code="server_busy",
        headers=[(b"retry-after", b"1")],
    )


def _host_ok(host: str) -> bool:
    if host in _HOSTS_OK:
        return True
    if not host or _HOST_RE.fullmatch(host) is None:
        return False
    if len(_HOSTS_OK) < _HOSTS_MAX:
        _HOSTS_OK.add(host)
    return True


_BIG = sys.maxsize  # a limit beyond this is no limit a C field needs to hold exactly


class _Limits:
    """The server's limits as a connection reads them, several times a request: the same
    names as :class:`ServerLimits`, typed fields in the compiled build (protocol_c.pxd), so
    a read is a C field and not an attribute lookup on the dataclass.  ServerLimits is
    frozen, so one copy serves every connection of a server (:func:`_limits_of`)."""

    __slots__ = (
        "body_timeout",
        "header_timeout",
        "keepalive_timeout",
        "max_body_bytes",
        "max_buffered_body_bytes",
        "max_header_bytes",
        "max_headers",
        "max_pipelined",
        "source",
        "write_high_water",
        "write_low_water",
    )

    def __init__(self, limits) -> None:
        self.source = limits
        self.max_header_bytes = min(limits.max_header_bytes, _BIG)
        self.max_headers = min(limits.max_headers, _BIG)
        self.max_body_bytes = min(limits.max_body_bytes, _BIG)
        self.max_buffered_body_bytes = min(limits.max_buffered_body_bytes, _BIG)
        self.max_pipelined = min(limits.max_pipelined, _BIG)
        self.write_high_water = min(limits.write_high_water, _BIG)
        self.write_low_water = min(limits.write_low_water, _BIG)
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.keepalive_timeout = limits.keepalive_timeout


_last_limits = None


def _limits_of(limits) -> _Limits:
    """The typed copy of ``limits``, made once per ServerLimits object (the last one kept:
    a worker has one server)."""
    global _last_limits
    last = _last_limits
    if last is None or last.source is not limits:
        last = _last_limits = _Limits(limits)
    return last


# Request timeouts in slots of this many a second: a deadline fires up to one slot late.
_SLOT = 100.0
# Cancelled entries are dropped from their slots once there are this many and they are
# at least half of all entries held (a flood of short connections cancels one each).
_COMPACT_AFTER = 1024


class _Timeouts:
    """The request timeouts of one server's connections: entries in 10 ms slots (a dict of
    lists, the slots' keys in a heap) and one loop timer, for the earliest slot, instead of
    a loop timer per connection (uvloop's ``call_at`` is a TimerHandle, a libuv timer and a
    heap insert: ≈ 5,000 instructions on every new connection, and its cancel more when the
    connection ends).  An entry is a one-item list holding its protocol; cancelling it
    empties it (the slot no longer keeps the protocol), and cancelled entries are swept
    out once they are many, so what is held follows the open connections.  Never early: a
    slot fires at or after each deadline in it."""

    __slots__ = ("_at", "_cancelled", "_handle", "_heap", "_held", "_loop", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[int, list[list]] = {}
        self._heap: list[int] = []
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0  # the slot the loop timer is set for
        self._held = 0  # entries in the slots, cancelled ones included
        self._cancelled = 0

    def add(self, deadline: float, proto: HttpProtocol) -> list:
        key = int(deadline * _SLOT) + 1
        entry = [proto]
        self._held += 1
        bucket = self._slots.get(key)
        if bucket is not None:
            bucket.append(entry)
            return entry
        self._slots[key] = [entry]
        heapq.heappush(self._heap, key)
        if self._handle is None or key < self._at:
            self._arm(key)
        return entry

    def cancel(self, entry: list) -> None:
        entry[0] = None
        self._cancelled += 1
        if self._cancelled >= _COMPACT_AFTER and self._cancelled * 2 >= self._held:
            held = 0
            for bucket in self._slots.values():
                bucket[:] = [e for e in bucket if e[0] is not None]
                held += len(bucket)
            self._held = held
            self._cancelled = 0

    def held(self) -> int:
        """Entries in the slots, cancelled ones not yet swept included (for tests)."""
        return self._held

    def _arm(self, key: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = key
        self._handle = self._loop.call_at(key / _SLOT, self._fire)

    def _fire(self) -> None:
        self._handle = None
        due = self._loop.time() * _SLOT + 0.5  # slots up to 5 ms ahead are due
        heap = self._heap
        while heap and heap[0] <= due:
            bucket = self._slots.pop(heapq.heappop(heap))
            self._held -= len(bucket)
            for entry in bucket:
                proto = entry[0]
                if proto is None:
                    self._cancelled -= 1
                    continue
                entry[0] = None
                try:
                    proto._on_timer()
                except Exception:
                    logger.exception("request timeout handling failed")
        # (A protocol re-arming above may have set the timer for a later slot.)
        if heap and (self._handle is None or heap[0] < self._at):
            self._arm(heap[0])


def _timeouts_of(server: Server) -> _Timeouts:
    """The server's timeouts of this module's kind (the pure and the compiled protocol
    each keep their own)."""
    timeouts = server.timeouts.get(_Timeouts)
    if timeouts is None:
        timeouts = server.timeouts[_Timeouts] = _Timeouts(server.loop)
    return timeouts


class HttpProtocol:
    # No asyncio.Protocol base: uvloop duck-types protocols, and the build compiles this
    # module a second time as helix/_fast/protocol_c (typed by protocol_c.pxd), where the
    # class is a cdef class, which cannot derive from a Python class.
    __slots__ = (
        "_access_log",
        "_body",
        "_body_len",
        "_chunked",
        "_client",
        "_continue_pending",
        "_current",
        "_dead",
        "_deadline",
        "_drain_waiter",
        "_extra",
        "_handler",
        "_head_bytes",
        "_head_raw",
        "_headers",
        "_held",
        "_keep_alive",
        "_limits",
        "_line11",
        "_linger",
        "_loop",
        "_method",
        "_next",
        "_nheaders",
        "_nrequests",
        "_parser",
        "_path",
        "_peer_read",
        "_pstate",
        "_query",
        "_queue",
        "_read_paused",
        "_reject",
        "_server",
        "_task",
        "_timeouts",
        "_timer",
        "_timer_at",
        "_timer_kind",
        "_url",
        "_version",
        "_waiter",
        "closing",
        "draining",
        "lost",
        "server_header",
        "transport",
        "write_paused",
    )

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server.loop
        self._limits = _limits_of(server.limits)
        self._handler = server.handler
        self._access_log = server.access_log
        self.server_header = server.limits.server_header
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        # Flow control, kept here rather than in an object of its own (one allocation and two
        # Python frames fewer a connection).  Reading is paused while too many pipelined
        # requests wait (and for a fatal parse error); pause/resume are idempotent because
        # several reasons may ask for the same state.  Writing: the transport calls
        # pause_writing/resume_writing at its water marks, and a streaming handler awaits
        # drain() while paused, so a slow client slows the upstream read.
        self._read_paused = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._client: tuple[str, int] | None = None
        self._peer_read = False
        # closing: answer the current request with "connection: close" and
        # close after it (shutdown or a fatal error).  _dead: parse no more
        # input.  lost: the transport is gone.
        self.closing = False
        self._dead = False
        # draining: the server is shutting down; every response from now on
        # says "connection: close", and an idle connection gets _DRAIN_IDLE
        # seconds before it is closed (closing it at once races a client that
        # is reusing it right now, and that client would see a reset).
        self.draining = False
        self.lost = False
        # Input arrived after the request that ends the connection (discarded).
        self._extra = False
        self._linger: asyncio.TimerHandle | None = None
        # Pipelined requests waiting behind the current one; made by the first that waits
        # (most connections never pipeline: no deque for them).
        self._queue: deque[Exchange] | None = None
        self._current: Exchange | None = None
        # The task serving this connection's requests (_serve), the future it waits on
        # for the next one when idle, and a pipelined request handed to it in between.
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[Exchange | None] | None = None
        self._next: Exchange | None = None
        self._continue_pending = False
        self._nrequests = 0
        # The pending timeout: an entry in the server's _Timeouts (see there).
        self._timer: list | None = None
        self._timeouts = _timeouts_of(server)
        self._timer_at = 0.0
        self._timer_kind = _T_NONE
        self._deadline = 0.0
        self._reject: HelixError | None = None
        self._pstate = _P_IDLE
        # Whether the request line of the message that starts the input being fed says
        # HTTP/1.1 (data_received), for on_headers_complete; False when unknown.
        self._line11 = False
        # Request body bytes this connection holds, counted in server.buffered.
        self._held = 0
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._head_raw = 0
        self._nheaders = 0
        self._body: list[bytes] | None = None
        self._body_len = 0
        self._chunked = False
        self._method = ""
        self._path = ""
        self._query = ""
        self._version = "1.1"
        self._keep_alive = True

    # ==================================================================
    # asyncio.Protocol
    # ==================================================================
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop transports are not asyncio.Transport subclasses; duck-type.
        self.transport = transport  # type: ignore[assignment]
        limits = self._limits
        transport.set_write_buffer_limits(limits.write_high_water, limits.write_low_water)
        if self._access_log is not None:
            # The access line reads the address for every request: read it now.  Otherwise
            # only when asked (``peer()``): a syscall and ≈ 2,200 instructions that most
            # connections never need.
            self.peer()
        server = self._server
        if not server.connection_opened(self):  # over server.max_connections
            self.closing = True
            self._dead = True
            transport.abort()
            return
        if server.shutting_down:
            self.closing = True
            self._dead = True
            transport.close()
            return
        self._arm_timer()

    def peer(self) -> tuple[str, int] | None:
        """The client's ``(host, port)``, read from the transport the first time something
        asks (a request's ``client``; uvloop still answers after the client has gone); None
        when the transport does not know it."""
        if not self._peer_read:
            self._peer_read = True
            peer = self.transport.get_extra_info("peername")
            if isinstance(peer, tuple) and len(peer) >= 2:
                self._client = (peer[0], peer[1])
        return self._client

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        self._dead = True
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_exception(ClientDisconnected())
                # The awaiting task may already be cancelled: no "exception never
                # retrieved" warning in the logs.
                waiter.exception()
        if self._timer is not None:
            self._timeouts.cancel(self._timer)
            self._timer = None
        self._timer_kind = _T_NONE
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._queue = None
        self._body = None
        # The parser holds this protocol's bound callbacks: a cycle that only the
        # cycle collector would free, so after a flood of connections their memory
        # stayed until a full collection (issue 14.9).  Nothing parses after this.
        self._parser = None
        if self._held:
            self._release(self._held)
        current = self._current
        # Cancel only a handler whose response is unfinished: one that is
        # doing post-response work (usage accounting) must be left alone.
        if self._task is not None and current is not None and not current.finished:
            self._task.cancel()
        waiter = self._waiter
        if waiter is not None:  # the connection's task, idle: it ends
            self._waiter = None
            waiter.set_result(None)
        self._server.connection_closed(self)

    def eof_received(self) -> bool | None:
        # A half-close is treated as a disconnect (returning None closes the
        # transport): for a gateway, a client that stops talking is almost
        # always a client that went away, and we want to stop paying for the
        # upstream call.
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        """Return once the transport accepts writes again; raise
        :class:`ClientDisconnected` if the connection is (or becomes) lost, so a streaming
        handler stops pulling from upstream."""
        if self.lost:
            raise ClientDisconnected()
        if not self.write_paused:
            return
        waiter = self._drain_waiter
        if waiter is None or waiter.done():
            waiter = self._drain_waiter = self._loop.create_future()
        # A shielded wait: cancelling the awaiting task must not cancel the shared future
        # another sender may also be waiting on.
        await asyncio.shield(waiter)
        if self.lost:
            raise ClientDisconnected()

    def _pause_reading(self) -> None:
        if not self._read_paused and not self.lost:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and not self.lost:
            self._read_paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._dead:
            self._extra = True
            return
        if self._pstate == _P_HEAD:
            # Coarse guard for one huge header line that llhttp buffers
            # internally before calling on_header: count raw bytes received
            # while the head is still incomplete.
            self._head_raw += len(data)
        elif self._pstate == _P_IDLE:
            # This input starts a message (the last one ended with the previous input):
            # its first line is the request line.
            self._line11 = _http11_line(data)
        try:
            self._parser.feed_data(data)
        except _HttpParserUpgrade as exc:
            self._on_upgrade(data, exc.args[0] if exc.args else len(data))
        except _HttpParserError as exc:
            if not self._dead:
                reject = self._reject
                if reject is None:
                    reject = _bad(f"Malformed HTTP request: {exc}")
                self._fail(reject)
            return
        except _Abort:
            # httptools normally wraps callback errors, but be robust.
            if not self._dead and self._reject is not None:
                self._fail(self._reject)
            return
        if self._pstate == _P_HEAD and (
            self._head_raw > self._limits.max_header_bytes or self._head_too_large()
        ):
            self._fail(HelixError(ErrorKind.HEADERS_TOO_LARGE, "Request header too large"))
            return
        self._arm_timer()

    def _on_upgrade(self, data: bytes, offset: int) -> None:
        # llhttp stops at a request carrying "connection: upgrade" + "upgrade"
        # (CONNECT and upgrade-with-body were rejected in on_headers_complete).
        # We never switch protocols: the request was served as plain HTTP, so
        # continue with a fresh parser on the bytes after it.
        if self._dead:
            return
        self._parser = httptools.HttpRequestParser(self)
        rest = data[offset:]
        if rest:
            self.data_received(rest)
        else:
            self._arm_timer()

    # ==================================================================
    # httptools callbacks (only the ones we need: each costs a Python call)
    # ==================================================================
    def on_message_begin(self) -> None:
        if self._dead:
            self._extra = True  # a request after the one that closes the connection
            raise _Abort()
        self._pstate = _P_HEAD

    def on_url(self, url: bytes) -> None:
        # May arrive in pieces when the request line is split across reads.
        # Size limits are checked once per feed / at headers-complete, not
        # per callback: the hot path stays a handful of operations.
        self._url = self._url + url if self._url else url
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Runs once per header line: the hottest callback, kept minimal.
        key = _header_name(name)
        text = value.decode("latin-1")
        if self._headers.setdefault(key, text) is not text:  # one lookup, not two
            self._duplicate_header(key, value)
        self._head_bytes += len(name) + len(value) + 4

    def _duplicate_header(self, key: str, value: bytes) -> None:
        # llhttp already rejects duplicate content-length and
        # transfer-encoding; two Host headers are ambiguous routing.
        if key == "host":
            self._abort(_bad("Duplicate Host header"))
        self._nheaders += 1
        headers = self._headers
        headers[key] = headers[key] + ", " + value.decode("latin-1")

    def _head_too_large(self) -> bool:
        limits = self._limits
        return (
            self._head_bytes > limits.max_header_bytes
            or len(self._headers) + self._nheaders > limits.max_headers
        )

    def on_headers_complete(self) -> None:
        if self._head_too_large():
            self._abort(HelixError(ErrorKind.HEADERS_TOO_LARGE, "Request header too large"))
        parser = self._parser
        limits = self._limits
        headers = self._headers
        keep_alive = parser.should_keep_alive()
        if self._line11:
            # The input this message started with began with its request line, which
            # ends in " HTTP/1.1" (data_received).  Only the first message of an input:
            # a pipelined one after it in the same input is asked for below.
            self._line11 = False
            version = "1.1"
        elif keep_alive and "connection" not in headers and "proxy-connection" not in headers:
            # llhttp keeps a request alive without a keep-alive token only when it is
            # HTTP/1.1 (of the versions it accepts: 0.9, 1.0, 1.1, 2.0), so the version is
            # known without httptools formatting it (≈ 1,900 instructions a request).
            version = "1.1"
        else:
            version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._abort(
                HelixError(
                    ErrorKind.MALFORMED_HTTP,
                    f"HTTP version {version} is not supported",
                    status=505,
                    code="http_version_not_supported",
                )
            )
        # RFC 9112 3.2: an HTTP/1.1 request without Host, or any request with an
        # invalid one, is a 400 (two Host headers were refused in on_header).
        host = headers.get("host")
        if host is None:
            if version == "1.1":
                self._abort(_bad("Missing Host header (required in HTTP/1.1)"))
        elif not _host_ok(host):
            self._abort(_bad("Invalid Host header"))
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = raw_method.decode("ascii", "replace")
            if method == "CONNECT":
                self._abort(HelixError(ErrorKind.METHOD_NOT_ALLOWED, "CONNECT is not supported"))
        self._method = method
        self._version = version
        self._keep_alive = keep_alive

        # Request target -> path and query (no percent-decoding).
        url = self._url
        if url[:1] != b"/":
            url = self._split_non_origin(url)
        self._path, self._query = _split_target(url)

        # Framing.  llhttp already rejects CL+TE together, duplicate or
        # malformed Content-Length, and a non-chunked final coding; it does
        # accept "gzip, chunked", which we do not decode, so we insist on
        # exactly "chunked".  The CL+TE check is repeated as defence in depth.
        headers = self._headers
        te = headers.get("transfer-encoding")
        cl = headers.get("content-length")
        has_body = False
        if te is not None:
            if cl is not None:
                self._abort(_bad("Both Content-Length and Transfer-Encoding present"))
            if version == "1.0":
                self._abort(_bad("Transfer-Encoding is not allowed in HTTP/1.0"))
            if te.strip(" \t").lower() != "chunked":
                self._abort(_bad("Unsupported Transfer-Encoding"))
            self._chunked = has_body = True
        elif cl is not None:
            try:
                length = int(cl)
            except ValueError:
                self._abort(_bad("Invalid Content-Length"))
            if length < 0:
                self._abort(_bad("Invalid Content-Length"))
            if length > limits.max_body_bytes:
                self._abort(HelixError(ErrorKind.PAYLOAD_TOO_LARGE, "Request body too large"))
            has_body = length > 0
            if has_body and self._server.buffered + length > limits.max_buffered_body_bytes:
                self._abort(_busy())

        # llhttp treats the body of an upgrade request as the new protocol's
        # bytes and would hand us an empty body.
        if has_body and "upgrade" in headers and "upgrade" in headers.get("connection", "").lower():
            self._abort(_bad("Upgrade requests with a body are not supported"))

        expect = headers.get("expect")
        if expect is not None:
            if expect.lower() != "100-continue":
                self._abort(
                    HelixError(
                        ErrorKind.INVALID_REQUEST,
                        "Unsupported Expect header",
                        status=417,
                        code="expectation_failed",
                    )
                )
            if has_body and version == "1.1":
                # Over-limit bodies were answered 413 above, without reading.
                # Writing 100 now while an earlier pipelined response is in
                # flight would corrupt it, so then it waits for the pipeline.
                if self._current is None and not self._queue:
                    self.transport.write(CONTINUE_100)
                else:
                    self._continue_pending = True
        self._pstate = _P_BODY

    def _split_non_origin(self, url: bytes) -> bytes:
        if url == b"*":
            return url
        # absolute-form (proxies, some clients): keep only path and query.
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            self._abort(_bad("Invalid request target"))
        path = parsed.path or b"/"
        return path + b"?" + parsed.query if parsed.query else path

    def on_body(self, body: bytes) -> None:
        size = len(body)
        n = self._body_len + size
        limits = self._limits
        if n > limits.max_body_bytes:
            # Only reachable for chunked bodies: Content-Length was checked up front.
            self._abort(HelixError(ErrorKind.PAYLOAD_TOO_LARGE, "Request body too large"))
        server = self._server
        if server.buffered + size > limits.max_buffered_body_bytes:
            # Bodies arriving together went past the worker's budget (each one
            # was admitted on its own): the one that crosses it is refused.
            self._abort(_busy())
        server.buffered += size
        self._held += size
        self._body_len = n
        if self._body is None:
            self._body = [body]
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        # A deferred "100 Continue" is moot once the whole body is here.
        self._continue_pending = False
        parts = self._body
        if parts is None:
            body = b""
        elif len(parts) == 1:
            body = parts[0]
        else:
            body = b"".join(parts)
        request = Request(
            self._method,
            self._path,
            self._query,
            self._headers,
            body,
            self._version,
            self._client if self._peer_read else self,
            self._keep_alive,
        )
        self._nrequests += 1
        started = self._loop.time() if self._access_log is not None else 0.0
        exchange = Exchange(self, request, started)
        if not self._keep_alive or self.closing:
            # Nothing after a "close" request will be answered; stop parsing.
            self._dead = True
        self._pstate = _P_IDLE
        self._reset_message()
        self._enqueue(exchange)

    def _abort(self, err: HelixError) -> None:
        self._reject = err
        raise _Abort(err.message)

    # ==================================================================
    # pipeline
    # ==================================================================
    def _enqueue(self, exchange: Exchange) -> None:
        if self._current is None and not self._queue:
            self._start(exchange)
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(exchange)
        if len(queue) > self._limits.max_pipelined:
            self._pause_reading()

    def _start(self, exchange: Exchange) -> None:
        self._current = exchange
        self._server.requests_total += 1
        reject = exchange._reject
        if reject is not None:
            # The server answers this slot itself and the connection ends.
            self.closing = True
            exchange.respond_error(reject)
            self._current = None
            return
        self._server.active += 1
        waiter = self._waiter
        if waiter is not None:
            # The connection's task is waiting for its next request: hand it over.
            self._waiter = None
            waiter.set_result(exchange)
        elif self._task is None:
            # asyncio.Task directly: uvloop's create_task adds a Python-level wrapper and
            # the Task would format a fresh "Task-N" name for every task.
            self._task = _Task(self._serve(exchange), loop=self._loop, name=_TASK_NAME)
        else:
            # Called by _handler_finished, inside the task: the next pipelined request.
            self._next = exchange

    async def _serve(self, exchange: Exchange) -> None:
        """Run the connection's requests one after another in one task, which waits for
        the next request between them and ends with the connection.  A task per request
        cost its creation, asyncio's registration of it (a WeakSet: two Python frames in
        3.11) and its teardown, ≈ 3,900 instructions a request."""
        try:
            while True:
                try:
                    await self._handler(exchange)
                except asyncio.CancelledError:
                    # Client gone, or shutdown ran out of time: whatever was written
                    # must not look like a complete response.
                    if not exchange.finished:
                        self._abort_transport()
                except HelixError as err:
                    self._handler_failed(exchange, err)
                except Exception:
                    logger.exception(
                        "handler failed for %s %s", exchange.request.method,
                        exchange.request.path
                    )
                    self._handler_failed(exchange, None)
                else:
                    if not exchange.committed:
                        logger.error(
                            "handler returned without responding for %s %s",
                            exchange.request.method,
                            exchange.request.path,
                        )
                        self._handler_failed(exchange, None)
                    elif not exchange.finished:
                        logger.error(
                            "handler returned with an unfinished stream for %s %s",
                            exchange.request.method,
                            exchange.request.path,
                        )
                        self._abort_transport()
                finally:
                    self._handler_finished()
                exchange = self._next
                if exchange is not None:  # a pipelined request, started by _handler_finished
                    self._next = None
                    continue
                if self.lost or self.closing or self._dead:
                    return  # no request can follow
                waiter = self._waiter = self._loop.create_future()
                try:
                    exchange = await waiter
                except asyncio.CancelledError:  # shutdown ran out of time while idle
                    return
                if exchange is None:  # the connection ended (connection_lost)
                    return
        finally:
            self._waiter = None
            self._next = None
            self._task = None

    def _handler_failed(self, exchange: Exchange, err: HelixError | None) -> None:
        if exchange.committed:
            # Mid-response: the only honest signal left is a cut connection
            # (the client sees a truncated chunked body, never a fake success).
            if not exchange.finished:
                self._abort_transport()
            return
        if err is None:
            err = HelixError(ErrorKind.INTERNAL, "Internal server error")
        try:
            exchange.respond_error(err)
        except Exception:
            logger.exception("could not render error response")
            self._abort_transport()

    def _release(self, n: int) -> None:
        self._held -= n
        self._server.buffered -= n

    def _handler_finished(self) -> None:
        self._server.active -= 1
        current = self._current
        if current is not None and self._held:
            n = len(current.request.body)
            if n:
                self._release(min(n, self._held))
        self._current = None
        if self.lost or self.closing:
            return
        queue = self._queue
        while queue:
            nxt = queue.popleft()
            if not queue:
                # Drained: accept more input again.
                self._resume_reading()
            self._start(nxt)
            if self._current is not None or self.closing:
                return
        if self._continue_pending:
            # The request waiting for it is still mid-body (else the flag
            # would have been cleared at its message end).
            self._continue_pending = False
            self.transport.write(CONTINUE_100)
        self._arm_timer()

    def response_complete(self, exchange: Exchange) -> None:
        """Called by the exchange once its response was handed to the transport."""
        access_log = self._access_log
        if access_log is not None:
            try:
                access_log(
                    exchange,
                    exchange._status,
                    exchange._bytes,
                    self._loop.time() - exchange._started,
                )
            except Exception:
                logger.exception("access log callback failed")
        if not exchange._keep_alive or self.closing:
            self._close_after_response(exchange)

    def _close_after_response(self, exchange: Exchange) -> None:
        self.closing = True
        self._dead = True
        if self.lost:
            return
        self._queue = None
        # The client may still be sending (the rest of a refused request,
        # pipelined requests, stray bytes): linger so they do not turn the
        # close into an RST that destroys the response.  While the server
        # drains, a connection that sent nothing more is closed at once (a
        # client that keeps it open must not hold the shutdown for the linger).
        if (
            self.draining
            and exchange._reject is None
            and self._pstate == _P_IDLE
            and not self._extra
        ):
            self.transport.close()
        else:
            self._linger_close()

    def _linger_close(self) -> None:
        transport = self.transport
        if self._linger is not None:
            return
        self._body = None  # a refused body's parts are not needed any more
        if transport.can_write_eof():
            transport.write_eof()
            # Keep reading (and discarding, since _dead) so unread input does
            # not turn our close into an RST.
            self._resume_reading()
            self._linger = self._loop.call_later(_LINGER, transport.close)
        else:
            transport.close()

    def _fail(self, err: HelixError) -> None:
        """Answer a request the server rejects, in pipeline order, then close."""
        self._dead = True
        self._pause_reading()
        if self._body is not None:
            # A body refused part-way: its parts are freed (and no longer counted).
            self._release(min(self._body_len, self._held))
            self._body = None
        request = Request(
            self._method or "",
            self._path,
            self._query,
            self._headers,
            b"",
            self._version,
            self._client if self._peer_read else self,
            False,
        )
        exchange = Exchange(self, request, self._loop.time() if self._access_log else 0.0)
        exchange._reject = err
        self._enqueue(exchange)

    def _abort_transport(self) -> None:
        self.closing = True
        self._dead = True
        if not self.lost:
            self.transport.abort()

    # ==================================================================
    # shutdown (driven by Server)
    # ==================================================================
    def begin_shutdown(self) -> None:
        """Drain: answer what comes with "connection: close", then close.

        A busy connection finishes its response (possibly a long stream); if
        that response was committed with keep-alive, the connection is then
        idle.  Idle connections are closed after a short grace, during which a
        request the client was already sending is still served (with
        "connection: close") instead of being lost to a reset.
        """
        if self.lost or self.draining:
            return
        self.draining = True
        if self._current is None and self._pstate == _P_IDLE and not self._queue:
            self._timer_kind = _T_NONE  # re-arm with the drain grace
            self._arm_timer()

    def close_idle(self) -> None:
        """Close an idle keep-alive connection to make room for a new one."""
        if self.lost or self._current is not None or self._queue or self._pstate != _P_IDLE:
            return
        self.closing = True
        self._dead = True
        self.transport.close()

    def force_close(self) -> None:
        """Shutdown deadline passed: cancel the handler and drop the connection."""
        if self._task is not None:
            self._task.cancel()
        self._abort_transport()

    # ==================================================================
    # timeouts: one TimerHandle, lazily re-armed
    # ==================================================================
    def _arm_timer(self) -> None:
        if self._dead or self._current is not None or self._queue:
            kind = _T_NONE
        elif self._pstate == _P_IDLE:
            # The first request gets header_timeout from connection open.
            kind = _T_KEEPALIVE if self._nrequests else _T_HEADER
        elif self._pstate == _P_HEAD:
            kind = _T_HEADER
        else:
            kind = _T_BODY
        if kind == self._timer_kind:
            # Same phase as before: keep its original deadline (a slow-loris
            # client trickling bytes must not extend it).
            return
        if kind == _T_KEEPALIVE:
            self._server.idle[self] = None  # closed first when connections run out
        elif self._timer_kind == _T_KEEPALIVE:
            self._server.idle.pop(self, None)
        self._timer_kind = kind
        if kind == _T_NONE:
            # Leave any armed handle alone; it notices there is nothing to do.
            return
        limits = self._limits
        if kind == _T_KEEPALIVE:
            delay = _DRAIN_IDLE if self.draining else limits.keepalive_timeout
        elif kind == _T_HEADER:
            delay = limits.header_timeout
        else:
            delay = limits.body_timeout
        deadline = self._loop.time() + delay
        self._deadline = deadline
        timer = self._timer
        if timer is not None:
            if self._timer_at <= deadline:
                # Fires early, sees the later deadline, re-arms: one entry a
                # connection, not one per request of a busy connection.
                return
            self._timeouts.cancel(timer)
        self._timer_at = deadline
        self._timer = self._timeouts.add(deadline, self)

    def _on_timer(self) -> None:
        self._timer = None
        kind = self._timer_kind
        if kind == _T_NONE or self.lost:
            return
        now = self._loop.time()
        if now + 0.005 < self._deadline:
            self._timer_at = self._deadline
            self._timer = self._timeouts.add(self._deadline, self)
            return
        self._timer_kind = _T_NONE
        if kind == _T_KEEPALIVE:
            self._dead = True
            self.closing = True
            self.transport.close()
            return
        what = "header" if kind == _T_HEADER else "body"
        self._fail(HelixError(ErrorKind.REQUEST_TIMEOUT, f"Timed out reading request {what}"))
