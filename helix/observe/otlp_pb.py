"""Protobuf wire encoding of the OTLP trace messages Helix exports, without protobuf.

Only the subset :class:`helix.observe.tracing.OtlpEncoder` writes: an
``ExportTraceServiceRequest`` holding one ``ResourceSpans`` (resource
attributes, one ``ScopeSpans``) whose spans have ids, name, kind, times,
attributes and a status.  Field numbers are those of opentelemetry-proto
(``opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto``).

The output is byte-identical to ``SerializeToString()`` of the same message
built with the official packages (``tests/observe/test_otlp_pb.py`` holds them
to it): fields in field-number order, repeated elements in order, proto3
singular scalars left out at their default (0, empty), oneof members
(``AnyValue``) and set sub-messages always written.

Every function returns ``bytes``.  A *field* function returns a complete
field (tag, length, payload) ready to concatenate into its parent message.
"""

from __future__ import annotations

from struct import Struct

__all__ = ["any_value", "attributes", "export_request", "instrumentation_scope",
           "key_value", "span", "status", "varint"]

# Wire types.
VARINT, FIXED64, LEN = 0, 1, 2

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_CODE_ERROR = 2


def _tag(field: int, wire_type: int) -> bytes:
    return bytes((field << 3 | wire_type,))  # every field number here is < 16: one byte


# ExportTraceServiceRequest
REQUEST_RESOURCE_SPANS = _tag(1, LEN)
# ResourceSpans
RESOURCE_SPANS_RESOURCE = _tag(1, LEN)
RESOURCE_SPANS_SCOPE_SPANS = _tag(2, LEN)
# Resource
RESOURCE_ATTRIBUTES = _tag(1, LEN)
# ScopeSpans
SCOPE_SPANS_SCOPE = _tag(1, LEN)
SCOPE_SPANS_SPANS = _tag(2, LEN)
# InstrumentationScope
SCOPE_NAME = _tag(1, LEN)
SCOPE_VERSION = _tag(2, LEN)
# Span
SPAN_TRACE_ID = _tag(1, LEN)
SPAN_SPAN_ID = _tag(2, LEN)
SPAN_PARENT_SPAN_ID = _tag(4, LEN)
SPAN_NAME = _tag(5, LEN)
SPAN_KIND = _tag(6, VARINT)
SPAN_START_TIME = _tag(7, FIXED64)
SPAN_END_TIME = _tag(8, FIXED64)
SPAN_ATTRIBUTES = _tag(9, LEN)
SPAN_STATUS = _tag(15, LEN)
# Status
STATUS_MESSAGE = _tag(2, LEN)
STATUS_CODE = _tag(3, VARINT)
# KeyValue
KEY_VALUE_KEY = _tag(1, LEN)
KEY_VALUE_VALUE = _tag(2, LEN)
# AnyValue (a oneof: the member that is set is always written, default or not)
ANY_STRING = _tag(1, LEN)
ANY_BOOL = _tag(2, VARINT)
ANY_INT = _tag(3, VARINT)
ANY_DOUBLE = _tag(4, FIXED64)
ANY_ARRAY = _tag(5, LEN)
# ArrayValue
ARRAY_VALUES = _tag(1, LEN)

_BOOL_TRUE = ANY_BOOL + b"\x01"
_BOOL_FALSE = ANY_BOOL + b"\x00"
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_U64_END = 1 << 64
_MASK64 = _U64_END - 1
_SMALL = tuple(bytes((i,)) for i in range(128))
_pack_double = Struct("<d").pack
_pack_fixed64 = Struct("<Q").pack


def varint(n: int) -> bytes:
    """Base-128 varint of ``0 <= n < 2**64``; a negative int64 is written as its 64-bit
    two's complement (10 bytes), as protobuf does."""
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n &= _MASK64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else varint(n)) + payload


def _fixed64(tag: bytes, n: int) -> bytes:
    """A fixed64 field, left out at 0 (proto3)."""
    if not n:
        return b""
    if not 0 <= n < _U64_END:
        raise ValueError(f"fixed64 value out of range: {n}")
    return tag + _pack_fixed64(n)


