"""AWS event-stream framing (``application/vnd.amazon.eventstream``), incremental.

One message on the wire::

    total_length:u32  headers_length:u32  prelude_crc:u32   (CRC32 of the first 8 bytes)
    headers (headers_length bytes)
    payload (total_length - headers_length - 16 bytes)
    message_crc:u32                                          (CRC32 of everything before it)

A header is ``name_len:u8 name type:u8 value``; value types: 0 true, 1 false,
2 int8, 3 int16, 4 int32, 5 int64, 6 bytes (u16 length), 7 string (u16
length, UTF-8), 8 timestamp (int64 ms), 9 UUID (16 bytes) -- decoded to the
same Python values botocore's decoder produces.

:class:`EventStreamDecoder` takes the stream in slices of any size and returns
the messages each slice completed; any framing or CRC error raises
``HelixError(UPSTREAM_PROTOCOL)`` (the stream is corrupt: nothing after it is
trusted).  :func:`encode_message` builds frames (the mock provider and tests).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple
from zlib import crc32

from helix.errors import ErrorKind, HelixError

__all__ = ["EventStreamDecoder", "Message", "encode_message"]

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_MAX_HEADERS = 128 * 1024
_MAX_PAYLOAD = 24 * 1024 * 1024
_FIXED = {2: struct.Struct(">b"), 3: struct.Struct(">h"), 4: struct.Struct(">i"),
          5: struct.Struct(">q"), 8: struct.Struct(">q")}


class Message(NamedTuple):
    headers: dict[str, Any]
    payload: bytes


def _corrupt(message: str) -> HelixError:
    return HelixError(
        ErrorKind.UPSTREAM_PROTOCOL, f"corrupt AWS event stream from the provider: {message}"
    )


def _parse_headers(buf: bytes | bytearray, pos: int, end: int) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    while pos < end:
        nlen = buf[pos]
        pos += 1
        if pos + nlen + 1 > end:
            raise _corrupt("header name runs past the header block")
        name = bytes(buf[pos : pos + nlen]).decode("utf-8", "replace")
        pos += nlen
        htype = buf[pos]
        pos += 1
        value: Any
        if htype == 0:
            value = True
        elif htype == 1:
            value = False
        elif htype in _FIXED:
            st = _FIXED[htype]
            if pos + st.size > end:
                raise _corrupt(f"header {name!r} value runs past the header block")
            value = st.unpack_from(buf, pos)[0]
            pos += st.size
        elif htype == 6 or htype == 7:
            if pos + 2 > end:
                raise _corrupt(f"header {name!r} length runs past the header block")
            vlen = _U16.unpack_from(buf, pos)[0]
            pos += 2
            if pos + vlen > end:
                raise _corrupt(f"header {name!r} value runs past the header block")
            raw = bytes(buf[pos : pos + vlen])
            pos += vlen
            if htype == 7:
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise _corrupt(f"header {name!r} is not UTF-8") from None
            else:
                value = raw
        elif htype == 9:
            if pos + 16 > end:
                raise _corrupt(f"header {name!r} value runs past the header block")
            value = bytes(buf[pos : pos + 16])
            pos += 16
        else:
            raise _corrupt(f"unknown header value type {htype}")
        if name in headers:
            raise _corrupt(f"duplicate header {name!r}")
        headers[name] = value
    return headers


class EventStreamDecoder:
    """Bytes in any slicing -> whole :class:`Message` objects, CRC-checked.

    The buffer keeps only the unconsumed tail; the prelude of a partial
    message is checked once it has arrived, so garbage fails fast instead of
    waiting for a bogus length worth of bytes.
    """

    __slots__ = ("_buf", "_checked")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._checked = False  # prelude of the message at the buffer start already verified

    @property
    def pending(self) -> int:
        """Bytes held of a message not complete yet (0 at a message boundary)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        out: list[Message] = []
        view = memoryview(buf)
        try:
            while n - pos >= 12:
                total, hlen, pcrc = _PRELUDE.unpack_from(buf, pos)
                if not self._checked:
                    if crc32(view[pos : pos + 8]) != pcrc:
                        raise _corrupt("prelude CRC mismatch")
                    if hlen > _MAX_HEADERS:
                        raise _corrupt(f"headers length {hlen} over the limit")
                    if total < 16 or hlen > total - 16:
                        raise _corrupt(f"impossible lengths (total {total}, headers {hlen})")
                    if total - hlen - 16 > _MAX_PAYLOAD:
                        raise _corrupt(f"payload length {total - hlen - 16} over the limit")
                    self._checked = True
                if n - pos < total:
                    break
                end = pos + total - 4
                if crc32(view[pos:end]) != _U32.unpack_from(buf, end)[0]:
                    raise _corrupt("message CRC mismatch")
                hstart = pos + 12
                headers = _parse_headers(buf, hstart, hstart + hlen) if hlen else {}
                out.append(Message(headers, bytes(view[hstart + hlen : end])))
                pos += total
                self._checked = False
        finally:
            view.release()
        if pos:
            del buf[:pos]
        return out


def _encode_header(name: str, value: Any) -> bytes:
    bname = name.encode("utf-8")
    head = bytes((len(bname),)) + bname
    if isinstance(value, tuple):  # (type code, value): explicit type for ints and timestamps
        htype, value = value
    elif isinstance(value, bool):
        htype = 0 if value else 1
    elif isinstance(value, int):
        htype = 4
    elif isinstance(value, (bytes, bytearray)):
        htype = 6
    else:
        htype = 7
    if htype in (0, 1):
        return head + bytes((htype,))
    if htype in _FIXED:
        return head + bytes((htype,)) + _FIXED[htype].pack(value)
    if htype == 9:
        return head + b"\x09" + bytes(value)
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return head + bytes((htype,)) + _U16.pack(len(raw)) + raw


def encode_message(headers: dict[str, Any], payload: bytes) -> bytes:
    """One framed message.  Header values: bool, int (int32), bytes, str, or (type, value)."""
    hblock = b"".join(_encode_header(k, v) for k, v in headers.items())
    total = 16 + len(hblock) + len(payload)
    prelude = struct.pack(">II", total, len(hblock))
    prelude += _U32.pack(crc32(prelude))
    body = prelude + hblock + payload
    return body + _U32.pack(crc32(body))
