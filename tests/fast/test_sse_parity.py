"""The compiled SSE parser (helix/_fast/sse_c.pyx, hand-written C) and its pure-Python twin
(sse_py.py) must behave identically: same events for any stream, cut anywhere, fed as bytes,
bytearray or memoryview, with the same bytes left buffered."""

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix._fast import ScanRelayC, ScanRelayPy, SSEParserC, SSEParserPy

IMPLS = [SSEParserPy] + ([SSEParserC] if SSEParserC is not None else [])
SCANS = [ScanRelayPy] + ([ScanRelayC] if ScanRelayC is not None else [])


@pytest.fixture(params=IMPLS, ids=lambda c: c.__module__)
def parser_cls(request):
    return request.param


def feed_all(cls, chunks):
    p = cls()
    out = []
    for c in chunks:
        out.extend(p.feed(c))
    return out


def test_basic_events(parser_cls):
    stream = (
        b': keep-alive\n\nevent: message_start\ndata: {"a":1}\n\n'
        b"data: line1\ndata: line2\n\ndata:nospace\r\n\r\ndata: [DONE]\r\r"
    )
    expected = [
        ("message_start", b'{"a":1}'),
        (None, b"line1\nline2"),
        (None, b"nospace"),
        (None, b"[DONE]"),
    ]
    assert feed_all(parser_cls, [stream]) == expected
    assert feed_all(parser_cls, [stream[i : i + 1] for i in range(len(stream))]) == expected


def test_unterminated_event_is_not_emitted(parser_cls):
    p = parser_cls()
    assert p.feed(b"data: partial") == []
    assert p.buffered > 0
    assert p.close() == []


def test_compiled_twin_is_built_when_extensions_are_expected():
    import os

    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert SSEParserC is not None