def any_value(v) -> bytes:
    """The ``AnyValue`` message of a Python value: bool, int (int64), float, list/tuple
    (``array_value``), anything else as ``str(v)``."""
    if v.__class__ is str:
        return _field(ANY_STRING, v.encode())
    if isinstance(v, bool):
        return _BOOL_TRUE if v else _BOOL_FALSE
    if isinstance(v, int):
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise ValueError(f"int64 value out of range: {v}")
        return ANY_INT + varint(v)
    if isinstance(v, float):
        return ANY_DOUBLE + _pack_double(v)
    if isinstance(v, list | tuple):
        return _field(ANY_ARRAY, b"".join([_field(ARRAY_VALUES, any_value(x)) for x in v]))
    return _field(ANY_STRING, str(v).encode())


_keys: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    """A ``KeyValue``'s ``key`` field followed by its ``value`` tag (cached: attribute keys
    are a small fixed set)."""
    got = _keys.get(key)
    if got is None:
        got = (_field(KEY_VALUE_KEY, key.encode()) if key else b"") + KEY_VALUE_VALUE
        if len(_keys) < 1024:
            _keys[key] = got
    return got


def key_value(key: str, value) -> bytes:
    """The ``KeyValue`` message."""
    v = any_value(value)
    return _key(key) + varint(len(v)) + v


def attributes(tag: bytes, items) -> bytes:
    """The repeated ``KeyValue`` field ``tag`` of ``(key, value)`` pairs, in order; pairs
    whose value is None are left out.

    This is the encoder's hot loop: a short string value (the usual case: every length
    fits one varint byte) is written in one join; anything else goes through
    :func:`key_value`."""
    parts = []
    append = parts.append
    for k, v in items:
        if v is None:
            continue
        if v.__class__ is str:
            key = _keys.get(k) or _key(k)
            raw = v.encode()
            n = len(raw)
            size = len(key) + 1 + 2 + n  # key + value length, AnyValue tag + length + text
            if size < 128:
                append(b"".join((tag, _SMALL[size], key, _SMALL[n + 2], ANY_STRING,
                                 _SMALL[n], raw)))
                continue
        kv = key_value(k, v)
        append(tag + varint(len(kv)) + kv)
    return b"".join(parts)


def instrumentation_scope(name: str, version: str) -> bytes:
    """The ``InstrumentationScope`` message."""
    out = b""
    if name:
        out += _field(SCOPE_NAME, name.encode())
    if version:
        out += _field(SCOPE_VERSION, version.encode())
    return out


def status(code: int, message: str = "") -> bytes:
    """The ``Status`` message."""
    out = _field(STATUS_MESSAGE, message.encode()) if message else b""
    if code:
        out += STATUS_CODE + varint(code)
    return out


def span(trace_id: bytes, span_id: bytes, parent_span_id: bytes, name: str, kind: int,
         start_ns: int, end_ns: int, attrs: bytes, span_status: bytes | None) -> bytes:
    """The ``Span`` message.  ``attrs`` is an :func:`attributes` field (``SPAN_ATTRIBUTES``);
    ``span_status`` a :func:`status` message, or None for no status."""
    parts = []
    if trace_id:
        parts.append(_field(SPAN_TRACE_ID, trace_id))
    if span_id:
        parts.append(_field(SPAN_SPAN_ID, span_id))
    if parent_span_id:
        parts.append(_field(SPAN_PARENT_SPAN_ID, parent_span_id))
    if name:
        parts.append(_field(SPAN_NAME, name.encode()))
    if kind:
        parts.append(SPAN_KIND + varint(kind))
    parts.append(_fixed64(SPAN_START_TIME, start_ns))
    parts.append(_fixed64(SPAN_END_TIME, end_ns))
    parts.append(attrs)
    if span_status is not None:
        parts.append(_field(SPAN_STATUS, span_status))
    return b"".join(parts)


def export_request(resource_attrs: bytes, scope: bytes, spans) -> bytes:
    """The ``ExportTraceServiceRequest``: one ``ResourceSpans`` whose resource has the
    ``resource_attrs`` field (:func:`attributes` with ``RESOURCE_ATTRIBUTES``) and one
    ``ScopeSpans`` with the ``scope`` message (:func:`instrumentation_scope`) and
    ``spans`` (:func:`span` messages)."""
    scope_spans = _field(SCOPE_SPANS_SCOPE, scope) + b"".join(
        [_field(SCOPE_SPANS_SPANS, s) for s in spans])
    resource_spans = (_field(RESOURCE_SPANS_RESOURCE, resource_attrs)
                      + _field(RESOURCE_SPANS_SCOPE_SPANS, scope_spans))
    return _field(REQUEST_RESOURCE_SPANS, resource_spans)
