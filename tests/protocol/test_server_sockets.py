"""The Server on a real listening socket (uvloop), exercised with raw sockets and
with h11 as an independent, strict HTTP/1.1 client.  Every wait has a timeout."""

from __future__ import annotations

import asyncio
import socket

import h11
import msgspec

from helix.errors import ErrorKind, HelixError
from helix.server import ClientDisconnected, Server, ServerLimits

WAIT = 5.0


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def start(handler, **limits) -> tuple[Server, int]:
    server = Server(handler, ServerLimits(**limits))
    sock = listening_socket()
    await server.start(sock)
    return server, sock.getsockname()[1]


class H11Client:
    """A minimal async client on top of h11.Connection(h11.CLIENT)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> H11Client:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
        return cls(reader, writer)

    async def send_request(self, method: str, target: str, body: bytes = b"", headers=()):
        hdrs = [("host", "test"), *headers]
        if body or method == "POST":
            hdrs.append(("content-length", str(len(body))))
        out = self.conn.send(h11.Request(method=method, target=target, headers=hdrs))
        if body:
            out += self.conn.send(h11.Data(data=body))
        out += self.conn.send(h11.EndOfMessage())
        self.writer.write(out)
        await asyncio.wait_for(self.writer.drain(), WAIT)

    async def next_event(self):
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(self.reader.read(65536), WAIT)
                self.conn.receive_data(data)
                continue
            return event

    async def read_response(self) -> tuple[h11.Response, list[bytes]]:
        response = await self.next_event()
        assert isinstance(response, h11.Response), response
        chunks = []
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return response, chunks
            else:
                raise AssertionError(event)

    async def request(self, method: str, target: str, body: bytes = b"", headers=()):
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        await self.send_request(method, target, body, headers)
        response, chunks = await self.read_response()
        return response, b"".join(chunks)

    async def at_eof(self) -> bool:
        data = await asyncio.wait_for(self.reader.read(65536), WAIT)
        return data == b""

    def close(self) -> None:
        self.writer.close()


def header(response: h11.Response, name: bytes) -> bytes | None:
    for k, v in response.headers:
        if k == name:
            return v
    return None


async def app(ex) -> None:
    r = ex.request
    if r.path == "/json":
        payload = msgspec.json.decode(r.body)
        ex.respond(200, [(b"content-type", b"application/json")], msgspec.json.encode(payload))
    elif r.path == "/stream":
        n = int(r.query.partition("=")[2] or 5)
        ex.start_stream(200, [(b"content-type", b"text/event-stream")])
        for i in range(n):
            await ex.send(b"data: %d\n\n" % i)
            await asyncio.sleep(0.01)
        ex.end_stream()
    elif r.path == "/big":
        ex.start_stream(200, [])
        block = bytes(range(256)) * 256  # 64 KiB
        for _ in range(64):
            await ex.send(block)
        ex.end_stream()
    elif r.path == "/error":
        raise HelixError(ErrorKind.MODEL_NOT_FOUND, "no such model", param="model")
    else:
        ex.respond(200, [(b"content-type", b"text/plain")], b"hello " + r.path.encode())


async def test_raw_socket_get_and_keepalive():
    server, port = await start(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path in (b"/a", b"/b"):
            writer.write(b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % path)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"content-length: 8\r\n" in head
            body = await asyncio.wait_for(reader.readexactly(8), WAIT)
            assert body == b"hello " + path
        assert server.connections == 1
    finally:
        writer.close()
        await server.shutdown(1.0)


async def test_raw_socket_pipelined_burst():
    server, port = await start(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(50)))
        writer.write(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), WAIT)  # server closes after /last
        bodies = [part.split(b"\r\n\r\n", 1)[1] for part in data.split(b"HTTP/1.1 ")[1:]]
        assert bodies == [b"hello /%d" % i for i in range(50)] + [b"hello /last"]
    finally:
        writer.close()
        await server.shutdown(1.0)


async def test_h11_json_and_errors_keepalive():
    server, port = await start(app)
    client = await H11Client.connect(port)
    try:
        resp, body = await client.request("POST", "/json", b'{"model":"m","n":[1,2]}')
        assert resp.status_code == 200
        assert msgspec.json.decode(body) == {"model": "m", "n": [1, 2]}
        assert header(resp, b"date") is not None

        resp, body = await client.request("GET", "/error")
        assert resp.status_code == 404
        assert msgspec.json.decode(body) == {
            "error": {
                "message": "no such model",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
        }
        resp, body = await client.request("GET", "/again")
        assert body == b"hello /again"
        assert server.connections == 1
    finally:
        client.close()
        await server.shutdown(1.0)


async def test_h11_streamed_chunked_response():
    server, port = await start(app)
    client = await H11Client.connect(port)
    try:
        await client.send_request("GET", "/stream?n=6")
        resp, chunks = await client.read_response()
        assert resp.status_code == 200
        assert header(resp, b"transfer-encoding") == b"chunked"
        assert b"".join(chunks) == b"".join(b"data: %d\n\n" % i for i in range(6))
        # still keep-alive afterwards
        resp, body = await client.request("GET", "/after")
        assert body == b"hello /after"
    finally:
        client.close()
        await server.shutdown(1.0)


async def test_h11_large_stream_with_slow_reader():
    server, port = await start(app, write_high_water=64 * 1024, write_low_water=16 * 1024)
    client = await H11Client.connect(port)
    try:
        await client.send_request("GET", "/big")
        await asyncio.sleep(0.2)  # let the server hit the high-water mark
        _resp, chunks = await client.read_response()
        body = b"".join(chunks)
        assert len(body) == 64 * 64 * 1024
        assert body == (bytes(range(256)) * 256) * 64
    finally:
        client.close()
        await server.shutdown(1.0)


async def test_graceful_shutdown_finishes_inflight_stream():
    server, port = await start(app)
    streamer = await H11Client.connect(port)
    idle = await H11Client.connect(port)
    try:
        resp, _ = await idle.request("GET", "/warm")  # now an idle keep-alive connection
        assert resp.status_code == 200
        await streamer.send_request("GET", "/stream?n=20")
        first = await streamer.next_event()
        assert isinstance(first, h11.Response)
        assert server.active_requests == 1

        shutdown = asyncio.create_task(server.shutdown(5.0))
        assert await idle.at_eof()  # idle connection closed right away

        chunks = []
        while True:
            event = await streamer.next_event()
            if isinstance(event, h11.EndOfMessage):
                break
            chunks.append(bytes(event.data))
        assert b"".join(chunks) == b"".join(b"data: %d\n\n" % i for i in range(20))
        assert await streamer.at_eof()  # closed after the stream completed
        await asyncio.wait_for(shutdown, WAIT)
        assert server.connections == 0
        assert server.active_requests == 0
        # the listener is gone
        try:
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
        except OSError:
            pass
        else:
            raise AssertionError("listener still accepting")
    finally:
        streamer.close()
        idle.close()


async def test_shutdown_marks_uncommitted_response_connection_close():
    gate = asyncio.Event()

    async def handler(ex):
        await gate.wait()
        ex.respond(200, [], b"done")

    server, port = await start(handler)
    client = await H11Client.connect(port)
    try:
        await client.send_request("GET", "/wait")
        for _ in range(50):
            if server.active_requests:
                break
            await asyncio.sleep(0.01)
        shutdown = asyncio.create_task(server.shutdown(5.0))
        await asyncio.sleep(0.05)
        gate.set()
        resp, chunks = await client.read_response()
        assert b"".join(chunks) == b"done"
        assert header(resp, b"connection") == b"close"
        await asyncio.wait_for(shutdown, WAIT)
    finally:
        client.close()


async def test_shutdown_timeout_cancels_endless_stream():
    cancelled = asyncio.Event()

    async def handler(ex):
        ex.start_stream(200, [])
        try:
            while True:
                await ex.send(b"tick")
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server, port = await start(handler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        await asyncio.wait_for(server.shutdown(0.2), WAIT)
        await asyncio.wait_for(cancelled.wait(), WAIT)
        assert server.connections == 0
        try:
            rest = await asyncio.wait_for(reader.read(), WAIT)
        except ConnectionResetError:
            rest = b""
        assert not rest.endswith(b"0\r\n\r\n")  # truncated, never a fake success
    finally:
        writer.close()


async def test_client_disconnect_cancels_handler_over_socket():
    started = asyncio.Event()
    outcome = asyncio.Future()

    async def handler(ex):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.set_result("cancelled")
            raise

    server, port = await start(handler)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        await asyncio.wait_for(started.wait(), WAIT)
        writer.close()
        assert await asyncio.wait_for(outcome, WAIT) == "cancelled"
    finally:
        await server.shutdown(1.0)


async def test_streaming_handler_sees_client_disconnected():
    outcome = asyncio.Future()

    async def handler(ex):
        ex.start_stream(200, [])
        try:
            while True:
                await ex.send(b"x" * 65536)
        except ClientDisconnected:
            outcome.set_result("disconnected")
        except asyncio.CancelledError:
            outcome.set_result("cancelled")
            raise

    server, port = await start(handler)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        writer.transport.abort()
        assert await asyncio.wait_for(outcome, WAIT) in ("disconnected", "cancelled")
    finally:
        await server.shutdown(1.0)


async def test_oversize_body_gets_413_over_socket():
    server, port = await start(app, max_body_bytes=1024)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        writer.write(b"x" * 100000)  # the server never reads this; lingering close saves us
        data = await asyncio.wait_for(reader.read(), WAIT)
        assert data.startswith(b"HTTP/1.1 413 ")
        assert b'"code":"request_too_large"' in data
        assert b"connection: close" in data
    finally:
        writer.close()
        await server.shutdown(1.0)


async def test_malformed_over_socket_is_400_and_closed():
    server, port = await start(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        data = await asyncio.wait_for(reader.read(), WAIT)
        assert data.startswith(b"HTTP/1.1 400 ")
        assert b'"code":"malformed_request"' in data
    finally:
        writer.close()
        await server.shutdown(1.0)


async def test_header_timeout_over_socket():
    server, port = await start(app, header_timeout=0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost")
        data = await asyncio.wait_for(reader.read(), WAIT)
        assert data.startswith(b"HTTP/1.1 408 ")
    finally:
        writer.close()
        await server.shutdown(1.0)


async def test_gc_threshold_follows_the_connection_count():
    # The young-generation threshold scales with open connections (so collections under
    # load do not rescan every live request again and again) and is the process's own again
    # once they are gone (helix/server/memory.py, GcPacer).
    import gc

    from helix.server.memory import GC_PER_CONNECTION

    base = gc.get_threshold()
    server, port = await start(app)
    n = 3 * base[0] // GC_PER_CONNECTION
    conns = []
    try:
        for _ in range(n):
            conns.append(await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT))
        for _ in range(100):  # connection_made runs on the server's side of the loop
            if server.connections == n:
                break
            await asyncio.sleep(0.01)
        assert server.connections == n
        t0, t1, t2 = gc.get_threshold()
        assert t0 >= GC_PER_CONNECTION * n // 2 > base[0]
        assert (t1, t2) == base[1:]
        for _, writer in conns:
            writer.close()
        for _ in range(200):
            if server.connections == 0:
                break
            await asyncio.sleep(0.01)
        assert server.connections == 0
        assert gc.get_threshold() == base
    finally:
        for _, writer in conns:
            writer.close()
        await server.shutdown(1.0)
        gc.set_threshold(*base)
