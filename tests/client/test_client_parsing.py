"""Response parsing driven through a fake transport (no sockets): canned
responses split at arbitrary points must always yield the same head, body
and reuse decision."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helix.client.connection import DONE, Connection
from helix.client.pool import UpstreamResponse, _build_head, parse_url
from helix.errors import ErrorKind, HelixError


class FakeTransport:
    def __init__(self, conn: Connection):
        self.conn = conn
        self.written = []
        self.paused = False
        self.pauses = 0
        self.closed = False

    def write(self, data):
        self.written.append(bytes(data))

    def writelines(self, parts):
        self.written.append(b"".join(parts))

    def pause_reading(self):
        assert not self.paused
        self.paused = True
        self.pauses += 1

    def resume_reading(self):
        assert self.paused
        self.paused = False

    def abort(self):
        self._lose()

    def close(self):
        self._lose()

    def _lose(self):
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.conn.connection_lost, None)

    def is_closing(self):
        return self.closed


class FakePool:
    def __init__(self):
        self.released = []
        self.discarded = []

    def _release(self, conn):
        self.released.append(conn)

    def _discard(self, conn):
        conn.abort()
        self.discarded.append(conn)


def make_conn(high=1 << 20, low=1 << 18):
    loop = asyncio.get_running_loop()
    conn = Connection(loop, "test.local:80", high_water=high, low_water=low)
    tr = FakeTransport(conn)
    conn.connection_made(tr)
    return conn, tr


def send(
    conn, method=b"GET", head_only=False, keep_alive=True, first_byte=30, read=30, deadline=None
):
    head = method + b" / HTTP/1.1\r\nhost: x\r\n\r\n"
    return conn.send(head, b"", keep_alive, head_only, first_byte, read, deadline)


async def exchange(raw: bytes, cuts: list[int], *, eof: bool = False, method=b"GET"):
    """Feed *raw* split at *cuts*; returns (response, body, conn, pool)."""
    conn, _tr = make_conn()
    pool = FakePool()
    fut = send(conn, method=method, head_only=method == b"HEAD")
    pieces = split(raw, cuts)
    resp = None
    body = []
    for piece in pieces:
        conn.data_received(piece)
        await asyncio.sleep(0)
        if resp is None and fut.done():
            fut.result()
            resp = UpstreamResponse(conn, pool)
    if eof:
        conn.connection_lost(None)
    if resp is None:
        await fut
        resp = UpstreamResponse(conn, pool)
    while True:
        chunk = await resp.next_chunk()
        if chunk is None:
            break
        assert chunk  # never an empty piece
        body.append(chunk)
    return resp, b"".join(body), conn, pool


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    return [raw[a:b] for a, b in itertools.pairwise(points) if b > a]


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


CASES = {
    "content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
        b'{"a": 1234}',
        b'{"a": 1234}',
        True,
        False,
    ),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"hello ", b"world"),
        b"hello world",
        True,
        False,
    ),
    "sse": (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        + chunked(b'data: {"x":1}\n\n', b'data: {"x":2}\n\n', b"data: [DONE]\n\n"),
        b'data: {"x":1}\n\ndata: {"x":2}\n\ndata: [DONE]\n\n',
        True,
        False,
    ),
    "close-delimited": (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end",
        b"until the end",
        False,
        True,
    ),
    "connection-close": (
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi",
        b"hi",
        False,
        False,
    ),
    "http10": (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nhi", b"hi", False, False),
    "http10-keepalive": (
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nhi",
        b"hi",
        False,
        False,
    ),
    "empty-204": (b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n", b"", True, False),
    "continue-then-200": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
        b"abc",
        True,
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_split_responses(case, cuts):
    raw, body, reusable, eof = CASES[case]

    async def go():
        resp, got, conn, pool = await exchange(raw, cuts, eof=eof)
        assert got == body
        assert conn.state == DONE
        assert conn.reusable is reusable
        assert pool.released == [conn] and pool.discarded == []
        assert resp.status == (204 if case == "empty-204" else 200)
        return resp

    resp = asyncio.run(go())
    assert all(name == name.lower() for name, _ in resp.headers)



def test_upstream_version_read_once_per_connection():
    """A connection's HTTP version is asked of the parser once (its first response): an
    HTTP/1.1 upstream's connection is reused response after response, an HTTP/1.0 one's
    never, even when it asks for keep-alive."""

    async def two(first: bytes, second: bytes):
        conn, _tr = make_conn()
        out = []
        for raw in (first, second):
            fut = send(conn)
            conn.data_received(raw)
            await fut
            resp = UpstreamResponse(conn, FakePool())
            while await resp.next_chunk() is not None:
                pass
            out.append(conn.reusable)
            if not conn.reusable:
                break
        return out

    ok11 = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
    ok10 = b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nhi"
    assert asyncio.run(two(ok11, ok11)) == [True, True]
    assert asyncio.run(two(ok10, ok11)) == [False]

def test_headers_lowercased_in_order():
    raw = (
        b"HTTP/1.1 200 OK\r\nX-B: 1\r\nSet-Cookie: a\r\nset-cookie: b\r\n"
        + b"content-length: 0\r\n\r\n"
    )

    async def go():
        resp, _, _, _ = await exchange(raw, [])
        return resp

    resp = asyncio.run(go())
    assert resp.headers == [
        (b"x-b", b"1"),
        (b"set-cookie", b"a"),
        (b"set-cookie", b"b"),
        (b"content-length", b"0"),
    ]
    assert resp.header(b"Set-Cookie") == b"a"
    assert resp.header(b"x-missing") is None



def test_header_names_lowercased_past_the_name_cache():
    """Lower-cased names are shared through a bounded cache (connection._LOWER): names past
    its bound are still lower-cased, and the cache does not grow beyond it."""
    import helix.client.connection as pure

    names = [f"X-Rare-{i}-Name".encode() for i in range(pure._LOWER_MAX + 100)]
    raw = (
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(n + b": v\r\n" for n in names)
        + b"Content-Length: 0\r\n\r\n"
    )

    async def go():
        first, _, _, _ = await exchange(raw, [])
        again, _, _, _ = await exchange(raw, [])
        return first, again

    for resp in asyncio.run(go()):
        assert [n for n, _ in resp.headers] == [n.lower() for n in names] + [b"content-length"]
    assert len(pure._LOWER) <= pure._LOWER_MAX

MALFORMED = [
    b"HTTQ/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: abc\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n",
]


@pytest.mark.parametrize("raw", MALFORMED)
@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_malformed_is_upstream_protocol(raw, cuts):
    async def go():
        with pytest.raises(HelixError) as ei:
            await exchange(raw, cuts)
        return ei.value

    err = asyncio.run(go())
    assert err.kind is ErrorKind.UPSTREAM_PROTOCOL
    assert "test.local:80" in err.message


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-le",
    ],
)
def test_truncated_is_upstream_protocol(raw):
    async def go():
        conn, _ = make_conn()
        pool = FakePool()
        fut = send(conn)
        conn.data_received(raw)
        await asyncio.sleep(0)
        if not fut.done():
            conn.connection_lost(None)
            with pytest.raises(HelixError) as ei:
                await fut
            return ei.value, conn
        resp = UpstreamResponse(conn, pool)
        conn.connection_lost(None)
        with pytest.raises(HelixError) as ei:
            await resp.read()
        assert pool.discarded == [conn]
        return ei.value, conn

    err, conn = asyncio.run(go())
    assert err.kind is ErrorKind.UPSTREAM_PROTOCOL
    assert not conn.retryable  # a new connection (requests == 1) is never retried


def test_eof_before_response_on_reused_connection_is_retryable():
    async def go():
        conn, _ = make_conn()
        fut = send(conn)
        conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await fut
        conn.reset_idle(0.0)
        fut = send(conn)
        conn.connection_lost(ConnectionResetError())
        with pytest.raises(HelixError):
            await fut
        first = conn.retryable
        # Same, but one response byte arrived: never retryable.
        conn2, _ = make_conn()
        fut = send(conn2)
        conn2.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await fut
        conn2.reset_idle(0.0)
        fut = send(conn2)
        conn2.data_received(b"HTTP/1.1")
        conn2.connection_lost(None)
        with pytest.raises(HelixError):
            await fut
        return first, conn2.retryable

    assert asyncio.run(go()) == (True, False)


def test_extra_bytes_after_response_prevent_reuse():
    async def go():
        raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n\r\n"
        _resp, body, conn, _ = await exchange(raw, [])
        return body, conn.reusable

    assert asyncio.run(go()) == (b"hi", False)


def test_head_request_has_no_body():
    async def go():
        raw = b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"
        resp, body, conn, _ = await exchange(raw, [], method=b"HEAD")
        return body, resp.header(b"content-length"), conn.reusable

    assert asyncio.run(go()) == (b"", b"1234", False)


def test_flow_control_pauses_and_resumes():
    async def go():
        conn, tr = make_conn(high=1000, low=300)
        pool = FakePool()
        fut = send(conn)
        conn.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await fut
        resp = UpstreamResponse(conn, pool)
        for _ in range(3):
            conn.data_received(b"190\r\n" + b"x" * 400 + b"\r\n")
        assert tr.paused and conn.buffered == 1200
        chunk = await resp.next_chunk()  # takes all 1200 buffered bytes in one piece
        assert len(chunk) == 1200 and not tr.paused and tr.pauses == 1
        conn.data_received(b"0\r\n\r\n")
        assert await resp.next_chunk() is None
        return pool.released == [conn]

    assert asyncio.run(go())


def test_first_byte_and_read_timeouts():
    async def go():
        conn, tr = make_conn()
        fut = send(conn, first_byte=0.05)
        with pytest.raises(HelixError) as ei:
            await fut
        assert ei.value.kind is ErrorKind.READ_TIMEOUT and tr.closed

        conn, tr = make_conn()
        pool = FakePool()
        fut = send(conn, read=0.05)
        conn.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await fut
        resp = UpstreamResponse(conn, pool)
        assert await resp.next_chunk() == b"abc"
        with pytest.raises(HelixError) as ei:
            await resp.next_chunk()
        assert ei.value.kind is ErrorKind.READ_TIMEOUT and tr.closed
        assert pool.discarded == [conn]
        with pytest.raises(HelixError):  # the error sticks
            await resp.next_chunk()

    asyncio.run(go())


def test_deadlines_on_a_reused_connection_share_one_lazy_timer():
    # One timer handle per connection, re-armed lazily (helix/client/connection.py):
    # a later deadline leaves an earlier armed handle alone, which fires early, sees the
    # live deadline and re-arms; an earlier one re-arms at once; an ended one stops it.
    async def go():
        loop = asyncio.get_running_loop()
        conn, tr = make_conn()
        pool = FakePool()
        ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

        # 1. Short first-byte deadline, answered at once; the handle stays armed.
        fut = send(conn, first_byte=0.1)
        conn.data_received(ok)
        await fut
        resp = UpstreamResponse(conn, pool)
        assert await resp.read() == b"ok"
        assert conn.due is None and conn.timer is not None
        conn.reset_idle(loop.time())

        # 2. Reused with a long deadline, answered after the first handle's time: no timeout.
        fut = send(conn, first_byte=30)
        assert conn.timer_at < conn.due  # nothing new scheduled
        await asyncio.sleep(0.25)  # the stale handle fired and re-armed for the live deadline
        assert not fut.done() and conn.timer is not None and conn.timer_at == conn.due
        conn.data_received(ok)
        await fut
        resp = UpstreamResponse(conn, pool)
        assert await resp.read() == b"ok"
        conn.reset_idle(loop.time())

        # 3. Reused with a deadline earlier than the armed handle: re-armed, and it fires.
        t0 = loop.time()
        fut = send(conn, first_byte=0.1)
        assert conn.timer_at == conn.due
        with pytest.raises(HelixError) as ei:
            await asyncio.wait_for(fut, 5)
        assert ei.value.kind is ErrorKind.READ_TIMEOUT and tr.closed
        assert 0.09 <= loop.time() - t0 < 2
        assert conn.timer is None  # a dead connection keeps no handle

    asyncio.run(go())


def test_close_before_end_discards_and_after_end_releases():
    async def go():
        conn, tr = make_conn()
        pool = FakePool()
        fut = send(conn)
        conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await fut
        resp = UpstreamResponse(conn, pool)
        resp.close()
        resp.close()
        assert pool.discarded == [conn] and tr.closed and resp.released

        conn, tr = make_conn()
        pool = FakePool()
        fut = send(conn)
        conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc")
        await fut
        resp = UpstreamResponse(conn, pool)
        assert await resp.read() == b"abc"
        resp.close()
        assert pool.released == [conn] and not tr.closed
        assert await resp.read() == b""

    asyncio.run(go())


# ----------------------------------------------------------- request heads


def test_build_head_adds_host_and_length():
    head, keep = _build_head(
        b"POST", b"/v1/chat", [(b"Authorization", b"Bearer k")], b"{}", b"host: api.x\r\n"
    )
    assert head == (
        b"POST /v1/chat HTTP/1.1\r\nAuthorization: Bearer k\r\nhost: api.x\r\n"
        b"content-length: 2\r\n\r\n"
    )
    assert keep


def test_build_head_respects_caller_host_and_drops_framing():
    head, keep = _build_head(
        b"GET",
        b"/",
        [(b"Host", b"h"), (b"Content-Length", b"99"), (b"Connection", b"close")],
        b"",
        b"host: ignored\r\n",
    )
    assert head == b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    assert not keep


@pytest.mark.parametrize(
    "headers,target",
    [
        ([(b"x-a", b"1\r\nx-injected: 2")], b"/"),
        ([(b"x-a\nb", b"1")], b"/"),
        ([], b"/ HTTP/1.1\r\nx: y"),
        ([(b"x-a", b"1\r")], b"/"),
    ],
)
def test_build_head_rejects_crlf(headers, target):
    with pytest.raises(HelixError) as ei:
        _build_head(b"GET", target, headers, b"", b"host: h\r\n")
    assert ei.value.kind is ErrorKind.INVALID_REQUEST
    assert b"1" not in ei.value.message.encode()



def test_build_head_joins_a_tail_after_the_checked_head():
    """The pool sends a small body in its head's copy (``tail``): the same bytes as head + body,
    and CR/LF in the body is no header injection, while one in the head still is."""
    from helix.client.pool import HeaderBlock

    body = b'{"a": "x\r\ny"}'
    headers = [(b"content-type", b"application/json")]
    for hs in (list(headers), HeaderBlock(headers)):
        head, keep = _build_head(b"POST", b"/v1/x", hs, body, b"host: h\r\n")
        assert _build_head(b"POST", b"/v1/x", hs, body, b"host: h\r\n", body) == (
            head + body, keep)
        with pytest.raises(HelixError):
            _build_head(b"POST", b"/\r\nx: y", hs, body, b"host: h\r\n", body)

# ---------------------------------------------------------------- parse_url


@pytest.mark.parametrize(
    "url,origin,path",
    [
        ("https://api.openai.com/v1", ("https", "api.openai.com", 443), "/v1"),
        ("https://API.OpenAI.com/v1/", ("https", "api.openai.com", 443), "/v1"),
        ("http://localhost:8080", ("http", "localhost", 8080), ""),
        ("http://127.0.0.1/", ("http", "127.0.0.1", 80), ""),
        ("http://[::1]:9000/base/path/", ("http", "::1", 9000), "/base/path"),
        ("https://[2001:db8::1]/x", ("https", "2001:db8::1", 443), "/x"),
    ],
)
def test_parse_url(url, origin, path):
    assert parse_url(url) == (origin, path)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x/",
        "https://",
        "api.openai.com/v1",
        "http://u:p@x/",
        "http://x:99999/",
        "http://x/?q",
    ],
)
def test_parse_url_rejects(url):
    with pytest.raises(HelixError):
        parse_url(url)


def test_oversized_head_rejected_but_large_first_read_ok():
    async def go():
        conn, _ = make_conn()
        fut = send(conn)
        conn.data_received(b"HTTP/1.1 200 OK\r\n")
        for _ in range(400):
            conn.data_received(b"x-filler: " + b"a" * 1000 + b"\r\n")
        with pytest.raises(HelixError) as ei:
            await fut
        assert ei.value.kind is ErrorKind.UPSTREAM_PROTOCOL

        big = b"b" * 300_000
        raw = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big
        _resp, body, _conn, _ = await exchange(raw, [10])
        assert body == big

    asyncio.run(go())


def test_header_block_serializes_once_and_like_a_plain_list():
    from helix.client.pool import HeaderBlock, _build_head

    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer k"),
               (b"Connection", b"close")]
    block = HeaderBlock(headers)
    for method, body in ((b"POST", b'{"a":1}'), (b"GET", b"")):
        assert _build_head(method, b"/v1/x", block, body, b"host: h\r\n") == \
            _build_head(method, b"/v1/x", list(headers), body, b"host: h\r\n")
    assert block.serialized() is block.serialized()  # computed once
