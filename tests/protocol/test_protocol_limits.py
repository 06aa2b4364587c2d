"""Host (RFC 9112 3.2), the worker's request-body budget and connection cap (issue 14.2, 14.9)."""

from __future__ import annotations

import asyncio

import pytest

from helix.server import ServerLimits
from helix.server.protocol import HttpProtocol
from tests.protocol.mock import MockTransport, make_conn, one_response, parse_responses


async def settle(n: int = 8) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def ok(ex) -> None:
    ex.respond(200, [(b"content-type", b"text/plain")], b"ok:%d" % len(ex.request.body))


def conn(handler=ok, **limits):
    return make_conn(handler, ServerLimits(**limits), loop=asyncio.get_running_loop())


def add_conn(server) -> tuple[HttpProtocol, MockTransport]:
    proto = HttpProtocol(server)
    t = MockTransport()
    t.protocol = proto
    proto.connection_made(t)
    return proto, t


# ------------------------------------------------------------------ Host


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: a@b\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: h:80x\r\n\r\n",
        b"GET /health HTTP/1.0\r\nHost: [::1\r\n\r\n",
    ],
)
async def test_missing_empty_or_invalid_host_is_400(head):
    proto, t, _ = conn()
    proto.data_received(head)
    await settle()
    r = one_response(t)
    assert r.status == 400 and r.json()["error"]["code"] == "malformed_request"
    assert "host" in r.json()["error"]["message"].lower()


