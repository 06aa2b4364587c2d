"""Upstream answers that lie (issue 14.7) and oversized ones (issue 14.2), client side."""

from __future__ import annotations

import pytest

from helix.client import Origin, PoolLimits, Timeouts, UpstreamPool
from helix.errors import ErrorKind, HelixError
from tests.client.kit import Upstream


def origin(srv: Upstream) -> Origin:
    return Origin("http", "127.0.0.1", srv.port)


def raw(data: bytes):
    async def handler(req, w, srv):
        w.write(data)
        await w.drain()

    return handler


async def request(srv, limits=PoolLimits(), check=False):
    pool = UpstreamPool(limits)
    try:
        resp = await pool.request(origin(srv), b"POST", b"/", [], b"{}", Timeouts(total=5))
        if check:
            resp.check_answer()
        return resp.status, await resp.read(), pool.stats()
    finally:
        await pool.close()


@pytest.mark.parametrize("status", [b"999", b"600", b"000", b"099"])
def test_status_outside_100_599_is_a_protocol_error(run, status):
    async def go():
        head = b"HTTP/1.1 " + status + b" Weird\r\ncontent-length: 2\r\n\r\n{}"
        async with Upstream(raw(head)) as srv:
            with pytest.raises(HelixError) as info:
                await request(srv)
            assert info.value.kind is ErrorKind.UPSTREAM_PROTOCOL
            assert info.value.status == 502
            assert "invalid status" in info.value.message

    run(go)


def test_declared_length_over_the_limit_fails_before_reading(run):
    async def go():
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n{"
        async with Upstream(raw(head)) as srv:
            with pytest.raises(HelixError) as info:
                await request(srv, PoolLimits(max_response_bytes=1000))
            err = info.value
            assert err.status == 502 and err.code == "upstream_response_too_large"

    run(go)


def test_chunked_body_over_the_limit_is_cut(run):
    async def handler(req, w, srv):
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(200):
            w.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
            await w.drain()
        w.write(b"0\r\n\r\n")

    async def go():
        async with Upstream(handler) as srv:
            pool = UpstreamPool(PoolLimits(max_response_bytes=50_000))
            resp = await pool.request(origin(srv), b"GET", b"/", [], b"", Timeouts(total=5))
            with pytest.raises(HelixError) as info:
                await resp.read()
            assert info.value.code == "upstream_response_too_large"
            # The connection is not kept: its slot is free again.
            assert pool.stats()[f"http://127.0.0.1:{srv.port}"]["active"] == 0
            await pool.close()

    run(go)


def test_body_at_the_limit_is_read(run):
    async def go():
        body = b'{"a":"' + b"y" * 990 + b'"}'
        head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)
        async with Upstream(raw(head + body)) as srv:
            status, got, _ = await request(srv, PoolLimits(max_response_bytes=len(body)), True)
            assert status == 200 and got == body

    run(go)


@pytest.mark.parametrize(
    "ctype, body",
    [
        (b"text/html; charset=utf-8", b'{"looks":"like json"}'),
        (b"application/json", b"<html><body>502 Bad Gateway</body></html>"),
        (b"application/json", b"[1, 2, 3]"),
        (b"application/json", b""),
        (b"application/json", b'{"a":' * 2000 + b"1" + b"}" * 2000),
    ],
)
def test_answers_that_are_not_json_are_502(run, ctype, body):
    async def go():
        head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (
            ctype, len(body))
        async with Upstream(raw(head + body)) as srv:
            with pytest.raises(HelixError) as info:
                await request(srv, check=True)
            assert info.value.status == 502
            assert info.value.code == "upstream_invalid_response"
            assert b"Bad Gateway" not in info.value.to_json()

    run(go)


def test_content_encoded_answer_is_not_inspected(run):
    async def go():
        body = b"\x1f\x8b not really gzip"
        head = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                b"content-length: %d\r\n\r\n" % len(body))
        async with Upstream(raw(head + body)) as srv:
            _status, got, _ = await request(srv, check=True)
            assert got == body

    run(go)


@pytest.mark.parametrize("how", ["read", "read_upto", "arrived"])
def test_a_reader_replaces_the_json_check_and_keeps_its_result(run, how):
    """``resp.reader`` (forward sets the API's native_check) runs where the pool's JSON check
    would, on the same body, and its answer is ``resp.read_result``; its error is the
    read's.  Without a JSON body (here: compressed) neither runs."""
    import asyncio

    body = b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4}}'
    seen = []

    def reader(data, label, prefix):
        seen.append((data, prefix))
        if data.startswith(b"["):
            raise HelixError(ErrorKind.UPSTREAM_PROTOCOL, "not an object")
        return "usage!"

    async def take(resp):
        if how == "read":
            return await resp.read()
        if how == "read_upto":
            data, whole = await resp.read_upto(1 << 20)
            assert whole
            return data
        for _ in range(200):  # until the whole body is in
            data = resp.arrived()
            if data is not None:
                return data
            await asyncio.sleep(0.005)
        raise AssertionError("the body never arrived")

    async def one(payload: bytes, extra: bytes = b""):
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + extra
        head += b"content-length: %d\r\n\r\n" % len(payload)
        async with Upstream(raw(head + payload)) as srv:
            pool = UpstreamPool(PoolLimits())
            try:
                resp = await pool.request(origin(srv), b"POST", b"/", [], b"{}",
                                          Timeouts(total=5))
                resp.check_answer()
                resp.reader = reader
                return await take(resp), resp.read_result
            finally:
                await pool.close()

    async def go():
        assert await one(body) == (body, "usage!")
        assert seen == [(body, "upstream ")]
        with pytest.raises(HelixError, match="not an object"):
            await one(b"[1]")
        seen.clear()
        assert await one(body, b"content-encoding: gzip\r\n") == (body, None)
        assert seen == []

    run(go)
