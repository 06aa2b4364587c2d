# cython: annotation_typing=False
"""One request and its response: what a handler sees.

:class:`Request` is plain data.  :class:`Exchange` is the handler's only way to
answer; it frames the response (content-length, chunked or close-delimited)
and tells its connection when the response is complete so the connection
can decide about keep-alive, pipelining and access logging.
"""

from __future__ import annotations

from time import time as _time
from typing import TYPE_CHECKING

from helix._fast import head as _head
from helix.errors import HelixError
from helix.server.flow import ClientDisconnected
from helix.server.writer import _STATUS_LINES, CHUNK_END, date_header, frame_chunk, status_line

if TYPE_CHECKING:
    from helix.server.protocol import HttpProtocol

__all__ = ["ClientDisconnected", "Exchange", "RelaySink", "Request"]

# Response states.
_IDLE = 0
_STREAMING = 1
_DONE = 2

_JSON = (b"content-type", b"application/json")

# Above this size the head and body go out as two buffers in one
# ``writelines`` call instead of being concatenated: copying a multi-megabyte
# body to save a syscall is a bad trade.
_CONCAT_LIMIT = 16 * 1024

# The ``date:`` line as of ``_date_second`` (writer.date_header's, fetched once a second).
_date_second = -1
_date_line = b""


def _response_head(status, headers, length, chunked, close, keep_alive_10, server):
    """What :func:`helix.server.writer.build_head` answers, called without its keyword
    arguments and its two Python frames (compiled as exchange_c, this is a C function): the
    status line from the shared table, the date line re-fetched once a second, the bytes
    from ``helix._fast.head``."""
    global _date_second, _date_line
    sec = int(_time())
    if sec != _date_second:
        _date_line = date_header()
        _date_second = sec
    line = _STATUS_LINES.get(status)
    if line is None:
        line = status_line(status)
    return _head(line, _date_line, headers, length, chunked, close, keep_alive_10, server)


