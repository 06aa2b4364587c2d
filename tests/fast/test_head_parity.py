"""The compiled response-head builder and its pure-Python twin must give the same bytes
and the same errors (helix/_fast/head_c.pyx, head_py.py)."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix._fast import (
    crlf_c,
    crlf_py,
    date_line_c,
    date_line_py,
    frame_chunk_c,
    frame_chunk_py,
    head_c,
    head_py,
    http11_line_c,
    http11_line_py,
    length_line_c,
    length_line_py,
    split_target_c,
    split_target_py,
)
from helix.server.writer import build_head

IMPLS = [head_py] + ([head_c] if head_c is not None else [])

STATUS = b"HTTP/1.1 200 OK\r\n"
DATE = b"date: Sat, 05 Dec 2026 06:03:03 GMT\r\n"
RESERVED = [b"content-length", b"transfer-encoding", b"connection", b"date", b"keep-alive"]
NAMES = st.one_of(
    st.sampled_from([*RESERVED, b"Content-Length", b"content-type", b"x-a", b"dat", b"datE"]),
    st.binary(min_size=0, max_size=20),
)
VALUES = st.one_of(st.binary(max_size=40), st.sampled_from([b"a\rb", b"a\nb", b"", b"\r\n"]))


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # the type and message are what is compared
        return (type(exc), str(exc))


def test_compiled_twin_is_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert head_c is not None


@settings(max_examples=400, deadline=None)
@given(
    headers=st.lists(st.tuples(NAMES, VALUES), max_size=8),
    content_length=st.one_of(
        st.none(),
        st.integers(min_value=-3, max_value=10**12),
        st.sampled_from([0, 9, 10, 99, 100, 2**63, 10**19 - 1, 10**19, 2**64, 10**30]),
    ),
    chunked=st.booleans(),
    close=st.booleans(),
    keep_alive_10=st.booleans(),
    server=st.one_of(st.none(), st.sampled_from([b"helix", b""])),
)
def test_same_bytes_and_errors(headers, content_length, chunked, close, keep_alive_10, server):
    args = (STATUS, DATE, headers, content_length, chunked, close, keep_alive_10, server)
    expected = outcome(head_py, *args)
    for impl in IMPLS:
        assert outcome(impl, *args) == expected


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__module__)
def test_known_head(impl):
    out = impl(STATUS, DATE, [(b"content-type", b"application/json"), (b"content-length", b"9"),
                              (b"x-b", b"")], 5, False, False, False, b"helix")
    assert out == (STATUS + DATE + b"server: helix\r\ncontent-type: application/json\r\n"
                   b"x-b: \r\ncontent-length: 5\r\n\r\n")
    out = impl(STATUS, DATE, [], None, True, True, False, None)
    assert out == STATUS + DATE + b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    out = impl(STATUS, DATE, [], None, False, False, True, None)
    assert out == STATUS + DATE + b"connection: keep-alive\r\n\r\n"


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__module__)
@pytest.mark.parametrize("headers", [
    [(b"x-a", bytearray(b"v"))],          # any buffer %b takes
    ((b"x-a", b"v"),),                    # a tuple of headers
    [[b"x-a", b"v"]],                     # a list pair
    [(b"x-a", memoryview(b"v"))],
])
def test_other_buffers_and_containers(impl, headers):
    assert impl(STATUS, DATE, headers, 1, False, False, False, None) == \
        STATUS + DATE + b"x-a: v\r\ncontent-length: 1\r\n\r\n"


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__module__)
def test_wrong_types_fail_alike(impl):
    with pytest.raises(TypeError):
        impl(STATUS, DATE, [(b"x-a", "text")], 1, False, False, False, None)
    with pytest.raises(ValueError):
        impl(STATUS, DATE, [(b"x-a", b"v\r\nset-cookie: a=b")], 1, False, False, False, None)


def test_writer_uses_it():
    head = build_head(404, [(b"x-a", b"1")], 0, close=True)
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\ndate: ")
    assert head.endswith(b"\r\nx-a: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")


def test_version_says_compiled_only_when_every_accelerator_is(monkeypatch):
    import helix._fast as fast

    if fast.REASON is not None:  # the twins on purpose (HELIX_NO_EXTENSIONS) or no build
        assert fast.describe().startswith("pure-python")
        return
    monkeypatch.setitem(fast.COMPILED, "head", None)
    assert fast.describe() == "partial (pure-Python: head)"
    monkeypatch.undo()
    if all(fast.COMPILED.values()):
        assert fast.describe() == "compiled"


FRAMERS = [frame_chunk_py] + ([frame_chunk_c] if frame_chunk_c is not None else [])


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600) | st.sampled_from([b"", b"x" * 4096, b"y" * 65536]),
       end=st.booleans(), kind=st.sampled_from([bytes, bytearray, memoryview]))
def test_frame_chunk_same_bytes(data, end, kind):
    """The chunk framing, compiled and twin: hex length, CRLF, data, CRLF (and the
    terminator with ``end``), for every size and buffer type."""
    expected = b"%x\r\n" % len(data) + data + b"\r\n" + (b"0\r\n\r\n" if end else b"")
    for impl in FRAMERS:
        assert impl(kind(data), end) == expected
        if not end:
            assert impl(kind(data)) == expected


DATE_LINES = [date_line_py] + ([date_line_c] if date_line_c is not None else [])


@pytest.mark.parametrize("date_line", DATE_LINES)
def test_date_line_is_the_email_packages_fixdate(date_line):
    # Both twins give formatdate's IMF-fixdate as a header line: every weekday and month,
    # leap days, the ends of the C fast path's range (outside it: the twin).
    import random
    from email.utils import formatdate

    rng = random.Random(16)
    times = [0, 59, 951782400, 951868799, 1_700_000_000, 4102444799, 253402300799]
    times += [86400 * d for d in range(14)] + [86400 * 31 * m for m in range(13)]
    times += [rng.randrange(0, 253402300800) for _ in range(3000)]
    for t in times:
        want = b"date: " + formatdate(t, usegmt=True).encode("ascii") + b"\r\n"
        assert date_line(t) == want, t


@pytest.mark.skipif(date_line_c is None, reason="extensions not built")
def test_date_line_outside_the_fast_path_is_the_twins():
    for t in (253402300800, 10**12, True):
        assert date_line_c(t) == date_line_py(t)
    with pytest.raises((TypeError, OverflowError, ValueError, OSError)):
        date_line_py(10**30)
    with pytest.raises((TypeError, OverflowError, ValueError, OSError)):
        date_line_c(10**30)


# Lengths at every digit count, the C path's end (10**19 - 1) and past it (the twin's %d),
# and what is not a plain int.
LENGTHS = [0, 1, 9, 10, 99, 100, 65536, 2**31, 2**63, 2**64 - 1, 10**19 - 1, 10**19, 10**30]
LENGTHS += [10**k - 1 for k in range(1, 20)] + [10**k for k in range(1, 20)]


@pytest.mark.parametrize("n", [*LENGTHS, -1, True])
def test_length_line(n):
    want = b"content-length: " + str(int(n)).encode() + b"\r\n\r\n"
    assert length_line_py(n) == want
    if length_line_c is not None:
        assert length_line_c(n) == want


TARGET_BYTES = st.binary(max_size=40) | st.lists(
    st.sampled_from([b"/", b"a", b"?", b"#", b"=", b"&", b"\xe9", b"\r", b"\n", b"%2F"]),
    max_size=12,
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(url=TARGET_BYTES)
def test_split_target_twins_agree(url):
    path, query = split_target_py(url)
    bare = url.split(b"#", 1)[0]
    assert path == bare.split(b"?", 1)[0].decode("latin-1")
    assert query == (bare.split(b"?", 1)[1].decode("latin-1") if b"?" in bare else "")
    if split_target_c is not None:
        assert split_target_c(url) == (path, query)


@settings(max_examples=500, deadline=None)
@given(a=TARGET_BYTES, b=TARGET_BYTES)
def test_crlf_twins_agree(a, b):
    want = any(c in x for c in (b"\r", b"\n") for x in (a, b))
    assert crlf_py(a, b) is want
    if crlf_c is not None:
        assert crlf_c(a, b) is want


def test_split_target_known():
    for impl in filter(None, (split_target_py, split_target_c)):
        assert impl(b"/v1/chat/completions") == ("/v1/chat/completions", "")
        assert impl(b"/a?b=1?c#d?e") == ("/a", "b=1?c")
        assert impl(b"/a#?x") == ("/a", "")
        assert impl(b"/?") == ("/", "")
        assert impl(b"") == ("", "")


LINE_BYTES = st.lists(
    st.sampled_from([b"GET", b" ", b"/", b"HTTP/1.1", b"HTTP/1.0", b"\r", b"\n", b"\r\n", b"x"]),
    max_size=10,
).map(b"".join) | st.binary(max_size=30)


@settings(max_examples=500, deadline=None)
@given(data=LINE_BYTES)
def test_http11_line_twins_agree(data):
    line, nl, _ = data.partition(b"\n")
    want = bool(nl) and line.endswith(b" HTTP/1.1\r")
    assert http11_line_py(data) is want
    if http11_line_c is not None:
        assert http11_line_c(data) is want
        assert http11_line_c(bytearray(data)) is want  # not bytes: the twin
