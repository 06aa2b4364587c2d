"""HttpProtocol driven by raw bytes through a MockTransport (sans-IO style)."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from helix.errors import ErrorKind, HelixError
from helix.server import ClientDisconnected, ServerLimits
from tests.protocol import mock as harness
from tests.protocol.mock import make_conn, one_response, parse_responses


async def settle(n: int = 8) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def echo(ex) -> None:
    r = ex.request
    body = b"%s %s?%s %s|" % (
        r.method.encode(),
        r.path.encode(),
        r.query.encode(),
        r.http_version.encode(),
    )
    ex.respond(200, [(b"content-type", b"text/plain")], body + r.body)


def conn(handler=echo, **limits):
    return make_conn(handler, ServerLimits(**limits), loop=asyncio.get_running_loop())


def assert_error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status == status
    assert resp.header("content-type") == "application/json"
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if code is not None:
        assert err["code"] == code
    return err


GET = b"GET /v1/models?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"


def post(body: bytes, path: bytes = b"/v1/chat/completions", extra: bytes = b"") -> bytes:
    return (
        b"POST %b HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n%b\r\n%b" % (path, len(body), extra, body)
    )


# --------------------------------------------------------------------------
# basics
# --------------------------------------------------------------------------
async def test_simple_get_request_fields():
    seen = []

    async def handler(ex):
        seen.append(ex.request)
        ex.respond(200, [(b"content-type", b"text/plain")], b"ok")

    proto, t, server = conn(handler)
    proto.data_received(
        b"GET /v1/models?limit=2&x=%20 HTTP/1.1\r\nHost: h\r\nX-Thing: A\r\n"
        b"X-Multi: 1\r\nx-multi: 2\r\n\r\n"
    )
    await settle()
    r = one_response(t)
    assert (r.status, r.reason, r.body) == (200, "OK", b"ok")
    assert r.header("content-length") == "2"
    assert r.header("connection") is None
    assert not t.closed
    (req,) = seen
    assert req.method == "GET"
    assert req.path == "/v1/models"
    assert req.query == "limit=2&x=%20"
    assert req.headers == {"host": "h", "x-thing": "A", "x-multi": "1, 2"}
    assert req.body == b""
    assert req.http_version == "1.1"
    assert req.client == ("127.0.0.1", 50000)
    assert req.keep_alive is True
    assert server.connections == 1
    assert server.active_requests == 0


def recorder(seen: list):
    """A handler that keeps each request and answers 200 "ok"."""
    async def handler(ex):
        seen.append(ex.request)
        ex.respond(200, [(b"content-type", b"text/plain")], b"ok")

    return handler


def _name_pair(name: bytes) -> int:
    # protocol.py _header_name's pair (FNV-1a, folded), to build collisions.
    h = 2166136261
    for c in name:
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return (h ^ (h >> 16)) & 1023


def _colliding_names(count: int) -> list[bytes]:
    by_pair: dict[int, list[bytes]] = {}
    i = 0
    while True:
        name = b"x-name-%d" % i
        i += 1
        names = by_pair.setdefault(_name_pair(name), [])
        names.append(name)
        if len(names) == count:
            return names


async def test_header_names_are_lower_cased_whatever_the_table_holds():
    # Header names are looked up in a fixed two-way table (protocol.py _header_name):
    # names of one pair evict one another through its two ways, thousands
    # of distinct names evict everything, and every request still gets every name
    # lower-cased with its own value, in each case spelling, duplicates joined.
    seen = []
    proto, t, _ = conn(recorder(seen))
    a, b, c = _colliding_names(3)
    spellings = [a, b, a, c, b, a, a.upper(), c.title(), b, c, c, a]
    want = {"host": "h"}
    for k, n in enumerate(spellings):
        key = n.decode().lower()
        want[key] = f"{want[key]}, v{k}" if key in want else f"v{k}"
    head = b"GET /h HTTP/1.1\r\nHost: h\r\n"
    head += b"".join(b"%s: v%d\r\n" % (n, k) for k, n in enumerate(spellings)) + b"\r\n"
    heads = [head, head]
    for r in range(30):  # 2,400 distinct names through the table
        lines = b"".join(b"Z-%d-%d: z\r\n" % (r, k) for k in range(80))
        heads.append(b"GET /z HTTP/1.1\r\nHost: h\r\n" + lines + b"\r\n")
    heads.append(head)
    for head in heads:
        proto.data_received(head)
        await settle()
    assert [r.status for r in parse_responses(t.data)] == [200] * len(heads)
    for req in (seen[0], seen[1], seen[-1]):
        assert req.headers == want
    for r, req in enumerate(seen[2:-1]):
        assert req.headers == {"host": "h", **{f"z-{r}-{k}": "z" for k in range(80)}}


async def test_the_client_address_is_read_once_and_only_when_asked():
    # getpeername is a syscall (and ≈ 2,200 instructions through uvloop) that most
    # connections never need: the access log is off by default.
    seen = []
    proto, t, _ = conn(recorder(seen))
    proto.data_received(GET + GET)
    await settle()
    assert len(seen) == 2 and "peername" not in t.asked
    assert seen[0].client == ("127.0.0.1", 50000)
    assert seen[1].client == ("127.0.0.1", 50000)
    assert seen[0].client == ("127.0.0.1", 50000)
    assert t.asked.count("peername") == 1  # once for the connection
    proto.data_received(GET)
    await settle()
    assert seen[2].client == ("127.0.0.1", 50000) and t.asked.count("peername") == 1
    seen[2].client = ("10.0.0.1", 1)  # still settable
    assert seen[2].client == ("10.0.0.1", 1)


async def test_an_address_the_transport_no_longer_knows_is_none():
    seen = []
    proto, t, _ = conn(recorder(seen))
    proto.data_received(GET)
    await settle()
    t.close()
    await settle()
    assert seen[0].client is None


async def test_with_the_access_log_the_address_is_read_at_connect():
    # The access line reads the address for every request: it is read once, at connect.
    lines = []
    proto, t, _ = make_conn(
        echo,
        ServerLimits(),
        loop=asyncio.get_running_loop(),
        access_log=lambda ex, status, n, dur: lines.append(ex.request.client),
    )
    assert t.asked == ["peername"]
    t.peer = ("10.9.8.7", 4321)  # what the socket says later does not matter
    proto.data_received(GET)
    await settle()
    assert lines == [("127.0.0.1", 50000)] and t.asked == ["peername"]


async def test_post_body_and_keepalive():
    proto, t, _ = conn()
    proto.data_received(post(b'{"a":1}'))
    await settle()
    proto.data_received(post(b"second"))
    await settle()
    rs = parse_responses(t.data)
    assert [r.body for r in rs] == [
        b"POST /v1/chat/completions? 1.1|" + b'{"a":1}',
        b"POST /v1/chat/completions? 1.1|second",
    ]
    assert not t.closed


async def test_split_at_every_byte_boundary():
    wire = post(b"hello world", extra=b"X-A: b\r\n") + GET
    expected = [b"POST /v1/chat/completions? 1.1|hello world", b"GET /v1/models?x=1 1.1|"]
    for cut in range(1, len(wire)):
        proto, t, _ = conn()
        proto.data_received(wire[:cut])
        proto.data_received(wire[cut:])
        await settle()
        assert [r.body for r in parse_responses(t.data)] == expected, cut
    # and one byte per data_received call
    proto, t, _ = conn()
    for i in range(len(wire)):
        proto.data_received(wire[i : i + 1])
        await asyncio.sleep(0)
    await settle()
    assert [r.body for r in parse_responses(t.data)] == expected


async def test_connection_close_request():
    proto, t, _ = conn()
    proto.data_received(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + GET)
    await settle()
    r = one_response(t)  # the pipelined request after "close" is not answered
    assert r.header("connection") == "close"
    assert t.closed or t.eof_written  # lingering close


async def test_head_request_has_no_body():
    proto, t, _ = conn()
    proto.data_received(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    (r,) = parse_responses(t.data, head_request=True)
    assert r.header("content-length") == str(len(b"HEAD /x? 1.1|"))
    assert t.data.endswith(b"\r\n\r\n")


async def test_absolute_form_and_fragment():
    proto, t, _ = conn()
    proto.data_received(b"GET http://example.com/a/b?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    proto.data_received(b"GET /p#frag HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    assert [r.body for r in parse_responses(t.data)] == [b"GET /a/b?q=1 1.1|", b"GET /p? 1.1|"]


async def test_server_header_and_reserved_headers_dropped():
    async def handler(ex):
        ex.respond(
            200,
            [(b"content-length", b"999"), (b"transfer-encoding", b"chunked"), (b"x-a", b"1")],
            b"abc",
        )

    proto, t, _ = conn(handler, server_header=b"helix")
    proto.data_received(GET)
    await settle()
    r = one_response(t)
    assert r.header("content-length") == "3"
    assert r.header("transfer-encoding") is None
    assert r.header("server") == "helix"
    assert r.header("x-a") == "1"


async def test_status_204_has_no_content_length():
    async def handler(ex):
        ex.respond(204, [], b"ignored")

    proto, t, _ = conn(handler)
    proto.data_received(GET + GET)
    await settle()
    rs = parse_responses(t.data)
    assert [r.status for r in rs] == [204, 204]
    assert rs[0].header("content-length") is None


# --------------------------------------------------------------------------
# pipelining
# --------------------------------------------------------------------------
async def test_pipelining_answers_in_order():
    order = []

    async def handler(ex):
        order.append(("start", ex.request.path))
        if ex.request.path == "/slow":
            await asyncio.sleep(0.05)
        order.append(("end", ex.request.path))
        ex.respond(200, [], ex.request.path.encode())

    proto, t, _ = conn(handler)
    proto.data_received(
        b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /fast HTTP/1.1\r\nHost: h\r\n\r\n"
        + post(b"x", path=b"/third")
    )
    await asyncio.sleep(0.1)
    await settle()
    assert [r.body for r in parse_responses(t.data)] == [b"/slow", b"/fast", b"/third"]
    # one handler at a time per connection
    assert order == [
        ("start", "/slow"),
        ("end", "/slow"),
        ("start", "/fast"),
        ("end", "/fast"),
        ("start", "/third"),
        ("end", "/third"),
    ]


async def test_pipelining_backpressure_pauses_reading():
    gate = asyncio.Event()

    async def handler(ex):
        await gate.wait()
        ex.respond(200, [], ex.request.path.encode())

    proto, t, _ = conn(handler, max_pipelined=2)
    proto.data_received(b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(5)))
    await settle()
    assert not t.reading  # 1 running + 4 queued > 2
    assert t.pause_calls == 1
    gate.set()
    await settle(30)
    assert t.reading
    assert [r.body for r in parse_responses(t.data)] == [b"/%d" % i for i in range(5)]


async def test_pipelined_malformed_request_answered_in_order():
    gate = asyncio.Event()

    async def handler(ex):
        await gate.wait()
        ex.respond(200, [], b"first")

    proto, t, _ = conn(handler)
    proto.data_received(GET + b"BROKEN\r\n\r\n")
    await settle()
    assert t.data == b""  # the 400 must wait for the first response
    gate.set()
    await settle()
    rs = parse_responses(t.data)
    assert [r.status for r in rs] == [200, 400]
    assert rs[0].header("connection") is None
    assert t.closed or t.eof_written


# --------------------------------------------------------------------------
# chunked request bodies and 100-continue
# --------------------------------------------------------------------------
CHUNKED_HEAD = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


async def test_chunked_request_body():
    proto, t, _ = conn()
    proto.data_received(CHUNKED_HEAD + b"5;ext=1\r\nhello\r\n6\r\n world\r\n")
    proto.data_received(b"0\r\nX-Trailer: t\r\n\r\n")
    await settle()
    assert one_response(t).body == b"POST /c? 1.1|hello world"


async def test_chunked_body_over_limit_is_413():
    called = []

    async def handler(ex):
        called.append(1)
        ex.respond(200, [], b"")

    proto, t, _ = conn(handler, max_body_bytes=8)
    proto.data_received(CHUNKED_HEAD + b"5\r\nhello\r\n5\r\nworld\r\n")
    await settle()
    assert_error(one_response(t), 413, "request_too_large")
    assert not called
    assert t.eof_written  # lingering close: stop writing, keep draining input
    proto.data_received(b"more body nobody reads")
    assert parse_responses(t.data)[0].status == 413


async def test_bad_chunk_framing_is_400():
    proto, t, _ = conn()
    proto.data_received(CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n")
    await settle()
    assert_error(one_response(t), 400, "malformed_request")
    assert t.closed or t.eof_written


async def test_expect_100_continue():
    proto, t, _ = conn()
    wire = post(b"", extra=b"Expect: 100-continue\r\n").replace(b"Length: 0", b"Length: 5")
    proto.data_received(wire)
    assert t.data == b"HTTP/1.1 100 Continue\r\n\r\n"
    proto.data_received(b"hello")
    await settle()
    rs = parse_responses(t.data)
    assert [r.status for r in rs] == [100, 200]
    assert rs[1].body.endswith(b"|hello")


async def test_expect_100_continue_deferred_while_pipeline_busy():
    gate = asyncio.Event()

    async def handler(ex):
        if ex.request.path == "/first":
            await gate.wait()
        ex.respond(200, [], ex.request.path.encode())

    proto, t, _ = conn(handler)
    proto.data_received(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    proto.data_received(
        b"POST /second HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    await settle()
    assert t.data == b""  # a 100 now would land inside the first response
    gate.set()
    await settle()
    assert t.data.endswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    proto.data_received(b"ok")
    await settle()
    assert [r.status for r in parse_responses(t.data)] == [200, 100, 200]


async def test_expect_100_continue_not_sent_when_body_already_arrived():
    gate = asyncio.Event()

    async def handler(ex):
        if ex.request.path == "/first":
            await gate.wait()
        ex.respond(200, [], ex.request.path.encode())

    proto, t, _ = conn(handler)
    proto.data_received(
        b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /second HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok"
    )
    await settle()
    gate.set()
    await settle()
    assert b"100 Continue" not in t.data
    assert [r.body for r in parse_responses(t.data)] == [b"/first", b"/second"]


async def test_expect_100_continue_over_limit_is_413_without_reading():
    called = []

    async def handler(ex):
        called.append(1)

    proto, t, _ = conn(handler, max_body_bytes=10)
    proto.data_received(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
    )
    await settle()
    assert b"100 Continue" not in t.data
    assert_error(one_response(t), 413)
    assert not called


async def test_unknown_expect_is_417():
    proto, t, _ = conn()
    proto.data_received(post(b"abc", extra=b"Expect: something-else\r\n"))
    await settle()
    assert_error(one_response(t), 417, "expectation_failed")


# --------------------------------------------------------------------------
# limits
# --------------------------------------------------------------------------
async def test_too_many_headers_is_431():
    proto, t, _ = conn(max_headers=5)
    proto.data_received(
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"\r\n"
    )
    await settle()
    assert_error(one_response(t), 431, "headers_too_large")


async def test_head_too_large_is_431_even_when_never_completed():
    proto, t, _ = conn(max_header_bytes=1024)
    proto.data_received(b"GET / HTTP/1.1\r\nX-Big: ")
    for _ in range(20):
        if t.data:
            break
        proto.data_received(b"a" * 100)
    await settle()
    assert_error(one_response(t), 431)


async def test_long_url_is_431():
    proto, t, _ = conn(max_header_bytes=1024)
    proto.data_received(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    assert_error(one_response(t), 431)


async def test_content_length_over_limit_is_413():
    proto, t, _ = conn(max_body_bytes=10)
    proto.data_received(post(b"x" * 11)[:-11])
    await settle()
    assert_error(one_response(t), 413, "request_too_large")
    assert t.eof_written or t.closed


async def test_body_at_limit_is_accepted():
    proto, t, _ = conn(max_body_bytes=10)
    proto.data_received(post(b"x" * 10))
    await settle()
    assert one_response(t).status == 200


# --------------------------------------------------------------------------
# malformed requests and smuggling
# --------------------------------------------------------------------------
SMUGGLING = {
    "cl+te": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "te+cl": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    "two different cl": b"Content-Length: 5\r\nContent-Length: 6\r\n",
    "two equal cl": b"Content-Length: 5\r\nContent-Length: 5\r\n",
    "cl list": b"Content-Length: 5, 5\r\n",
    "cl sign": b"Content-Length: +5\r\n",
    "te gzip": b"Transfer-Encoding: gzip\r\n",
    "te gzip, chunked": b"Transfer-Encoding: gzip, chunked\r\n",
    "te chunked, gzip": b"Transfer-Encoding: chunked, gzip\r\n",
    "te chunked twice": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "te xchunked": b"Transfer-Encoding: xchunked\r\n",
    "te empty": b"Transfer-Encoding: \r\n",
    "space before colon": b"Content-Length : 5\r\n",
    "obs-fold": b"X-A: a\r\n b\r\n",
    "ctl in value": b"X-A: a\x01b\r\n",
    "duplicate host": b"Host: other\r\n",
}


@pytest.mark.parametrize("headers", list(SMUGGLING.values()), ids=list(SMUGGLING))
async def test_smuggling_patterns_rejected(headers):
    called = []

    async def handler(ex):
        called.append(ex.request)
        ex.respond(200, [], b"")

    proto, t, _ = conn(handler)
    proto.data_received(b"POST / HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\n0\r\n\r\nhello")
    proto.data_received(GET)
    await settle()
    assert_error(one_response(t), 400, "malformed_request")
    assert not called
    assert t.closed or t.eof_written


async def test_transfer_encoding_in_http10_rejected():
    proto, t, _ = conn()
    proto.data_received(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    await settle()
    assert_error(one_response(t), 400)


async def test_transfer_encoding_case_and_whitespace_ok():
    proto, t, _ = conn()
    proto.data_received(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    await settle()
    assert one_response(t).body.endswith(b"|abc")


@pytest.mark.parametrize(
    "wire",
    [
        b"GARBAGE\r\n\r\n",
        b"G@T / HTTP/1.1\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\n\n",
        b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
    ],
)
async def test_malformed_request_is_400_and_close(wire):
    proto, t, _ = conn()
    proto.data_received(wire)
    await settle()
    err = assert_error(one_response(t), 400, "malformed_request")
    assert err["type"] == "invalid_request_error"
    assert one_response(t).header("connection") == "close"
    assert t.closed or t.eof_written
    before = t.data
    proto.data_received(GET)  # ignored after a fatal error
    await settle()
    assert t.data == before


async def test_unsupported_http_version_is_505():
    proto, t, _ = conn()
    proto.data_received(b"GET / HTTP/2.0\r\n\r\n")
    await settle()
    assert_error(one_response(t), 505)


async def test_connect_is_405():
    proto, t, _ = conn()
    proto.data_received(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    assert_error(one_response(t), 405)


async def test_upgrade_is_ignored_and_connection_continues():
    proto, t, _ = conn()
    proto.data_received(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + GET
    )
    await settle()
    rs = parse_responses(t.data)
    assert [r.body for r in rs] == [b"GET /ws? 1.1|", b"GET /v1/models?x=1 1.1|"]


async def test_upgrade_with_body_rejected():
    proto, t, _ = conn()
    extra = b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    proto.data_received(post(b"abc", extra=extra))
    await settle()
    assert_error(one_response(t), 400)


# --------------------------------------------------------------------------
# HTTP/1.0
# --------------------------------------------------------------------------
async def test_http10_closes_after_response():
    proto, t, _ = conn()
    proto.data_received(b"GET /old HTTP/1.0\r\n\r\n")
    await settle()
    r = one_response(t)
    assert r.body == b"GET /old? 1.0|"
    assert r.header("connection") == "close"
    assert t.closed or t.eof_written


async def test_http10_keep_alive():
    proto, t, _ = conn()
    proto.data_received(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    await settle()
    r = one_response(t)
    assert r.header("connection") == "keep-alive"
    assert not t.closed


async def test_http10_stream_is_close_delimited():
    async def handler(ex):
        ex.start_stream(200, [(b"content-type", b"text/event-stream")])
        await ex.send(b"data: 1\n\n")
        await ex.send(b"data: 2\n\n")
        ex.end_stream()

    proto, t, _ = conn(handler)
    proto.data_received(b"GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    await settle()
    r = one_response(t)
    assert r.header("transfer-encoding") is None
    assert r.header("connection") == "close"
    assert r.body == b"data: 1\n\ndata: 2\n\n"
    assert t.closed or t.eof_written


@pytest.mark.parametrize(
    "head,status,version,connection",
    [
        (b"GET /v HTTP/1.1\r\nHost: h\r\n\r\n", 200, "1.1", None),
        (b"GET /v HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", 200, "1.1", None),
        (b"GET /v HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 200, "1.1", "close"),
        (b"GET /v HTTP/1.1\r\nHost: h\r\nProxy-Connection: close\r\n\r\n", 200, "1.1", "close"),
        (b"GET /v HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n", 200, "1.0", "keep-alive"),
        (b"GET /v HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, "1.0", "keep-alive"),
        (b"GET /v HTTP/1.0\r\nConnection: close\r\n\r\n", 200, "1.0", "close"),
        (b"GET /v HTTP/1.0\r\n\r\n", 200, "1.0", "close"),
        (b"GET /v HTTP/1.1\r\n\r\n", 400, None, None),  # Host required in 1.1
        (b"GET /v HTTP/2.0\r\nConnection: keep-alive\r\n\r\n", 505, None, None),
        (b"GET /v HTTP/2.0\r\n\r\n", 505, None, None),
    ],
)
async def test_request_version_and_keep_alive(head, status, version, connection):
    # The version is read from the parser only when llhttp's keep-alive verdict does not
    # settle it (protocol.py on_headers_complete): every combination answers as before.
    proto, t, _ = conn()
    proto.data_received(head)
    await settle()
    r = one_response(t)
    assert r.status == status
    if version is not None:
        assert r.body == f"GET /v? {version}|".encode()
        assert r.header("connection") == connection


# Keep-alive requests of both versions, with and without a Connection header, a body on
# some: fed as one input, one input each, and cut at every few bytes, each is answered in
# its own version (the request line is read from the input that starts a message only:
# protocol.py data_received).
VERSIONED = [
    (b"GET /v HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", "1.1"),
    (b"GET /v HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "1.0"),
    (b"POST /v HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nab",
     "1.1"),
    (b"GET /v HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n", "1.0"),
    (b"GET /v HTTP/1.1\r\nHost: h\r\n\r\n", "1.1"),
    (b"POST /v HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\ncd", "1.0"),
    (b"\r\nGET /v HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive\r\n\r\n", "1.1"),
    (b"GET /v HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "1.0"),
    (b"GET /v HTTP/1.0\r\nConnection: keep-alive\r\nX-Echo: GET / HTTP/1.1\r\n\r\n", "1.0"),
]


@pytest.mark.parametrize("cut", ["one input", "an input each", "a line each", 1, 3, 7, 16])
async def test_each_request_answered_in_its_own_version(cut):
    proto, t, _ = conn()
    if cut == "one input":
        pieces = [b"".join(h for h, _ in VERSIONED)]
    elif cut == "an input each":
        pieces = [h for h, _ in VERSIONED]
    elif cut == "a line each":  # a later line of a head never counts as a request line
        pieces = re.split(rb"(?<=\n)(?=[^\r])", b"".join(h for h, _ in VERSIONED))
    else:
        data = b"".join(h for h, _ in VERSIONED)
        pieces = [data[i : i + cut] for i in range(0, len(data), cut)]
    for piece in pieces:
        proto.data_received(piece)
        await settle()
    got = parse_responses(t.data)
    assert [r.status for r in got] == [200] * len(VERSIONED)
    for r, (head, version) in zip(got, VERSIONED, strict=True):
        body = head.partition(b"\r\n\r\n")[2]
        method = head.lstrip().split(b" ", 1)[0]
        assert r.body == b"%s /v? %s|%s" % (method, version.encode(), body)
        assert r.header("connection") == ("keep-alive" if version == "1.0" else None)
    assert not t.closed


# --------------------------------------------------------------------------
# handler outcomes
# --------------------------------------------------------------------------
async def test_handler_exception_is_500_without_internals(caplog):
    async def handler(ex):
        raise RuntimeError("secret internal detail")

    proto, t, _ = conn(handler)
    with caplog.at_level(logging.ERROR, logger="helix.server"):
        proto.data_received(GET)
        await settle()
    r = one_response(t)
    err = assert_error(r, 500, "internal_error")
    assert b"secret" not in t.data
    assert err["type"] == "server_error"
    assert any("secret internal detail" in (rec.exc_text or "") for rec in caplog.records)
    assert not t.closed  # the request was fully read: keep-alive is still fine


async def test_helix_error_status_and_shape():
    async def handler(ex):
        raise HelixError(
            ErrorKind.RATE_LIMITED,
            "Too many requests",
            headers=[(b"retry-after", b"3")],
            param="model",
        )

    proto, t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    r = one_response(t)
    err = assert_error(r, 429, "rate_limit_exceeded")
    assert err == {
        "message": "Too many requests",
        "type": "rate_limit_error",
        "param": "model",
        "code": "rate_limit_exceeded",
    }
    assert r.header("retry-after") == "3"


async def test_respond_error_helper():
    async def handler(ex):
        ex.respond_error(HelixError(ErrorKind.NOT_FOUND, "nope"))

    proto, t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    assert assert_error(one_response(t), 404, "not_found")["message"] == "nope"


async def test_handler_without_response_is_500():
    async def handler(ex):
        return None

    proto, t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    assert_error(one_response(t), 500)


async def test_header_injection_becomes_500():
    async def handler(ex):
        ex.respond(200, [(b"x-evil", b"a\r\nset-cookie: pwn")], b"")

    proto, t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    assert_error(one_response(t), 500)
    assert b"set-cookie" not in t.data


async def test_access_log_called():
    calls = []
    proto, _t, _ = make_conn(
        echo,
        ServerLimits(),
        loop=asyncio.get_running_loop(),
        access_log=lambda ex, status, n, dur: calls.append((ex.request.path, status, n, dur)),
    )
    proto.data_received(GET + b"NOPE\r\n\r\n")
    await settle()
    assert [(c[0], c[1], c[2]) for c in calls[:1]] == [
        ("/v1/models", 200, len(b"GET /v1/models?x=1 1.1|"))
    ]
    assert calls[1][1] == 400
    assert all(c[3] >= 0 for c in calls)


# --------------------------------------------------------------------------
# streaming responses
# --------------------------------------------------------------------------
async def test_stream_framing_exact_bytes():
    async def handler(ex):
        ex.start_stream(200, [(b"content-type", b"text/event-stream")])
        assert ex.committed
        await ex.send(b"data: a\n\n")
        await ex.send(b"")  # must not terminate the body
        await ex.send(b"x" * 300)
        ex.end_stream()

    proto, t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    head, _, body = t.data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert b"content-length" not in head
    assert body == b"9\r\ndata: a\n\n\r\n12c\r\n" + b"x" * 300 + b"\r\n0\r\n\r\n"
    # each chunk is a single write
    assert t.chunks[1] == b"9\r\ndata: a\n\n\r\n"
    assert one_response(t).body == b"data: a\n\n" + b"x" * 300
    assert not t.closed


async def test_stream_last_chunk_and_terminator_in_one_write():
    async def handler(ex):
        ex.start_stream(200, [(b"content-type", b"text/event-stream")])
        await ex.send(b"data: a\n\n")
        ex.end_stream(b"data: [DONE]\n\n")

    proto, t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    assert t.chunks[-1] == b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
    assert one_response(t).body == b"data: a\n\ndata: [DONE]\n\n"
    assert not t.closed


async def test_exception_mid_stream_aborts_connection():
    async def handler(ex):
        ex.start_stream(200, [])
        await ex.send(b"partial")
        raise HelixError(ErrorKind.READ_TIMEOUT, "upstream died")

    proto, t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    assert t.aborted
    assert not t.data.endswith(b"0\r\n\r\n")
    assert b"partial" in t.data


async def test_handler_returning_with_open_stream_aborts():
    async def handler(ex):
        ex.start_stream(200, [])
        await ex.send(b"partial")

    proto, t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    assert t.aborted


async def test_double_respond_is_an_error():
    async def handler(ex):
        ex.respond(200, [], b"one")
        ex.respond(200, [], b"two")

    proto, t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    r = one_response(t)
    assert r.body == b"one"


# --------------------------------------------------------------------------
# disconnects and flow control
# --------------------------------------------------------------------------
async def test_client_disconnect_cancels_handler():
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handler(ex):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    proto, _t, server = conn(handler)
    proto.data_received(post(b"{}"))
    await started.wait()
    assert server.active_requests == 1
    proto.connection_lost(ConnectionResetError())
    await asyncio.wait_for(cancelled.wait(), 1)
    await settle()
    assert server.active_requests == 0
    assert server.connections == 0


async def test_one_task_serves_a_keep_alive_connection_and_ends_with_it():
    """The connection's requests run in turn in one task, which waits for the next request
    while the connection is idle and ends when the connection does: closed by the client
    while idle, after a request that closes it, or cancelled at shutdown while idle."""
    tasks = []

    async def handler(ex):
        tasks.append(asyncio.current_task())
        await echo(ex)

    proto, t, server = conn(handler)
    for body in (b"one", b"two", b"three"):
        proto.data_received(post(body))
        await settle()
    assert [r.body.rsplit(b"|", 1)[1] for r in parse_responses(t.data)] == \
        [b"one", b"two", b"three"]
    task = proto._task
    assert tasks == [task, task, task] and not task.done()  # idle, waiting for the next
    assert server.active_requests == 0
    proto.connection_lost(None)  # the client closed it while idle
    await settle()
    assert task.done() and not task.cancelled() and task.exception() is None
    assert proto._task is None and proto._waiter is None

    proto, t, _ = conn(handler)
    proto.data_received(post(b"last", extra=b"Connection: close\r\n"))
    await settle()
    assert parse_responses(t.data)[0].body.endswith(b"|last") and (t.closed or t.eof_written)
    assert proto._task is None  # nothing can follow a closing request

    proto, t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    task = proto._task
    proto.force_close()  # the shutdown deadline, while idle
    await settle()
    assert task.done() and proto._task is None and t.aborted


async def test_a_pipelined_burst_runs_in_the_connections_task_in_order():
    order = []
    gate = asyncio.Event()

    async def handler(ex):
        order.append((ex.request.body, asyncio.current_task()))
        if ex.request.body == b"a":
            await gate.wait()  # the others queue behind it
        await echo(ex)

    proto, t, _ = conn(handler)
    proto.data_received(post(b"a") + post(b"b") + post(b"c"))
    await settle()
    assert [b for b, _ in order] == [b"a"]
    gate.set()
    await settle(20)
    assert [b for b, _ in order] == [b"a", b"b", b"c"]
    assert len({task for _, task in order}) == 1
    assert [r.body.rsplit(b"|", 1)[1] for r in parse_responses(t.data)] == [b"a", b"b", b"c"]
    # and the next request after the burst, once idle, goes to the same task
    proto.data_received(post(b"d"))
    await settle()
    assert order[-1] == (b"d", order[0][1])


async def test_post_response_work_is_not_cancelled():
    done = asyncio.Event()
    gate = asyncio.Event()

    async def handler(ex):
        ex.respond(200, [], b"ok")
        await gate.wait()  # e.g. usage accounting after the response
        done.set()

    proto, _t, _ = conn(handler)
    proto.data_received(GET)
    await settle()
    proto.connection_lost(None)
    gate.set()
    await asyncio.wait_for(done.wait(), 1)


async def test_write_backpressure_makes_send_wait():
    progress = []

    async def handler(ex):
        ex.start_stream(200, [])
        for i in range(3):
            await ex.send(b"chunk%d" % i)
            progress.append(i)
        ex.end_stream()

    proto, t, _ = conn(handler)
    t.pause_on_write = True
    proto.data_received(GET)
    await settle()
    assert progress == []  # first send wrote, then waits for the transport
    assert b"chunk0" in t.data and b"chunk1" not in t.data
    proto.resume_writing()
    await settle()
    assert progress == [0]
    assert b"chunk1" in t.data and b"chunk2" not in t.data
    t.pause_on_write = False
    proto.resume_writing()
    proto.resume_writing()  # a spurious resume is harmless
    await settle()
    assert progress == [0, 1, 2]
    assert one_response(t).body == b"chunk0chunk1chunk2"


async def test_disconnect_while_paused_raises_client_disconnected():
    outcome = []

    async def handler(ex):
        ex.start_stream(200, [])
        try:
            await ex.send(b"x")
            await ex.send(b"y")
        except ClientDisconnected:
            outcome.append("disconnected")
            assert ex.client_gone
            raise

    proto, t, _ = conn(handler)
    proto.pause_writing()
    proto.data_received(GET)
    await settle()
    proto.connection_lost(BrokenPipeError())
    await settle()
    # either the send saw ClientDisconnected or the task got cancelled first
    assert outcome in ([], ["disconnected"])
    assert t.data.count(b"\r\n1\r\n") == 1


async def test_send_after_disconnect_raises():
    result = []

    async def handler2(ex):
        ex.start_stream(200, [])
        ex._conn.connection_lost(None)
        try:
            await ex.send(b"x")
        except ClientDisconnected:
            result.append("raised")
        ex.end_stream()

    proto, _t, _ = conn(handler2)
    proto.data_received(GET)
    await settle()
    assert result == ["raised"]


# --------------------------------------------------------------------------
# timeouts (real loop, short limits)
# --------------------------------------------------------------------------
async def test_header_timeout_is_408():
    proto, t, _ = conn(header_timeout=0.05)
    proto.data_received(b"GET / HTTP/1.1\r\nHo")
    await asyncio.sleep(0.02)
    proto.data_received(b"st: h\r\n")  # trickling does not extend the deadline
    await asyncio.sleep(0.1)
    assert_error(one_response(t), 408, "request_timeout")
    assert t.closed or t.eof_written


async def test_header_timeout_from_connection_open():
    _proto, t, _ = conn(header_timeout=0.05)
    await asyncio.sleep(0.1)
    assert_error(one_response(t), 408)


async def test_body_timeout_is_408():
    proto, t, _ = conn(body_timeout=0.05, header_timeout=5)
    proto.data_received(post(b"0123456789")[:-5])
    await asyncio.sleep(0.12)
    assert_error(one_response(t), 408)


async def test_keepalive_timeout_closes_silently():
    proto, t, _ = conn(keepalive_timeout=0.05, header_timeout=5)
    proto.data_received(GET)
    await settle()
    n = len(t.data)
    await asyncio.sleep(0.12)
    assert t.closed
    assert len(t.data) == n


async def test_keepalive_timer_rearms_between_requests():
    proto, t, _ = conn(keepalive_timeout=0.08, header_timeout=5)
    for _ in range(4):
        proto.data_received(GET)
        await asyncio.sleep(0.04)
    assert not t.closed
    await asyncio.sleep(0.12)
    assert t.closed
    assert len(parse_responses(t.data)) == 4


async def test_many_connections_time_out_each_at_its_own_deadline():
    # One loop timer serves every connection's timeout (protocol.py _Timeouts, 10 ms
    # slots): each idle connection gets its 408 at or after its own deadline, never early,
    # and a connection that ended before its deadline is not touched (its entry emptied,
    # so the slot does not keep the protocol alive).
    loop = asyncio.get_running_loop()
    first, t, server = conn(header_timeout=0.06)
    conns = [(loop.time(), first, t)]
    for _ in range(11):
        await asyncio.sleep(0.004)
        proto = harness.HttpProtocol(server)  # this test's build (conftest)
        t = harness.MockTransport()
        t.protocol = proto
        proto.connection_made(t)
        conns.append((loop.time(), proto, t))
    ended = conns[5][1]
    entry = ended._timer
    ended.connection_lost(None)
    assert ended._timer is None and entry == [None]
    closed_at: dict[int, float] = {}
    deadline = loop.time() + 1.0
    while len(closed_at) < len(conns) - 1 and loop.time() < deadline:
        for i, (_, _proto, t) in enumerate(conns):
            if i != 5 and t.data and i not in closed_at:
                closed_at[i] = loop.time()
        await asyncio.sleep(0.002)
    assert sorted(closed_at) == [i for i in range(len(conns)) if i != 5]
    for i, at in closed_at.items():
        opened = conns[i][0]
        assert at >= opened + 0.06 - 0.003, (i, at - opened)  # never early (poll slack)
        assert_error(one_response(conns[i][2]), 408)
    assert not conns[5][2].data  # the ended one got nothing


async def test_a_flood_of_short_connections_leaves_no_timeouts_behind():
    # Every connection arms its header timeout on open and cancels it when it ends; the
    # cancelled entries are swept from their slots once they are many, so what the
    # timeouts hold follows the open connections, not the connections of the last
    # header_timeout seconds.
    first, _, server = conn()
    timeouts = first._timeouts
    for _ in range(5000):
        proto = harness.HttpProtocol(server)
        t = harness.MockTransport()
        t.protocol = proto
        proto.connection_made(t)
        proto.connection_lost(None)
    assert timeouts.held() <= 2048 + 1  # the sweep's threshold (twice 1,024) and `first`
    assert first._timer is not None and first._timer[0] is first  # still armed


async def test_no_timeout_while_handler_runs():
    async def handler(ex):
        await asyncio.sleep(0.15)
        ex.respond(200, [], b"slow")

    proto, t, _ = conn(handler, header_timeout=0.03, body_timeout=0.03, keepalive_timeout=0.03)
    proto.data_received(GET)
    await asyncio.sleep(0.2)
    assert one_response(t).body == b"slow"


async def test_drain_serves_a_request_racing_the_shutdown_with_connection_close():
    # A keep-alive response already went out; the client reuses the
    # connection just as the server starts draining.  Closing the idle
    # connection at once would reset that request; it must be answered.
    proto, t, _ = conn()
    proto.data_received(post(b"first"))
    await settle()
    assert parse_responses(t.data)[0].header("connection") != "close"
    proto.begin_shutdown()
    assert not t.closed
    proto.data_received(post(b"second"))
    await settle()
    rs = parse_responses(t.data)
    assert [r.body.rsplit(b"|", 1)[1] for r in rs] == [b"first", b"second"]
    assert rs[1].header("connection") == "close"
    assert t.closed or t.eof_written


async def test_drain_closes_an_idle_connection_after_the_grace():
    proto, t, _ = conn()
    proto.data_received(post(b"x"))
    await settle()
    proto.begin_shutdown()
    await asyncio.sleep(1.3)
    assert t.closed


async def test_header_values_are_latin1_text_in_both_builds():
    # obs-text bytes (RFC 9110 5.5) arrive as latin-1 text; a repeated header is joined.
    seen = {}

    async def handler(ex):
        seen.update(ex.request.headers)
        ex.respond(200, [], b"")

    proto, t, _ = conn(handler)
    proto.data_received(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xe9 \xff\r\nX-B: 1\r\nx-b: 2\r\n\r\n"
    )
    await settle()
    assert one_response(t).status == 200
    assert seen["x-a"] == "caf\u00e9 \u00ff"
    assert seen["x-b"] == "1, 2"


async def test_path_and_query_text_without_percent_decoding():
    seen = []

    async def handler(ex):
        seen.append((ex.request.path, ex.request.query))
        ex.respond(200, [], b"")

    proto, t, _ = conn(handler)
    proto.data_received(b"GET /a%C3%A9b?q=%FF&r=1#frag HTTP/1.1\r\nHost: h\r\n\r\n")
    proto.data_received(b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    assert [r.status for r in parse_responses(t.data)] == [200, 200]
    assert seen == [("/a%C3%A9b", "q=%FF&r=1"), ("/plain", "")]