@pytest.mark.parametrize(
    "host", [b"h", b"api.example.com:8080", b"127.0.0.1", b"[::1]:8080", b"xn--bcher-kva.example",
             b"h:"],
)
async def test_valid_hosts_and_http10_without_host(host):
    proto, t, _ = conn()
    proto.data_received(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    proto.data_received(b"GET / HTTP/1.0\r\n\r\n")
    await settle()
    assert [r.status for r in parse_responses(t.data)] == [200, 200]


# ------------------------------------------------------------ body budget


def post(n: int, extra: bytes = b"") -> bytes:
    return b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n%b\r\n" % (n, extra)


async def test_declared_bodies_beyond_the_worker_budget_are_503_with_retry_after():
    release = asyncio.Event()

    async def slow(ex):
        await release.wait()
        await ok(ex)

    a, ta, server = conn(slow, max_body_bytes=1000, max_buffered_body_bytes=1500)
    a.data_received(post(1000) + b"x" * 1000)  # held until answered
    await settle()
    assert server.buffered == 1000
    b, tb = add_conn(server)
    b.data_received(post(600))  # 1000 + 600 > 1500: refused before reading
    await settle()
    r = one_response(tb)
    assert r.status == 503 and r.header("retry-after") == "1"
    assert r.json()["error"]["code"] == "server_busy"
    c, tc = add_conn(server)
    c.data_received(post(400) + b"y" * 400)  # fits
    await settle()
    assert server.buffered == 1400
    release.set()
    await settle()
    assert one_response(ta).body == b"ok:1000" and one_response(tc).body == b"ok:400"
    assert server.buffered == 0
    # A single body above max_body_bytes is still a 413.
    d, td = add_conn(server)
    d.data_received(post(1001))
    await settle()
    assert one_response(td).status == 413


async def test_chunked_bodies_crossing_the_budget_together():
    release = asyncio.Event()

    async def slow(ex):
        await release.wait()
        await ok(ex)

    head = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    a, ta, server = conn(slow, max_body_bytes=1000, max_buffered_body_bytes=1000)
    b, tb = add_conn(server)
    a.data_received(head + b"258\r\n" + b"a" * 600 + b"\r\n")
    b.data_received(head + b"258\r\n" + b"b" * 600 + b"\r\n")  # crosses: refused
    await settle()
    assert server.buffered == 600
    r = one_response(tb)
    assert r.status == 503
    a.data_received(b"0\r\n\r\n")
    release.set()
    await settle()
    assert one_response(ta).body == b"ok:600"
    assert server.buffered == 0


async def test_budget_is_returned_on_disconnect_mid_body_and_mid_handler():
    async def forever(ex):
        await asyncio.sleep(100)

    a, ta, server = conn(forever, max_buffered_body_bytes=64 * 1024 * 1024)
    a.data_received(post(5000) + b"x" * 3000)  # mid-body
    b, tb = add_conn(server)
    b.data_received(post(100) + b"y" * 100 + post(50) + b"z" * 50)  # running + pipelined
    await settle()
    assert server.buffered == 3150
    ta.abort()
    tb.abort()
    await settle()
    assert server.buffered == 0


# ------------------------------------------------------------ connection cap


async def test_max_connections_closes_the_longest_idle_keepalive_first():
    a, ta, server = conn(max_connections=2)
    b, tb = add_conn(server)
    a.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    b.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    assert list(server.idle) == [a, b]
    _c, tc = add_conn(server)  # at the cap: a (longest idle) is closed to make room
    await settle()
    assert ta.closed and not tb.closed and not tc.closed
    assert server.connections == 2 and server.evicted == 1
    # b busy, c waiting for its first request: nothing idle, a new one is refused.
    b.data_received(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab")
    await settle()
    _d, td = add_conn(server)
    await settle()
    assert td.closed and server.refused == 1 and server.connections == 2
    b.data_received(b"cde")
    await settle()
    assert [r.body for r in parse_responses(tb.data)] == [b"ok:0", b"ok:5"]


# ------------------------------------------------------------ lingering close


async def test_connection_close_lingers_and_discards_late_input():
    proto, t, _ = conn()
    proto.data_received(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    await settle()
    assert one_response(t).status == 200
    assert t.eof_written and not t.closed  # write side shut, still reading
    proto.data_received(b"garbage after close" * 100)  # discarded, no second response
    await settle()
    assert len(parse_responses(t.data)) == 1
    assert proto.eof_received() is None  # the client's EOF ends the linger


async def test_stray_bytes_after_a_request_make_the_close_linger():
    # Junk that fails at its first byte leaves the parser idle: the 400 must still linger.
    proto, t, _ = conn()
    proto.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n\x00junk")
    await settle()
    assert [r.status for r in parse_responses(t.data)] == [200, 400]
    assert t.eof_written and not t.closed


async def test_draining_closes_a_quiet_connection_at_once():
    release = asyncio.Event()

    async def slow(ex):
        await release.wait()
        await ok(ex)

    proto, t, _server = conn(slow)
    proto.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    await settle()
    proto.begin_shutdown()
    release.set()
    await settle()
    assert one_response(t).header("connection") == "close"
    assert t.closed  # nothing more was sent: no linger holding the shutdown


# ------------------------------------------------------------------ the limits' typed copy


async def test_limits_copied_once_per_limits_object_and_clamped():
    # The protocol reads its limits from a typed copy (protocol._Limits), made once per
    # ServerLimits (frozen): connections of one server share it; another ServerLimits gets
    # its own; a limit past sys.maxsize is held as sys.maxsize and still admits a body.
    import sys

    small = ServerLimits(max_body_bytes=10, max_headers=7, header_timeout=3.5)
    a, _, server = conn(max_body_bytes=10, max_headers=7, header_timeout=3.5)
    b, _ = add_conn(server)
    assert a._limits is b._limits
    lim = a._limits
    assert (lim.max_body_bytes, lim.max_headers, lim.header_timeout) == (10, 7, 3.5)
    for name in ("max_header_bytes", "max_buffered_body_bytes", "max_pipelined",
                 "write_high_water", "write_low_water", "body_timeout", "keepalive_timeout"):
        assert getattr(lim, name) == getattr(small, name), name
    huge, t, _ = conn(max_body_bytes=10**30, max_buffered_body_bytes=10**30)
    assert huge._limits is not lim
    assert huge._limits.max_body_bytes == sys.maxsize
    huge.data_received(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
    await settle()
    assert one_response(t).status == 200
    # A body over the small limit is refused on its connection.
    a.data_received(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n" + b"x" * 11)
    await settle()
    assert one_response(a.transport).status == 413
