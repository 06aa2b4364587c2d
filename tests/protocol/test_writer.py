"""Pure response-byte helpers."""

from __future__ import annotations

import re
import time

import pytest

from helix.server import writer


def test_status_lines_precomputed():
    assert writer.status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert writer.status_line(429) == b"HTTP/1.1 429 Too Many Requests\r\n"
    assert writer.status_line(599) == b"HTTP/1.1 599 \r\n"
    assert writer.status_line(599) is writer.status_line(599)
    with pytest.raises(ValueError):
        writer.status_line(1000)


def test_date_header_cached_per_second(monkeypatch):
    now = [1_700_000_000.1]
    monkeypatch.setattr(time, "time", lambda: now[0])
    a = writer.date_header()
    assert a == b"date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
    now[0] += 0.8
    assert writer.date_header() is a  # same second: cached object
    now[0] += 0.2
    b = writer.date_header()
    assert b == b"date: Tue, 14 Nov 2023 22:13:21 GMT\r\n"
    assert re.fullmatch(rb"date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n", b)


def test_build_head_variants():
    h = writer.build_head(200, [(b"x-a", b"1")], 5)
    assert h.startswith(b"HTTP/1.1 200 OK\r\ndate: ")
    assert h.endswith(b"x-a: 1\r\ncontent-length: 5\r\n\r\n")
    h = writer.build_head(200, [], None, chunked=True, close=True, server=b"helix")
    assert b"server: helix\r\n" in h
    assert h.endswith(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")
    h = writer.build_head(200, [], 0, keep_alive_10=True)
    assert h.endswith(b"content-length: 0\r\nconnection: keep-alive\r\n\r\n")


@pytest.mark.parametrize("bad", [b"a\r\nb", b"a\nb", b"a\rb"])
def test_build_head_rejects_crlf(bad):
    with pytest.raises(ValueError):
        writer.build_head(200, [(b"x", bad)], 0)
    with pytest.raises(ValueError):
        writer.build_head(200, [(bad, b"v")], 0)


def test_frame_chunk():
    assert writer.frame_chunk(b"hello") == b"5\r\nhello\r\n"
    assert writer.frame_chunk(memoryview(b"x" * 16)) == b"10\r\n" + b"x" * 16 + b"\r\n"


def test_http_date_matches_the_email_package():
    # The worker formats its Date header itself (no email-package import on the
    # way to the first request); it must be byte-for-byte what formatdate gives.
    import random
    from email.utils import formatdate

    from helix.server.writer import http_date

    rng = random.Random(15)
    times = [0, 951782400, 4102444799] + [rng.randrange(0, 4102444800) for _ in range(2000)]
    for t in times:
        assert http_date(t) == formatdate(t, usegmt=True), t