lines = st.lists(
    st.one_of(
        st.builds(
            lambda s: b"data: " + s,
            st.binary(max_size=20).filter(lambda b: b"\n" not in b and b"\r" not in b),
        ),
        st.builds(
            lambda f, s: f + s,
            st.sampled_from([b"event:", b"event: ", b"data:", b"dat", b"datax: ", b"data :"]),
            st.binary(max_size=12).filter(lambda b: b"\n" not in b and b"\r" not in b),
        ),
        st.sampled_from([b"", b": c", b"event: x", b"id: 1", b"retry: 5", b"data", b"event"]),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(lines, st.sampled_from([b"\n", b"\r\n", b"\r"]), st.lists(st.integers(0, 400), max_size=8))
def test_parity_random_streams_and_splits(ls, eol, cuts):
    stream = eol.join(ls) + eol + eol
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks, prev = [], 0
    for p in [*points, len(stream)]:
        chunks.append(stream[prev:p])
        prev = p
    whole = feed_all(SSEParserPy, [stream])
    assert feed_all(SSEParserPy, chunks) == whole
    for cls in IMPLS[1:]:
        assert feed_all(cls, chunks) == whole


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks, prev = [], 0
    for p in [*points, len(stream)]:
        chunks.append(stream[prev:p])
        prev = p
    return chunks


@settings(max_examples=300, deadline=None)
@given(lines, st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=1, max_size=4),
       st.lists(st.integers(0, 400), max_size=10), st.sampled_from([bytes, bytearray, memoryview]),
       st.booleans())
def test_parity_mixed_line_ends_buffer_types_and_tail(ls, eols, cuts, kind, finish):
    """Line ends mixed within one stream (a CR at a chunk's end, its LF in the next), every
    chunk as one buffer type, and a stream that stops mid-line: the events and the bytes
    left buffered agree chunk by chunk."""
    stream = b"".join(line + eols[i % len(eols)] for i, line in enumerate(ls))
    if finish:
        stream += eols[0] * 2
    chunks = _split(stream, cuts)
    parsers = [cls() for cls in IMPLS]
    for chunk in chunks:
        got = [p.feed(kind(chunk)) for p in parsers]
        assert all(g == got[0] for g in got), (chunk, got)
        assert len({p.buffered for p in parsers}) == 1
    assert len({tuple(p.close()) for p in parsers}) == 1
    assert {p.buffered for p in parsers} == {0}


@pytest.mark.parametrize("cls", IMPLS, ids=lambda c: c.__module__)
def test_long_line_a_byte_at_a_time(cls):
    """A 20,000-byte event delivered one byte per feed (the tail is searched once)."""
    payload = b"x" * 20_000
    stream = b"data: " + payload + b"\n\nevent: e\xff\ndata: 2\n\n"
    p = cls()
    events = []
    for i in range(len(stream)):
        events += p.feed(stream[i : i + 1])
    assert events == [(None, payload), ("e\ufffd", b"2")]
    assert p.buffered == 0


# -- ScanRelay: the pass-through relays' base (helix/providers) ---------------------------------


def _seen(base):
    class Seen(base):
        __slots__ = ("seen",)

        def __init__(self, keys, names=None):
            super().__init__(keys, names)
            self.seen = []

        def see(self, event, data):
            self.seen.append((event, data))

    return Seen


@settings(max_examples=300, deadline=None)
@given(lines, st.sampled_from([b"\n", b"\r\n"]), st.lists(st.integers(0, 400), max_size=8),
       st.lists(st.sampled_from([b"a", b"da", b"\xff", b'"usage"', b"x y"]), min_size=1,
                max_size=3),
       st.sampled_from([None, ("x",), ("x", "e")]), st.sampled_from([bytes, bytearray]))
def test_scan_relay_sees_exactly_the_matching_events(ls, eol, cuts, keys, names, kind):
    """Both twins hand on every byte unchanged and call ``see`` for exactly the events whose
    data holds a key or whose name is listed, in order."""
    stream = eol.join(ls) + eol + eol
    chunks = _split(stream, cuts)
    events = feed_all(SSEParserPy, chunks)
    want = [(e, d) for e, d in events
            if any(k in d for k in keys) or (names is not None and e in names)]
    for base in SCANS:
        relay = _seen(base)(keys, names)
        for chunk in chunks:
            assert relay.feed(kind(chunk)) == chunk
        assert relay.close() == b""
        assert relay.seen == want, base


@pytest.mark.parametrize("base", SCANS, ids=lambda c: c.__module__)
def test_scan_relay_keys_are_bytes(base):
    for bad in ([""], [b""], ["usage"]):
        with pytest.raises(TypeError):
            base(bad)
    assert base([b"k"]).feed(b"data: k\n\n") == b"data: k\n\n"  # see() of the base: nothing


# -- ScanRelay's key search (sse_c.find: two anchor bytes tested 16 offsets at a time) --------

_find = importlib.import_module(ScanRelayC.__module__).find if ScanRelayC is not None else None
needs_c = pytest.mark.skipif(_find is None, reason="compiled twin not built")

# Small alphabets so that keys occur, partly occur and overlap; JSON punctuation so that the
# anchor choice (which skips it) meets keys made only of it, of one non-punctuation byte, ...
_alpha = st.sampled_from([b"a", b"b", b'"', b":", b" ", b"\x00", b"\xff", b"e"])
_text = st.lists(_alpha, max_size=90).map(b"".join)
_key = st.lists(_alpha, min_size=1, max_size=12).map(b"".join)


@needs_c
@settings(max_examples=3000, deadline=None)
@given(_text, _key, _text, st.booleans())
def test_find_is_bytes_find(before, key, after, plant):
    """Every offset (a block of 16, the tail after it, a haystack shorter than the key), with
    the key planted or not: the first occurrence, as ``bytes.find``."""
    hay = before + key + after if plant else before + after
    assert _find(hay, key) == hay.find(key)
    for cut in (0, 1, 15, 16, 17, len(hay) - 1):
        if 0 <= cut <= len(hay):
            assert _find(hay[cut:], key) == hay[cut:].find(key)


@needs_c
@pytest.mark.parametrize("key", [b'"usage"', b'{"type":"message_stop"', b'"type":"error"',
                                 b'"id":"', b'""', b"x", b'"response":{"id":"'])
def test_find_real_keys_at_every_offset(key):
    """The relays' own keys planted at every offset of an OpenAI-style chunk, and absent."""
    chunk = (b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
             b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}')
    for i in range(len(chunk) + 1):
        hay = chunk[:i] + key + chunk[i:]
        assert _find(hay, key) == hay.find(key)
        assert _find(chunk[:i], key) == chunk[:i].find(key)


@pytest.mark.parametrize("base", SCANS, ids=lambda c: c.__module__)
def test_scan_relay_takes_at_most_four_keys(base):
    base([b"a", b"b", b"c", b"d"])
    with pytest.raises(ValueError):
        base([b"a", b"b", b"c", b"d", b"e"])
