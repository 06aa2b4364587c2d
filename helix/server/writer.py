"""Response bytes: status lines, the shared ``date:`` cache, head building, chunk framing.

Everything here is pure (no I/O) so it is cheap to test and cheap to call: the
per-response cost is a handful of dict lookups and one ``bytes.join``.
"""

from __future__ import annotations

import http
import time

from helix._fast import date_line as _date_line_of
from helix._fast import frame_chunk as _frame_chunk
from helix._fast import head as _head

__all__ = [
    "CHUNK_END",
    "CONTINUE_100",
    "build_head",
    "date_header",
    "frame_chunk",
    "status_line",
]

# Every status line is built once at import: formatting one per response would
# cost more than the whole rest of the head.  Unknown codes fall back to a
# reason-less line built on demand (and then memoised).
_STATUS_LINES: dict[int, bytes] = {
    int(s): b"HTTP/1.1 %d %s\r\n" % (int(s), s.phrase.encode("latin-1")) for s in http.HTTPStatus
}

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNK_END = b"0\r\n\r\n"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid HTTP status {status}")
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d \r\n" % status
    return line


# One ``date:`` line per second for the whole process (RFC 9110 asks for
# second resolution only).  A module-level cache is shared by every
# connection; checking ``int(time())`` is far cheaper than formatting.
_date_second = -1
_date_line = b""


def http_date(sec: float) -> str:
    """IMF-fixdate (RFC 9110 5.6.7), what ``email.utils.formatdate(usegmt=True)`` gives,
    without importing the email package into every worker: the date line's value."""
    return _date_line_of(int(sec))[6:-2].decode("ascii")


def date_header() -> bytes:
    """``b"date: <IMF-fixdate>\\r\\n"``, reformatted at most once per second."""
    global _date_second, _date_line
    now = time.time()
    sec = int(now)
    if sec != _date_second:
        _date_second = sec
        _date_line = _date_line_of(sec)
    return _date_line


def build_head(
    status: int,
    headers: list[tuple[bytes, bytes]],
    content_length: int | None,
    *,
    chunked: bool = False,
    close: bool = False,
    keep_alive_10: bool = False,
    server: bytes | None = None,
) -> bytes:
    """The complete response head, ending with the blank line.

    ``content_length`` None means "no content-length" (chunked, close-delimited
    or a 1xx/204/304 response).  ``keep_alive_10`` adds ``connection:
    keep-alive`` for an HTTP/1.0 client that asked to keep the connection.
    Framing headers in ``headers`` (content-length, transfer-encoding,
    connection, date, keep-alive) are dropped: the server owns them.  A CR or
    LF in a header name or value is ``ValueError`` (response splitting).  The
    bytes are assembled by ``helix._fast.head`` (compiled, or its twin).
    """
    line = _STATUS_LINES.get(status) or status_line(status)  # one call fewer for the usual codes
    return _head(line, date_header(), headers, content_length, chunked, close, keep_alive_10,
                 server)


# One chunk of a chunked body: hex length, CRLF, data, CRLF (one buffer); frame_chunk(data,
# True) adds the terminator.  Compiled in head_c (a C call per streamed chunk), else head_py.
frame_chunk = _frame_chunk
