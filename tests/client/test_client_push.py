"""UpstreamResponse.push: a streamed body relayed from the connection's read callback.

The sink runs inside ``data_received`` (no task woken per chunk); the pushing task only
wakes at the end, on an error, or when the sink says the client is slow.  Driven through
the fake transport of test_client_parsing, against both builds (conftest)."""

from __future__ import annotations

import asyncio

import pytest

from helix.client.pool import UpstreamResponse
from helix.errors import ErrorKind, HelixError
from tests.client.test_client_parsing import FakePool, make_conn, send

HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
END = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def started(read=30.0, stream_total=None):
    loop = asyncio.get_running_loop()
    conn, tr = make_conn()
    pool = FakePool()
    fut = send(conn, read=read)
    conn.data_received(HEAD + chunk(b"first"))
    await fut
    resp = UpstreamResponse(conn, pool, started=loop.time(), stream_total=stream_total)
    return conn, tr, pool, resp


async def _never():
    raise AssertionError("drain without a slow client")


def collector():
    got = []

    def sink(data, end):
        got.append((data, end))
        return False

    return got, sink


async def pushing(read=30.0, stream_total=None):
    """A started response being pushed into a collector: (conn, transport, pool, task, got)."""
    conn, tr, pool, resp = await started(read, stream_total)
    got, sink = collector()
    task = asyncio.ensure_future(resp.push(sink, _never))
    await asyncio.sleep(0)
    return conn, tr, pool, task, got


def test_each_read_is_pushed_from_the_read_callback():
    async def go():
        conn, _tr, pool, task, got = await pushing()
        assert got == [(b"first", False)]  # buffered with the head: pushed by the task
        conn.data_received(chunk(b"a") + chunk(b"b"))
        assert got[-1] == (b"ab", False)  # at once, one call for the read
        conn.data_received(chunk(b"c"))
        assert got[-1] == (b"c", False)
        assert not task.done()
        conn.data_received(chunk(b"d") + END)
        assert got[-1] == (b"d", True)  # the end came with these bytes
        await asyncio.wait_for(task, 1)
        assert pool.released == [conn] and conn.sink is None

    asyncio.run(go())


def test_the_terminator_alone_ends_the_push():
    async def go():
        conn, _tr, pool, task, got = await pushing()
        conn.data_received(chunk(b"a"))
        conn.data_received(END)
        await asyncio.wait_for(task, 1)
        assert got == [(b"first", False), (b"a", False)]
        assert pool.released == [conn]

    asyncio.run(go())


def test_data_restarts_the_read_timeout_and_silence_ends_it():
    async def go():
        conn, tr, pool, task, got = await pushing(read=0.2)
        for i in range(8):  # 0.56 s of data, never 0.2 s apart
            await asyncio.sleep(0.07)
            conn.data_received(chunk(b"x%d" % i))
            assert not task.done()
        with pytest.raises(HelixError) as ei:
            await asyncio.wait_for(task, 2)
        assert ei.value.kind is ErrorKind.READ_TIMEOUT and "no data" in str(ei.value)
        assert len(got) == 9 and pool.discarded == [conn] and tr.closed

    asyncio.run(go())


def test_the_stream_deadline_holds_while_data_flows():
    async def go():
        conn, _tr, pool, task, _got = await pushing(read=1.0, stream_total=0.3)
        with pytest.raises(HelixError) as ei:
            for _ in range(40):
                await asyncio.sleep(0.05)
                if task.done():
                    break
                conn.data_received(chunk(b"x"))
            await asyncio.wait_for(task, 2)
        assert ei.value.kind is ErrorKind.READ_TIMEOUT and "total time" in str(ei.value)
        assert pool.discarded == [conn]

    asyncio.run(go())


@pytest.mark.parametrize("last", [False, True])
def test_a_sink_that_raises_stops_the_stream(last):
    class Refused(Exception):
        pass

    async def go():
        conn, tr, pool, resp = await started()
        calls = []

        def sink(data, end):
            calls.append(data)
            if data == b"bad":
                raise Refused
            return False

        task = asyncio.ensure_future(resp.push(sink, _never))
        await asyncio.sleep(0)
        conn.data_received(chunk(b"bad") + (END if last else b""))
        with pytest.raises(Refused):
            await asyncio.wait_for(task, 1)
        assert calls == [b"first", b"bad"]
        assert pool.discarded == [conn] and tr.closed and conn.sink is None
        assert resp.released

    asyncio.run(go())


def test_a_slow_client_pauses_the_upstream_read_until_it_drains():
    async def go():
        conn, tr, pool, resp = await started()
        got = []
        slow = asyncio.Event()
        drained = asyncio.Event()

        def sink(data, end):
            got.append((data, end))
            return data == b"a"  # the client's buffer filled with this one

        async def drain():
            await drained.wait()

        task = asyncio.ensure_future(resp.push(sink, drain))
        await asyncio.sleep(0)
        conn.data_received(chunk(b"a"))
        assert tr.paused and conn.sink is None  # nothing more read upstream
        await asyncio.sleep(0.05)
        assert tr.paused and not task.done()
        slow.set()
        drained.set()
        for _ in range(100):
            await asyncio.sleep(0)
            if not tr.paused:
                break
        assert not tr.paused and conn.sink is not None  # reading again, pushing again
        conn.data_received(chunk(b"b") + END)
        await asyncio.wait_for(task, 1)
        assert got == [(b"first", False), (b"a", False), (b"b", True)]
        assert pool.released == [conn]

    asyncio.run(go())


def test_cancelling_the_push_discards_the_connection():
    async def go():
        conn, tr, pool, task, _got = await pushing()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.discarded == [conn] and tr.closed and conn.sink is None

    asyncio.run(go())


def test_an_upstream_reset_mid_stream_is_an_upstream_error():
    async def go():
        conn, _tr, pool, task, got = await pushing()
        conn.data_received(chunk(b"a"))
        conn.connection_lost(ConnectionResetError())
        with pytest.raises(HelixError) as ei:
            await asyncio.wait_for(task, 1)
        assert ei.value.kind is ErrorKind.UPSTREAM_PROTOCOL and "mid-response" in str(ei.value)
        assert got[-1] == (b"a", False) and pool.discarded == [conn]

    asyncio.run(go())


def test_the_last_bytes_are_pushed_when_junk_follows_the_end():
    async def go():
        conn, tr, _pool, task, got = await pushing()
        conn.data_received(chunk(b"z") + END + b"JUNK")
        await asyncio.wait_for(task, 1)
        assert got[-1] == (b"z", True) and tr.closed and not conn.reusable

    asyncio.run(go())
