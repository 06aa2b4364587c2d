"""helix.providers.eventstream against botocore's EventStreamBuffer (the oracle)."""

import itertools
import struct
import uuid
from zlib import crc32

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from helix.errors import ErrorKind, HelixError
from helix.providers.eventstream import EventStreamDecoder, encode_message


def by_hand(headers: bytes, payload: bytes) -> bytes:
    """A frame assembled field by field, independent of encode_message."""
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", crc32(prelude))
    msg = prelude + headers + payload
    return msg + struct.pack(">I", crc32(msg))


def hdr(name: str, code: int, raw: bytes) -> bytes:
    return bytes([len(name)]) + name.encode() + bytes([code]) + raw


UUID = uuid.UUID("12345678-1234-5678-1234-567812345678").bytes
ALL_TYPES = b"".join(
    [
        hdr("t", 0, b""),
        hdr("f", 1, b""),
        hdr("i8", 2, struct.pack(">b", -5)),
        hdr("i16", 3, struct.pack(">h", -300)),
        hdr("i32", 4, struct.pack(">i", 70000)),
        hdr("i64", 5, struct.pack(">q", -(2**40))),
        hdr("bytes", 6, struct.pack(">H", 3) + b"\x00\xff\x01"),
        hdr("str", 7, struct.pack(">H", 5) + "héllo".encode()[:5]),
        hdr("ts", 8, struct.pack(">q", 1700000000123)),
        hdr("uuid", 9, UUID),
    ]
)


def botocore_decode(data: bytes, pieces=None):
    buf = EventStreamBuffer()
    out = []
    for piece in pieces or [data]:
        buf.add_data(piece)
        out.extend((m.headers, m.payload) for m in buf)
    return out


def ours_decode(data: bytes, pieces=None):
    dec = EventStreamDecoder()
    out = []
    for piece in pieces or [data]:
        out.extend((m.headers, m.payload) for m in dec.feed(piece))
    assert dec.pending == 0
    return out


STREAM = (
    by_hand(ALL_TYPES, b'{"a":1}')
    + by_hand(b"", b"")
    + by_hand(hdr(":event-type", 7, struct.pack(">H", 12) + b"messageStart"), b"x" * 300)
    + encode_message(
        {":event-type": "contentBlockDelta", ":message-type": "event", "n": 7, "b": b"\x01",
         "ok": True, "no": False, "big": (5, 2**50), "when": (8, 5), "id": (9, UUID),
         "small": (2, -1), "mid": (3, 512)},
        b'{"contentBlockIndex":0,"delta":{"text":"Hello"}}',
    )
)


def test_all_header_types_equal_botocore():
    ours = ours_decode(STREAM)
    assert ours == botocore_decode(STREAM)
    first = ours[0][0]
    assert first["t"] is True and first["f"] is False and first["i8"] == -5
    assert first["i16"] == -300 and first["i32"] == 70000 and first["i64"] == -(2**40)
    assert first["bytes"] == b"\x00\xff\x01" and first["ts"] == 1700000000123
    assert first["uuid"] == UUID and len(ours) == 4
    assert ours[1] == ({}, b"")


def test_one_byte_at_a_time():
    pieces = [STREAM[i : i + 1] for i in range(len(STREAM))]
    assert ours_decode(STREAM, pieces) == botocore_decode(STREAM)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_random_split_points(cuts):
    cuts = sorted(set(cuts))
    bounds = [0, *cuts, len(STREAM)]
    pieces = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert ours_decode(STREAM, pieces) == botocore_decode(STREAM)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(
                st.text(min_size=1, max_size=10),
                st.one_of(st.booleans(), st.integers(-(2**31), 2**31 - 1), st.binary(max_size=20),
                          st.text(max_size=20)),
                max_size=4,
            ),
            st.binary(max_size=200),
        ),
        min_size=1,
        max_size=5,
    ),
    st.integers(min_value=1, max_value=50),
)
def test_encoder_round_trips_through_botocore(messages, step):
    data = b"".join(encode_message(h, p) for h, p in messages)
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    assert ours_decode(data, pieces) == botocore_decode(data) == [(h, p) for h, p in messages]


@pytest.mark.parametrize("where", ["prelude", "message", "payload"])
def test_corrupted_crc_is_upstream_protocol_error(where):
    frame = bytearray(encode_message({":event-type": "x"}, b"payload"))
    if where == "prelude":
        frame[8] ^= 0xFF
    elif where == "message":
        frame[-1] ^= 0xFF
    else:
        frame[-6] ^= 0x01
    with pytest.raises(HelixError) as ei:
        EventStreamDecoder().feed(bytes(frame))
    assert ei.value.kind is ErrorKind.UPSTREAM_PROTOCOL and "CRC" in ei.value.message


def test_bad_prelude_fails_before_the_whole_message_arrives():
    frame = encode_message({}, b"x" * 1000)
    bad = bytearray(frame[:20])
    bad[0] ^= 0x01  # total length changed: prelude CRC no longer matches
    with pytest.raises(HelixError):
        EventStreamDecoder().feed(bytes(bad))


def test_impossible_lengths_and_unknown_header_type():
    prelude = struct.pack(">II", 10, 0)
    with pytest.raises(HelixError, match="impossible"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", crc32(prelude)) + b"\0" * 8)
    with pytest.raises(HelixError, match="unknown header value type"):
        EventStreamDecoder().feed(by_hand(hdr("x", 42, b""), b""))
    with pytest.raises(HelixError, match="duplicate"):
        EventStreamDecoder().feed(by_hand(hdr("x", 0, b"") + hdr("x", 1, b""), b""))


def test_partial_frame_is_pending():
    frame = encode_message({"a": "b"}, b"hello")
    dec = EventStreamDecoder()
    assert dec.feed(frame[:-3]) == []
    assert dec.pending == len(frame) - 3
    [msg] = dec.feed(frame[-3:])
    assert msg.payload == b"hello" and dec.pending == 0
