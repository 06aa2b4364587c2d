"""A streamed answer relayed through a running Helix to a client that stops reading.

The relay runs in the upstream connection's read callback (UpstreamResponse.push): when the
client's socket fills, Helix must stop reading upstream (so the provider's writes block)
instead of buffering the rest of the stream, then pass every byte on once the client reads
again.  A client that hangs up mid-stream must close the upstream connection.  The upstream
here is a plain socket server speaking OpenAI's chunked SSE, counting what it got to send."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.helpers import HelixProcess

CHUNK_TEXT = "x" * 8000
CHUNKS = 8000  # 64 MB of events: far more than every buffer on the way can hold


def _event() -> bytes:
    payload = {"id": "chatcmpl-bp", "object": "chat.completion.chunk", "created": 1,
               "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": {"content": CHUNK_TEXT}, "finish_reason": None}]}
    data = b"data: " + json.dumps(payload).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class StreamingUpstream:
    """Answers each request with CHUNKS events, as fast as its socket takes them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.sent = 0  # event bytes written to the current connection
        self.finished = threading.Event()
        self.broken = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(30)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            got = conn.recv(65536)
            if not got:
                return
            data += got
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        self.sent = 0
        event = _event()
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            for _i in range(CHUNKS):
                conn.sendall(event)
                self.sent += len(event)
                if self._stop:
                    return
            done = b"data: [DONE]\n\n"
            conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            self.finished.set()
        except OSError:
            self.broken.set()

    def close(self) -> None:
        self._stop = True
        self._thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def upstream():
    up = StreamingUpstream()
    yield up
    up.close()


@pytest.fixture(scope="module")
def helix(upstream):
    config = f"""providers:
  - name: raw
    type: openai_compatible
    base_url: http://127.0.0.1:{upstream.port}/v1
    api_key: sk-upstream-bp
"""
    with HelixProcess(config, workers=2) as proc:
        yield proc


def _open_stream(port: int) -> socket.socket:
    body = json.dumps({"model": "raw/gpt-4o-mini", "stream": True,
                       "messages": [{"role": "user", "content": "a lot"}]}).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
              b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return s


def _dechunk(data: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response, its head dropped."""
    pos = data.index(b"\r\n\r\n") + 4
    out = []
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[eol + 2:eol + 2 + size])
        pos = eol + 2 + size + 2


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_a_client_that_stops_reading_stops_the_upstream(helix, upstream):
    upstream.finished.clear()
    s = _open_stream(helix.port)
    try:
        got = s.recv(65536)
        assert got.startswith(b"HTTP/1.1 200")
        total = CHUNKS * len(_event())
        # The client reads nothing more: the upstream gets stuck well short of the end.
        time.sleep(1.5)
        stuck = upstream.sent
        assert stuck < total * 0.4, (stuck, total)
        time.sleep(0.5)
        assert upstream.sent - stuck < total * 0.05  # stuck, not slowly buffered
        # Reading again, every event arrives and the stream ends properly.
        data = bytearray(got)
        while not data.endswith(b"0\r\n\r\n"):
            more = s.recv(1 << 20)
            assert more, "helix closed the stream early"
            data += more
        assert upstream.finished.wait(10)
        events = _dechunk(bytes(data)).split(b"\n\n")
        assert events[-2:] == [b"data: [DONE]", b""]
        assert len(events) == CHUNKS + 2
        assert all(json.loads(e[6:])["choices"][0]["delta"]["content"] == CHUNK_TEXT
                   for e in events[:-2])
    finally:
        s.close()


def test_a_client_that_hangs_up_mid_stream_closes_the_upstream(helix, upstream):
    upstream.broken.clear()
    s = _open_stream(helix.port)
    try:
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        assert _wait(lambda: upstream.sent > 0, 5)
    finally:
        s.close()
    # Helix drops the upstream connection: the provider's writes fail.
    assert upstream.broken.wait(10)
    assert not upstream.finished.is_set() or upstream.sent < CHUNKS * len(_event())
