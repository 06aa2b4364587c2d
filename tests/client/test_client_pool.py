"""The pool against real sockets on 127.0.0.1 (small asyncio servers from
``kit.py``).  Every test runs on uvloop and on the stdlib loop."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys

import pytest

from helix.client import Origin, PoolLimits, Timeouts, UpstreamPool
from helix.client import pool as pool_mod
from helix.errors import ErrorKind, HelixError
from tests.client.kit import Upstream, response, rst

SECRET = b"sk-very-secret-key"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def origin(srv: Upstream, scheme: str = "http", host: str = "127.0.0.1") -> Origin:
    return Origin(scheme, host, srv.port)


async def get(pool, o, target=b"/", timeouts=Timeouts(), body=b"", method=b"GET", **kw):
    resp = await pool.request(o, method, target, [(b"authorization", SECRET)], body, timeouts, **kw)
    return resp, await resp.read()


async def expect_error(kind: ErrorKind, aw) -> HelixError:
    with pytest.raises(HelixError) as ei:
        await aw
    err = ei.value
    assert err.kind is kind, err
    assert SECRET.decode() not in str(err)
    return err


# ------------------------------------------------------------------ reuse


def test_keep_alive_reuse_single_connection(run):
    async def go():
        async with Upstream() as srv:
            pool = UpstreamPool()
            o = origin(srv)
            for i in range(20):
                resp, body = await get(pool, o, b"/n%d" % i)
                assert resp.status == 200 and body == b"hello /n%d" % i
            assert srv.connections == 1
            assert pool.stats() == {
                f"http://127.0.0.1:{srv.port}": {"active": 0, "idle": 1, "waiting": 0}
            }
            req = srv.requests[0]
            assert req.header(b"host") == b"127.0.0.1:%d" % srv.port
            assert req.header(b"authorization") == SECRET
            await pool.close()

    run(go)


def test_post_body_and_chunked_response(run):
    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\nx-echo: y\r\n\r\n")
        w.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(req.body), req.body))

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            big = b"z" * 200_000
            for payload in (b'{"model":"x"}', big, b""):
                resp, body = await get(pool, origin(srv), method=b"POST", body=payload)
                assert resp.status == 201 and resp.header(b"x-echo") == b"y"
                assert body == payload
            assert srv.requests[-1].header(b"content-length") == b"0"
            assert srv.connections == 1
            await pool.close()

    run(go)


def test_connection_close_from_server_is_not_reused(run):
    async def handler(req, w, srv):
        w.write(response(b"bye", headers=[b"connection: close"]))
        return False

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            for _ in range(3):
                _, body = await get(pool, origin(srv))
                assert body == b"bye"
            assert srv.connections == 3
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["idle"] == 0
            await pool.close()

    run(go)


def test_close_delimited_response(run):
    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nstream until close")
        return False

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            _, body = await get(pool, origin(srv))
            assert body == b"stream until close"
            _, body = await get(pool, origin(srv))
            assert srv.connections == 2
            await pool.close()

    run(go)


# --------------------------------------------------------- limits/waiters


def test_per_origin_limit_fifo_waiters(run):
    async def go():
        async with Upstream() as srv:
            pool = UpstreamPool(PoolLimits(max_connections_per_origin=1))
            o = origin(srv)
            first = await pool.request(o, b"GET", b"/0", [], b"")
            order = []

            async def one(i):
                _resp, body = await get(pool, o, b"/%d" % i)
                order.append(body)

            tasks = [asyncio.create_task(one(i)) for i in range(1, 5)]
            for _ in range(5):
                await asyncio.sleep(0)
            stats = pool.stats()[f"http://127.0.0.1:{srv.port}"]
            assert stats == {"active": 1, "idle": 0, "waiting": 4}
            assert await first.read() == b"hello /0"
            await asyncio.gather(*tasks)
            assert order == [b"hello /%d" % i for i in range(1, 5)]
            assert srv.connections == 1
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"] == {
                "active": 0,
                "idle": 1,
                "waiting": 0,
            }
            await pool.close()

    run(go)


def test_pool_timeout(run):
    async def go():
        async with Upstream() as srv:
            pool = UpstreamPool(PoolLimits(max_connections_per_origin=1, pool_timeout=0.1))
            o = origin(srv)
            held = await pool.request(o, b"GET", b"/", [], b"")
            err = await expect_error(ErrorKind.POOL_TIMEOUT, get(pool, o))
            assert f"127.0.0.1:{srv.port}" in err.message
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["waiting"] == 0
            held.close()  # body already arrived -> reused
            _, body = await get(pool, o)
            assert body == b"hello /"
            assert srv.connections == 1
            await pool.close()

    run(go)


def test_idle_expiry(run):
    async def go():
        async with Upstream() as srv:
            pool = UpstreamPool(PoolLimits(idle_timeout=0.1))
            o = origin(srv)
            await asyncio.gather(*(get(pool, o) for _ in range(3)))
            key = f"http://127.0.0.1:{srv.port}"
            assert pool.stats()[key]["idle"] == 3
            await asyncio.sleep(0.3)
            assert pool.stats()[key]["idle"] == 0
            for _ in range(50):
                if srv.closed_connections == 3:
                    break
                await asyncio.sleep(0.01)
            assert srv.closed_connections == 3
            await get(pool, o)
            assert srv.connections == 4
            await pool.close()

    run(go)


def test_max_idle_per_origin(run):
    async def handler(req, w, srv):
        await srv.state.setdefault("go", asyncio.Event()).wait()
        w.write(response())

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool(PoolLimits(max_idle_per_origin=2))
            tasks = [asyncio.create_task(get(pool, origin(srv))) for _ in range(5)]
            while len(srv.requests) < 5:
                await asyncio.sleep(0.01)
            srv.state["go"].set()
            await asyncio.gather(*tasks)
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["idle"] == 2
            await pool.close()

    run(go)


def test_idle_connection_closed_by_server_is_dropped(run):
    async def handler(req, w, srv):
        w.write(response())
        return False  # close right after a keep-alive response (server idle timeout)

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            key = f"http://127.0.0.1:{srv.port}"
            await get(pool, origin(srv))
            for _ in range(100):
                if pool.stats()[key]["idle"] == 0:
                    break
                await asyncio.sleep(0.01)
            assert pool.stats()[key] == {"active": 0, "idle": 0, "waiting": 0}
            await get(pool, origin(srv))
            assert srv.connections == 2
            await pool.close()

    run(go)


# ------------------------------------------------------- stale / failures


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_stale_reused_connection_retried_once(run, how):
    async def handler(req, w, srv):
        if req.target == b"/second" and req.conn_id == 1:
            rst(w) if how == "rst" else w.close()  # dies before any response byte
            return False
        w.write(response(b"ok " + req.target))

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            o = origin(srv)
            assert (await get(pool, o, b"/first"))[1] == b"ok /first"
            _, body = await get(pool, o, b"/second", method=b"POST", body=b"payload")
            assert body == b"ok /second"
            assert srv.connections == 2
            assert [r.body for r in srv.requests if r.target == b"/second"] == [b"payload"] * 2
            await pool.close()

    run(go)


def test_stale_retry_happens_only_once(run):
    async def handler(req, w, srv):
        if req.target == b"/first":
            w.write(response())
        else:
            w.close()
            return False

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            await get(pool, origin(srv), b"/first")
            await expect_error(ErrorKind.UPSTREAM_PROTOCOL, get(pool, origin(srv), b"/x"))
            assert srv.connections == 2  # the original + exactly one fresh attempt
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["active"] == 0
            await pool.close()

    run(go)


def test_new_connection_closed_before_response_not_retried(run):
    async def handler(req, w, srv):
        w.close()
        return False

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            await expect_error(ErrorKind.UPSTREAM_PROTOCOL, get(pool, origin(srv)))
            assert srv.connections == 1
            await pool.close()

    run(go)


def test_reset_mid_response_not_retried(run):
    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await w.drain()
        await asyncio.sleep(0.05)
        rst(w)
        return False

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            resp = await pool.request(origin(srv), b"GET", b"/", [(b"x-api-key", SECRET)], b"")
            assert resp.status == 200
            err = await expect_error(ErrorKind.UPSTREAM_PROTOCOL, resp.read())
            assert f"127.0.0.1:{srv.port}" in err.message
            assert srv.connections == 1
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["active"] == 0
            await pool.close()

    run(go)


def test_partial_head_on_reused_connection_not_retried(run):
    async def handler(req, w, srv):
        if req.target == b"/first":
            w.write(response())
            return
        w.write(b"HTTP/1.1 200 O")
        await w.drain()
        await asyncio.sleep(0.05)
        rst(w)
        return False

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            await get(pool, origin(srv), b"/first")
            await expect_error(ErrorKind.UPSTREAM_PROTOCOL, get(pool, origin(srv), b"/2"))
            assert srv.connections == 1
            await pool.close()

    run(go)


def test_malformed_response_over_socket(run):
    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n")

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            await expect_error(ErrorKind.UPSTREAM_PROTOCOL, get(pool, origin(srv)))
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["active"] == 0
            await pool.close()

    run(go)


def test_connect_refused(run, free_port):
    async def go():
        pool = UpstreamPool()
        err = await expect_error(
            ErrorKind.CONNECT_REFUSED, get(pool, Origin("http", "127.0.0.1", free_port))
        )
        assert f"127.0.0.1:{free_port}" in err.message
        assert pool.stats()[f"http://127.0.0.1:{free_port}"]["active"] == 0
        await pool.close()

    run(go)


_NO_THREAD_SCRIPT = r"""
import asyncio, os, socket, uvloop
from helix.client import Origin, UpstreamPool