class Request:
    __slots__ = (
        "_client",
        "body",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "query",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        http_version: str,
        client,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.http_version = http_version
        # The address tuple, None, or the connection to ask (``peer()``) when something
        # reads it: most requests never do, and reading it costs a syscall.
        self._client = client
        self.keep_alive = keep_alive

    @property
    def client(self) -> tuple[str, int] | None:
        """The client's ``(host, port)``, or None when unknown."""
        client = self._client
        if client is None or type(client) is tuple:
            return client
        client = self._client = client.peer()
        return client

    @client.setter
    def client(self, value: tuple[str, int] | None) -> None:
        self._client = value

    def __repr__(self) -> str:
        q = f"?{self.query}" if self.query else ""
        return f"<Request {self.method} {self.path}{q} HTTP/{self.http_version}>"


class Exchange:
    """The handler's side of one request/response.

    Exactly one of :meth:`respond`, :meth:`respond_error` or
    :meth:`start_stream` (followed by :meth:`send`... and :meth:`end_stream`)
    may be used.  ``committed`` turns True once the response head is written;
    from then on a failure can only be signalled by cutting the connection.
    """

    __slots__ = (
        "_bytes",
        "_chunked",
        "_conn",
        "_keep_alive",
        "_reject",
        "_started",
        "_state",
        "_status",
        "committed",
        "request",
    )

    def __init__(self, conn: HttpProtocol, request: Request, started: float = 0.0) -> None:
        self._conn = conn
        self.request = request
        self.committed = False
        self._state = _IDLE
        self._status = 0
        self._bytes = 0
        self._chunked = False
        self._keep_alive = False
        # Set when the server itself must answer this slot in the pipeline
        # (malformed request, timeout): no handler runs for it.
        self._reject: HelixError | None = None
        self._started = started

    def __repr__(self) -> str:
        return f"<Exchange {self.request!r} status={self._status or '-'}>"

    # -- state --------------------------------------------------------------
    @property
    def client_gone(self) -> bool:
        return self._conn.lost

    @property
    def finished(self) -> bool:
        """True once the full response (including a stream's end) was handed off."""
        return self._state == _DONE

    @property
    def status(self) -> int:
        return self._status

    @property
    def bytes_sent(self) -> int:
        """Body bytes handed to the transport (excluding head and chunk framing)."""
        return self._bytes

    def _keep(self, status: int) -> bool:
        """Validate a new response; return whether the connection stays open.

        ``committed`` is only set once the head was built: a head that fails
        to build (bad header) leaves the exchange answerable with a 500.
        """
        if self.committed:
            raise RuntimeError("response already started")
        if status < 200:
            raise ValueError("1xx responses are sent by the server itself")
        keep = self.request.keep_alive and not self._conn.closing and not self._conn.draining
        self._keep_alive = keep
        return keep

    # -- complete responses ---------------------------------------------------
    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        keep = self._keep(status)
        conn = self._conn
        req = self.request
        if status == 204 or status == 304:
            # These never carry a body nor (for us) a content-length.
            body = b""
            length = None
        else:
            length = len(body)
            if req.method == "HEAD":
                body = b""
        head = _response_head(status, headers, length, False, not keep,
                              keep and req.http_version == "1.0", conn.server_header)
        self.committed = True
        self._status = status
        self._state = _DONE
        if not conn.lost:
            transport = conn.transport
            if not body:
                transport.write(head)
            elif len(body) <= _CONCAT_LIMIT:
                transport.write(head + body)
            else:
                transport.writelines((head, body))
        self._bytes = len(body)
        conn.response_complete(self)

    def respond_error(self, err: HelixError, body: bytes | None = None) -> None:
        """``err`` as a JSON answer: ``body`` as the client's API rendered it, else in
        OpenAI's shape (errors the server answers before any API is known)."""
        headers = [_JSON]
        if err.headers:
            headers.extend(err.headers)
        self.respond(err.status, headers, err.to_json() if body is None else body)

    # -- streaming responses ----------------------------------------------------
    def start_stream(
        self, status: int, headers: list[tuple[bytes, bytes]], first: bytes = b"",
        end: bool = False,
    ) -> None:
        """Send the head of a streamed response; ``first``, if given, goes in the
        same write as the head (one syscall and one packet for the first byte).
        ``end``: that was the whole stream (it came at once): the terminator goes in the
        same write too, and the stream is over (no :meth:`end_stream`)."""
        conn = self._conn
        req = self.request
        if req.http_version == "1.0":
            # HTTP/1.0 has no chunked coding: the body ends when we close.
            req.keep_alive = False
            self._keep(status)
            chunked = False
            head = _response_head(status, headers, None, False, True, False,
                                  conn.server_header)
        else:
            keep = self._keep(status)
            chunked = True
            head = _response_head(status, headers, None, True, not keep, False,
                                  conn.server_header)
        self.committed = True
        self._status = status
        self._chunked = chunked
        self._state = _STREAMING
        if first and req.method != "HEAD":
            head += frame_chunk(first) if chunked else first
            self._bytes += len(first)
        if end:
            self._state = _DONE
            if chunked and req.method != "HEAD":
                head += CHUNK_END
        if not conn.lost:
            conn.transport.write(head)
        if end:
            conn.response_complete(self)

    async def send(self, data: bytes) -> None:
        """Write one chunk; wait while the client is slow; raise if it is gone."""
        if self.push(data):
            await self._conn.drain()

    def push(self, data: bytes) -> bool:
        """Write one chunk without waiting (for a relay fed from an upstream read callback);
        raise if the client is gone.  True when the client is slow: wait for :meth:`drain`
        before the next."""
        if self._state != _STREAMING:
            raise RuntimeError("push() or send() without an open stream")
        conn = self._conn
        if conn.lost:
            raise ClientDisconnected()
        if not data:
            # An empty chunk would terminate the chunked body.
            return False
        if self.request.method != "HEAD":
            conn.transport.write(frame_chunk(data) if self._chunked else data)
            self._bytes += len(data)
        return conn.write_paused

    def drain(self):
        """An awaitable that returns once the client takes writes again (raises if it
        went away)."""
        return self._conn.drain()

    def end_stream(self, last: bytes = b"") -> None:
        """End the stream; ``last``, if given, is its final chunk, written in the same
        write as the terminator (one syscall).  Raises :class:`ClientDisconnected` (the
        stream still ends) when there was a ``last`` and the client is gone, as
        :meth:`send` would."""
        if self._state != _STREAMING:
            raise RuntimeError("end_stream() without an open stream")
        self._state = _DONE
        conn = self._conn
        gone = conn.lost
        if not gone and self.request.method != "HEAD":
            if self._chunked:
                conn.transport.write(frame_chunk(last, True) if last else CHUNK_END)
            elif last:
                conn.transport.write(last)
            self._bytes += len(last)
        conn.response_complete(self)
        if gone and last:
            raise ClientDisconnected()


class RelaySink:
    """A streamed answer's relay as its upstream connection's sink: called with each read's
    body (``sink(data, end)``, from the connection's read callback), it feeds the relay and
    pushes what the relay gives back to the client.  True means the client is slow (wait for
    :meth:`Exchange.drain`).  The upstream's end arriving with bytes: they are kept in
    ``last``, for one write with the terminator.  ``out``: the last bytes relayed (the separator
    before an error event).  ``capture``: the cache's list, or None.  Compiled as
    ``exchange_c``, a call costs no Python frame."""

    __slots__ = ("capture", "exchange", "feed", "last", "out")

    def __init__(self, exchange, feed, capture, out: bytes) -> None:
        self.exchange = exchange
        self.feed = feed
        self.capture = capture
        self.out = out
        self.last = b""

    def __call__(self, data: bytes, end: bool) -> bool:
        data = self.feed(data)
        if not data:
            return False
        self.out = data
        if end:
            self.last = data
            return False
        if self.capture is not None:
            self.capture.append(data)
        return self.exchange.push(data)
