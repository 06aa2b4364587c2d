"""A response head's bytes from its parts: the pure-Python twin of head_c.pyx.

``head(status_line, date_line, headers, content_length, chunked, close, keep_alive_10,
server)`` is :func:`helix.server.writer.build_head` after its two cached lines are
looked up: the caller's header lines (framing headers dropped: the server owns them),
then the framing, then the blank line, as one ``bytes``.  A CR or LF in a header name
or value is response splitting: ``ValueError``.
"""

from __future__ import annotations

import time

__all__ = [
    "RESERVED",
    "crlf",
    "date_line",
    "frame_chunk",
    "head",
    "length_line",
    "pick_headers",
    "split_target",
]

# Framing headers are owned by the server: a handler (or an upstream header passed
# through) must never emit a second content-length or a transfer-encoding that
# disagrees with how the body is actually framed -- response smuggling toward whatever
# proxy sits in front of us.
RESERVED = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"date", b"keep-alive"}
)

_CRLF = b"\r\n"
_CHUNK_END = b"0\r\n\r\n"
_CONN_CLOSE = b"connection: close\r\n"
_CONN_KEEP_ALIVE = b"connection: keep-alive\r\n"
_TE_CHUNKED = b"transfer-encoding: chunked\r\n"


def head(
    status_line: bytes,
    date_line: bytes,
    headers,
    content_length,
    chunked: bool,
    close: bool,
    keep_alive_10: bool,
    server,
) -> bytes:
    parts = [status_line, date_line]
    if server is not None:
        parts.append(b"server: " + server + _CRLF)
    n = 0
    for name, value in headers:
        if name in RESERVED:
            continue
        parts.append(b"%b: %b\r\n" % (name, value))
        n += 1
    if n:
        # Response splitting guard: each header line must contain exactly one CR and
        # one LF (its terminator).  Two C-level scans over the joined block are
        # cheaper than checking every value in Python.
        block = b"".join(parts[-n:])
        if block.count(b"\n") != n or block.count(b"\r") != n:
            raise ValueError("CR/LF in response header")
    if content_length is not None:
        parts.append(b"content-length: %d\r\n" % content_length)
    elif chunked:
        parts.append(_TE_CHUNKED)
    if close:
        parts.append(_CONN_CLOSE)
    elif keep_alive_10:
        parts.append(_CONN_KEEP_ALIVE)
    parts.append(_CRLF)
    return b"".join(parts)


def pick_headers(kinds, classify, rid, upstream, route, own=frozenset()):
    """A provider's response headers as the client gets them (``helix/phases/forward.py``
    says which): each name's kind from ``kinds`` (else ``classify(name)``, which may
    remember it there), 1 kept, 2 the provider's request id, sent as ``rid`` (and under its
    own name too when in ``own``), anything else dropped; then ``route``."""
    out = []
    for k, v in upstream:
        kind = kinds.get(k)
        if kind is None:
            kind = classify(k)
        if kind == 1:
            out.append((k, v))
        elif kind == 2:
            out.append((rid, v))
            if k in own:
                out.append((k, v))
    out.extend(route)
    return out


def frame_chunk(data, end=False):
    """One chunk of a chunked body: hex length, CRLF, data, CRLF (one buffer); with ``end``
    the terminating zero-length chunk follows in the same buffer."""
    out = b"%x\r\n%b\r\n" % (len(data), data)
    return out + _CHUNK_END if end else out


def crlf(a: bytes, b: bytes) -> bool:
    """Whether ``a`` or ``b`` holds a CR or an LF (an upstream request line's method and
    target: helix/client/pool.py _build_head).  ``find``, not ``in``: ``bytes in bytes``
    first tries the needle as an int and formats a TypeError for it."""
    return a.find(b"\r") >= 0 or a.find(b"\n") >= 0 or b.find(b"\r") >= 0 or b.find(b"\n") >= 0


def http11_line(data: bytes) -> bool:
    """Whether ``data``'s first line ends in `` HTTP/1.1`` and CRLF: a request line that
    llhttp parses as HTTP/1.1 when ``data`` starts a message (helix/server/protocol.py
    data_received), which spares httptools' ``get_http_version`` (≈ 1,900 instructions)
    for a request that carries a Connection header.  False for anything else (no line
    end in ``data`` yet, a bare LF, another version): the caller then asks the parser."""
    end = data.find(b"\n")
    return end >= 10 and data[end - 10 : end + 1] == b" HTTP/1.1\r\n"


def split_target(url: bytes) -> tuple[str, str]:
    """An origin-form request target's path and query as latin-1 text, the fragment (from
    the first ``#``) dropped, the query after the first ``?`` (``""`` without one); no
    percent-decoding (helix/server/protocol.py on_headers_complete)."""
    hash_at = url.find(b"#")
    if hash_at >= 0:
        url = url[:hash_at]
    q = url.find(b"?")
    if q < 0:
        return url.decode("latin-1"), ""
    return url[:q].decode("latin-1"), url[q + 1 :].decode("latin-1")


def length_line(n: int) -> bytes:
    """The end of a request head with a body of ``n`` bytes: ``content-length: <n>``, CRLF, and
    the blank line (helix/client/pool.py _build_head)."""
    return b"content-length: %d\r\n\r\n" % n


_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
    b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
)  # fmt: skip


def date_line(sec):
    """The response's ``date:`` line for the integer second ``sec``: ``b"date: "``, the
    IMF-fixdate of RFC 9110 5.6.7 (what ``email.utils.formatdate(sec, usegmt=True)``
    gives), CRLF. Formatted once a second by the server (helix/server/writer.py)."""
    t = time.gmtime(sec)
    return b"date: %b, %02d %b %04d %02d:%02d:%02d GMT\r\n" % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
        t.tm_hour, t.tm_min, t.tm_sec,
    )  # fmt: skip
