"""Sans-IO harness: a fake transport and helpers to drive HttpProtocol with raw bytes."""

from __future__ import annotations

import asyncio
import re

import msgspec

from helix.server.protocol import HttpProtocol
from helix.server.server import Server, ServerLimits


class MockTransport(asyncio.Transport):
    """Collects writes; records pause/resume/close; flow control is driven by the test."""

    def __init__(self, peer=("127.0.0.1", 50000)) -> None:
        super().__init__()
        self.protocol: HttpProtocol | None = None
        self.chunks: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.reading = True
        self.pause_calls = 0
        self.peer = peer
        self.asked: list[str] = []  # get_extra_info names, in order
        self.limits: tuple[int, int] | None = None
        # When set, every write "fills the buffer": the protocol is told to
        # pause writing, as a real transport does above the high-water mark.
        self.pause_on_write = False

    # -- asyncio.Transport -------------------------------------------------
    def write(self, data) -> None:
        assert not self.eof_written, "write after write_eof"
        self.chunks.append(bytes(data))
        if self.pause_on_write and self.protocol is not None:
            self.protocol.pause_writing()

    def writelines(self, list_of_data) -> None:
        self.chunks.append(b"".join(bytes(d) for d in list_of_data))

    def get_extra_info(self, name, default=None):
        self.asked.append(name)
        if self.closed and name == "peername":
            return None  # a transport that no longer knows it (uvloop keeps it; others may not)
        return {"peername": self.peer, "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self._lose()

    def abort(self) -> None:
        self.aborted = True
        self._lose()

    def _lose(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                # Real transports call connection_lost on a later iteration.
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    self.protocol.connection_lost(None)
                else:
                    loop.call_soon(self.protocol.connection_lost, None)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        assert self.reading, "double pause"
        self.reading = False
        self.pause_calls += 1

    def resume_reading(self) -> None:
        assert not self.reading, "double resume"
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.limits = (high, low)

    def get_write_buffer_size(self) -> int:
        return 0

    # -- test helpers ----------------------------------------------------
    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def clear(self) -> None:
        self.chunks.clear()


def make_conn(handler, limits: ServerLimits | None = None, loop=None, **kw):
    """A connected (protocol, transport, server) triple."""
    if loop is None:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    server = Server(handler, limits or ServerLimits(), loop=loop, **kw)
    proto = HttpProtocol(server)
    transport = MockTransport()
    transport.protocol = proto
    proto.connection_made(transport)
    return proto, transport, server


class Response(msgspec.Struct):
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        vals = [v for k, v in self.headers if k == name]
        return ", ".join(vals) if vals else None

    def json(self):
        return msgspec.json.decode(self.body)


_STATUS_RE = re.compile(rb"HTTP/1\.1 (\d{3}) ?([^\r\n]*)\r\n")


def parse_responses(data: bytes, *, head_request: bool = False) -> list[Response]:
    """Strictly split a byte stream into responses (content-length, chunked or to-EOF)."""
    out: list[Response] = []
    pos = 0
    while pos < len(data):
        m = _STATUS_RE.match(data, pos)
        assert m, f"bad status line at {pos}: {data[pos : pos + 60]!r}"
        status = int(m.group(1))
        end = data.index(b"\r\n\r\n", pos)
        lines = data[m.end() : end].split(b"\r\n") if end > m.end() - 2 else []
        headers = []
        for line in lines:
            if not line:
                continue
            k, _, v = line.partition(b":")
            headers.append((k.decode().lower(), v.strip().decode("latin-1")))
        pos = end + 4
        names = [k for k, _ in headers]
        if status < 200:
            out.append(Response(status, m.group(2).decode(), headers, b""))
            continue
        cl = [v for k, v in headers if k == "content-length"]
        te = [v for k, v in headers if k == "transfer-encoding"]
        assert len(cl) <= 1 and not (cl and te), headers
        assert names.count("date") == 1, headers
        if head_request or status in (204, 304):
            body = b""
        elif cl:
            n = int(cl[0])
            body = data[pos : pos + n]
            assert len(body) == n, "truncated body"
            pos += n
        elif te:
            assert te == ["chunked"]
            parts = []
            while True:
                eol = data.index(b"\r\n", pos)
                size = int(data[pos:eol], 16)
                pos = eol + 2
                if size == 0:
                    assert data[pos : pos + 2] == b"\r\n"
                    pos += 2
                    break
                parts.append(data[pos : pos + size])
                assert data[pos + size : pos + size + 2] == b"\r\n"
                pos += size + 2
            body = b"".join(parts)
        else:
            body = data[pos:]
            pos = len(data)
        out.append(Response(status, m.group(2).decode(), headers, body))
    return out


def one_response(transport: MockTransport) -> Response:
    rs = parse_responses(transport.data)
    assert len(rs) == 1, rs
    return rs[0]