async def answer(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    await writer.drain()
    writer.close()

async def main():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(answer, sock=listener)
    threads = len(os.listdir("/proc/self/task"))
    pool = UpstreamPool()
    resp = await pool.request(Origin("http", "127.0.0.1", listener.getsockname()[1]),
                              b"GET", b"/", [], b"")
    assert await resp.read() == b"ok"
    await pool.close()
    server.close()
    print(threads, len(os.listdir("/proc/self/task")))

uvloop.run(main())
"""


def test_connect_to_an_address_starts_no_thread():
    """uvloop's ``sock_connect`` sends even an IP literal through ``getaddrinfo`` on its
    thread pool (four threads started by a worker's first connect, a thread hop on every
    one); the pool connects to the resolved address itself.  A fresh process, so no
    earlier test has started the pool already."""
    out = subprocess.run([sys.executable, "-c", _NO_THREAD_SCRIPT], capture_output=True,
                         text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    before, after = out.stdout.split()
    assert before == after == "1"


def test_connect_tries_next_address(run):
    class TwoAddresses:
        def __init__(self, bad, good):
            self.addrs = [
                (socket.AF_INET, ("127.0.0.1", bad)),
                (socket.AF_INET, ("127.0.0.1", good)),
            ]

        async def resolve(self, host, port):
            return self.addrs

    async def go():
        async with Upstream() as srv:
            bad = socket.socket()
            bad.bind(("127.0.0.1", 0))
            bad_port = bad.getsockname()[1]
            bad.close()
            pool = UpstreamPool(resolver=TwoAddresses(bad_port, srv.port))
            _, body = await get(pool, Origin("http", "upstream.test", srv.port))
            assert body == b"hello /"
            assert srv.requests[0].header(b"host") == b"upstream.test:%d" % srv.port
            await pool.close()

    run(go)


def test_dns_failure_is_connect_refused(run):
    class Failing:
        async def resolve(self, host, port):
            raise HelixError(ErrorKind.CONNECT_REFUSED, f"DNS lookup failed for {host}:{port}")

    async def go():
        pool = UpstreamPool(resolver=Failing())
        await expect_error(ErrorKind.CONNECT_REFUSED, get(pool, Origin("http", "x.test", 80)))
        assert pool.stats()["http://x.test:80"]["active"] == 0
        await pool.close()

    run(go)


def test_connect_timeout_tls_handshake_never_answered(run):
    """TCP accepts but the peer never speaks TLS: the connect budget covers
    the handshake, so this is CONNECT_TIMEOUT."""

    async def silent(reader, writer):
        await asyncio.sleep(5)

    async def go():
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            pool = UpstreamPool()
            err = await expect_error(
                ErrorKind.CONNECT_TIMEOUT,
                get(pool, Origin("https", "127.0.0.1", port), timeouts=Timeouts(connect=0.1)),
            )
            assert f"127.0.0.1:{port}" in err.message
            assert pool.stats()[f"https://127.0.0.1:{port}"]["active"] == 0
            await pool.close()
        finally:
            server.close()

    run(go)


def test_connect_timeout_tcp(run, monkeypatch):
    """The TCP connect itself hangs (simulated: no off-machine traffic)."""

    async def hanging(*args, **kwargs):
        await asyncio.sleep(30)

    monkeypatch.setattr(pool_mod, "open_connection", hanging)

    async def go():
        pool = UpstreamPool()
        o = Origin("http", "127.0.0.1", 9)
        await expect_error(ErrorKind.CONNECT_TIMEOUT, get(pool, o, timeouts=Timeouts(connect=0.05)))
        assert pool.stats()["http://127.0.0.1:9"]["active"] == 0
        await pool.close()

    run(go)


def test_first_byte_timeout(run):
    async def handler(req, w, srv):
        if req.target == b"/slow":
            await asyncio.sleep(5)
        w.write(response())

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            err = await expect_error(
                ErrorKind.READ_TIMEOUT, get(pool, origin(srv), b"/slow", Timeouts(first_byte=0.1))
            )
            assert f"127.0.0.1:{srv.port}" in err.message
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["active"] == 0
            _, body = await get(pool, origin(srv))  # a timed-out socket is never reused
            assert body == b"ok" and srv.connections == 2
            await pool.close()

    run(go)


def test_between_chunk_read_timeout(run):
    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await w.drain()
        await asyncio.sleep(5)

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            resp = await pool.request(origin(srv), b"GET", b"/", [], b"", Timeouts(read=0.1))
            assert await resp.next_chunk() == b"first"
            await expect_error(ErrorKind.READ_TIMEOUT, resp.next_chunk())
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["active"] == 0
            await pool.close()

    run(go)


@pytest.mark.parametrize("mode", ["whole", "stream"])
def test_total_deadline(run, mode):
    # An upstream trickling bytes faster than the read gap: only the total stops it
    # (`total` for a body read whole, `stream_total` for one consumed as a stream).
    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(100):
            w.write(b"4\r\ntick\r\n")
            await w.drain()
            await asyncio.sleep(0.03)

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            if mode == "whole":
                t = Timeouts(read=1.0, total=0.2)
            else:
                t = Timeouts(read=1.0, total=60.0, stream_total=0.2)
            resp = await pool.request(origin(srv), b"GET", b"/", [], b"", t)
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(HelixError) as ei:
                if mode == "whole":
                    await resp.read()
                async for _chunk in resp:
                    pass
            assert ei.value.kind is ErrorKind.READ_TIMEOUT
            assert loop.time() - start < 0.5
            await pool.close()

    run(go)


# ---------------------------------------------------------------- streaming


def test_streaming_chunks_arrive_one_by_one(run):
    """The server sends the next SSE event only after the client has seen the
    previous one, so passing proves chunk-by-chunk delivery."""

    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        w.write(b"transfer-encoding: chunked\r\n\r\n")
        for i in range(5):
            event = b'data: {"i": %d}\n\n' % i
            w.write(b"%x\r\n%s\r\n" % (len(event), event))
            await w.drain()
            await asyncio.wait_for(srv.state["seen"].get(), 5)
        w.write(b"0\r\n\r\n")

    async def go():
        async with Upstream(handler) as srv:
            srv.state["seen"] = asyncio.Queue()
            pool = UpstreamPool()
            resp = await pool.request(origin(srv), b"POST", b"/v1/chat", [], b"{}")
            assert resp.header(b"content-type") == b"text/event-stream"
            got = []
            async for chunk in resp:
                got.append(chunk)
                srv.state["seen"].put_nowait(True)
            assert got == [b'data: {"i": %d}\n\n' % i for i in range(5)]
            assert resp.released
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["idle"] == 1
            await pool.close()

    run(go)


def test_flow_control_slow_consumer(run):
    size = 4 * 1024 * 1024

    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        block = bytes(range(256)) * 256
        for _ in range(size // len(block)):
            w.write(block)
            await w.drain()

    async def go():
        async with Upstream(handler) as srv:
            limits = PoolLimits(read_high_water=64 * 1024, read_low_water=16 * 1024)
            pool = UpstreamPool(limits)
            resp = await pool.request(origin(srv), b"GET", b"/", [], b"")
            await asyncio.sleep(0.1)
            conn = resp._conn
            assert conn.paused
            assert conn.buffered < 64 * 1024 + 512 * 1024  # bounded by high water + a read
            total = 0
            max_buffered = 0
            while (chunk := await resp.next_chunk()) is not None:
                total += len(chunk)
                max_buffered = max(max_buffered, len(chunk))
            assert total == size
            assert max_buffered < 1024 * 1024
            await pool.close()

    run(go, timeout=30)


# ------------------------------------------------------------- cancellation


def test_cancel_during_request_releases_slot(run):
    async def handler(req, w, srv):
        if req.target == b"/hang":
            await asyncio.sleep(5)
        w.write(response())

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool(PoolLimits(max_connections_per_origin=1))
            key = f"http://127.0.0.1:{srv.port}"
            task = asyncio.create_task(get(pool, origin(srv), b"/hang"))
            waiter = asyncio.create_task(get(pool, origin(srv), b"/queued"))
            while not srv.requests:
                await asyncio.sleep(0.01)
            assert pool.stats()[key]["waiting"] == 1
            waiter.cancel()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert pool.stats()[key] == {"active": 0, "idle": 0, "waiting": 0}
            _, body = await get(pool, origin(srv))
            assert body == b"ok"
            assert srv.connections == 2  # the cancelled socket was not reused
            await pool.close()

    run(go)


def test_cancel_during_connect_releases_slot(run, monkeypatch):
    async def hanging(*args, **kwargs):
        await asyncio.sleep(30)

    monkeypatch.setattr(pool_mod, "open_connection", hanging)

    async def go():
        pool = UpstreamPool(PoolLimits(max_connections_per_origin=1))
        o = Origin("http", "127.0.0.1", 9)
        task = asyncio.create_task(get(pool, o))
        await asyncio.sleep(0.05)
        assert pool.stats()["http://127.0.0.1:9"]["active"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.stats()["http://127.0.0.1:9"]["active"] == 0
        await pool.close()

    run(go)


def test_cancel_during_streaming_read_closes_connection(run):
    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await w.drain()
        assert await asyncio.wait_for(req.reader.read(), 5) == b""  # client hung up
        return False

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            resp = await pool.request(origin(srv), b"GET", b"/", [], b"")
            assert await resp.next_chunk() == b"abc"
            task = asyncio.create_task(resp.next_chunk())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert resp.released
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"] == {
                "active": 0,
                "idle": 0,
                "waiting": 0,
            }
            for _ in range(100):
                if srv.closed_connections:
                    break
                await asyncio.sleep(0.01)
            assert srv.closed_connections == 1
            await pool.close()

    run(go)


def test_abandoned_response_closes_connection(run):
    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nabc")

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool()
            resp = await pool.request(origin(srv), b"GET", b"/", [], b"")
            resp.close()
            resp.close()
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["active"] == 0
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["idle"] == 0
            await pool.close()

    run(go)


# ------------------------------------------------------------------ close


def test_pool_close_fails_waiters_and_later_requests(run):
    async def go():
        async with Upstream() as srv:
            pool = UpstreamPool(PoolLimits(max_connections_per_origin=1))
            held = await pool.request(origin(srv), b"GET", b"/", [], b"")
            waiter = asyncio.create_task(get(pool, origin(srv)))
            await asyncio.sleep(0.01)
            await pool.close()
            await expect_error(ErrorKind.UNAVAILABLE, waiter)
            await expect_error(ErrorKind.UNAVAILABLE, get(pool, origin(srv)))
            held.close()

    run(go)


def test_waiter_cancelled_in_the_tick_it_is_granted(run):
    """The freed connection is handed to the waiter; if that waiter is cancelled
    before it runs, the connection must come back to the pool, not leak."""

    async def go():
        async with Upstream() as srv:
            pool = UpstreamPool(PoolLimits(max_connections_per_origin=1))
            key = f"http://127.0.0.1:{srv.port}"
            held = await pool.request(origin(srv), b"GET", b"/", [], b"")
            waiter = asyncio.create_task(get(pool, origin(srv)))
            await asyncio.sleep(0.01)
            assert pool.stats()[key]["waiting"] == 1
            assert await held.read() == b"hello /"  # hands the socket to the waiter ...
            waiter.cancel()  # ... which is cancelled before it can run
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert pool.stats()[key] == {"active": 0, "idle": 1, "waiting": 0}
            _, body = await get(pool, origin(srv))
            assert body == b"hello /" and srv.connections == 1
            await pool.close()

    run(go)


def test_dropped_response_does_not_leak_slot(run):
    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nabc")

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool(PoolLimits(max_connections_per_origin=1, pool_timeout=1))
            resp = await pool.request(origin(srv), b"GET", b"/", [], b"")
            del resp  # never read, never closed
            gc.collect()
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["active"] == 0
            await pool.close()

    run(go)
