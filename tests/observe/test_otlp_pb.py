"""Parity of the hand-written OTLP protobuf encoder (helix/observe/otlp_pb.py) with the
official packages: :class:`ProtobufOtlpEncoder` below is the encoder Helix used before
(``opentelemetry-proto`` message classes + ``SerializeToString``), kept verbatim as the
oracle.  The new encoder must write the same bytes for the same records, and no runtime
import of protobuf may remain."""

from __future__ import annotations

import enum
import math
import os
import struct
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from helix import __version__
from helix.errors import ErrorKind, HelixError
from helix.observe import otlp_pb
from helix.observe.tracing import (
    OtlpEncoder,
    TraceState,
    make_span_recorder,
    make_trace_phase,
)
from tests.observe.kit import fake_ctx, fake_dep

trace_service_pb2 = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2")
from opentelemetry.proto.common.v1 import common_pb2  # noqa: E402
from opentelemetry.proto.resource.v1 import resource_pb2  # noqa: E402
from opentelemetry.proto.trace.v1 import trace_pb2  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
Request = trace_service_pb2.ExportTraceServiceRequest


# -- the oracle: the protobuf-based encoder, as it was in helix/observe/tracing.py -------


class ProtobufOtlpEncoder:
    def __init__(self, service_name: str) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2

        self._Request = trace_service_pb2.ExportTraceServiceRequest
        self._KeyValue = common_pb2.KeyValue
        self._AnyValue = common_pb2.AnyValue
        self._ArrayValue = common_pb2.ArrayValue
        self._Span = trace_pb2.Span
        self._Status = trace_pb2.Status
        self.service_name = service_name
        import os
        import socket

        self.resource = [
            ("service.name", service_name),
            ("service.version", __version__),
            ("telemetry.sdk.name", "helix"),
            ("telemetry.sdk.language", "python"),
            ("host.name", socket.gethostname()),
            ("process.pid", os.getpid()),
        ]

    def _value(self, v):
        AnyValue = self._AnyValue
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        if isinstance(v, list | tuple):
            return AnyValue(array_value=self._ArrayValue(values=[self._value(x) for x in v]))
        return AnyValue(string_value=str(v))

    def _attrs(self, items) -> list:
        KeyValue = self._KeyValue
        return [KeyValue(key=k, value=self._value(v)) for k, v in items if v is not None]

    def encode(self, records: list) -> bytes:
        req = self._Request()
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(self._attrs(self.resource))
        ss = rs.scope_spans.add()
        ss.scope.name = "helix"
        ss.scope.version = __version__
        for rec in records:
            self._spans(ss.spans, rec)
        return req.SerializeToString()

    def _spans(self, spans, rec) -> None:
        (trace, endpoint, method, path, req_model, dep, status, usage, cost, error, attempts,
         request_id, started, up_started, head_at, first_at, end, offset, resp_id, resp_model,
         reasons, committed) = rec
        Span = self._Span
        Status = self._Status

        def ns(t: float) -> int:
            return int((t + offset) * 1e9)

        trace_id = trace.trace_id.to_bytes(16, "big")
        operation = "embeddings" if endpoint == "embeddings" else "chat"
        model_id = dep.model_id if dep is not None else None
        gen_ai = [
            ("gen_ai.operation.name", operation),
            ("gen_ai.system", dep.provider_type if dep is not None else None),
            ("gen_ai.provider.name", dep.provider_type if dep is not None else None),
            ("gen_ai.request.model", req_model),
            ("gen_ai.response.model", resp_model or model_id),
            ("gen_ai.response.id", resp_id),
            ("gen_ai.response.finish_reasons", reasons),
        ]
        if usage is not None:
            gen_ai.append(("gen_ai.usage.input_tokens", usage.input))
            gen_ai.append(("gen_ai.usage.output_tokens", usage.output))
        error_type = None
        if error is not None:
            error_type = error.kind.name.lower()
        elif status >= 500:
            error_type = str(status)
        server_error = status >= 500 or (error is not None and committed)
        server = spans.add()
        server.trace_id = trace_id
        server.span_id = trace.span_id.to_bytes(8, "big")
        if trace.parent_id:
            server.parent_span_id = trace.parent_id.to_bytes(8, "big")
        server.name = f"{operation} {req_model}" if req_model else operation
        server.kind = Span.SpanKind.SPAN_KIND_SERVER
        server.start_time_unix_nano = ns(started)
        server.end_time_unix_nano = ns(end)
        server.attributes.extend(self._attrs([
            *gen_ai,
            ("http.request.method", method),
            ("url.path", path),
            ("http.response.status_code", status or None),
            ("error.type", error_type if server_error or status >= 400 else None),
            ("helix.request_id", request_id),
            ("helix.provider", dep.provider if dep is not None else None),
            ("helix.cost_usd", cost),
            ("helix.attempts", attempts),
            ("helix.time_to_first_token_s", (first_at - started) if first_at else None),
        ]))
        if server_error:
            server.status.code = Status.StatusCode.STATUS_CODE_ERROR
            if error is not None:
                server.status.message = str(error)[:256]
        for i, (span_id, fdep, f_start, f_end, ferr) in enumerate(trace.failed or (), 1):
            span = spans.add()
            span.trace_id = trace_id
            span.span_id = span_id.to_bytes(8, "big")
            span.parent_span_id = server.span_id
            span.name = f"{operation} {fdep.model_id}"
            span.kind = Span.SpanKind.SPAN_KIND_CLIENT
            span.start_time_unix_nano = ns(f_start)
            span.end_time_unix_nano = ns(f_end)
            span.attributes.extend(self._attrs([
                *gen_ai[:3],
                ("gen_ai.request.model", fdep.model_id),
                ("server.address", fdep.origin.host),
                ("server.port", fdep.origin.port),
                ("http.response.status_code", ferr.status),
                ("error.type", ferr.kind.name.lower()),
                ("helix.provider", fdep.provider),
                ("helix.attempt", i),
            ]))
            span.status.code = Status.StatusCode.STATUS_CODE_ERROR
            span.status.message = str(ferr)[:256]
        if not up_started or dep is None:
            return
        client = spans.add()
        client.trace_id = trace_id
        client.span_id = trace.attempt_id.to_bytes(8, "big")
        client.parent_span_id = server.span_id
        client.name = f"{operation} {model_id}"
        client.kind = Span.SpanKind.SPAN_KIND_CLIENT
        client.start_time_unix_nano = ns(up_started)
        client.end_time_unix_nano = ns(end)
        client.attributes.extend(self._attrs([
            *gen_ai[:3],
            ("gen_ai.request.model", model_id),
            *gen_ai[4:],
            ("server.address", dep.origin.host),
            ("server.port", dep.origin.port),
            ("http.response.status_code", status or None),
            ("error.type", error_type if status >= 400 or error is not None else None),
            ("helix.attempt", attempts or 1),
            ("helix.time_to_head_s", (head_at - up_started) if head_at else None),
        ]))
        if status >= 400 or error is not None:
            client.status.code = Status.StatusCode.STATUS_CODE_ERROR



# -- helpers ------------------------------------------------------------------------------


def both(records: list) -> bytes:
    """Encode with the new and the old encoder; assert the bytes are identical and that
    they parse (and re-serialize to themselves) with the official classes."""
    new = OtlpEncoder("svc").encode(records)
    old = ProtobufOtlpEncoder("svc").encode(records)
    assert new == old, _first_difference(new, old)
    parsed = Request.FromString(new)
    assert parsed.SerializeToString() == new
    return new


def _first_difference(a: bytes, b: bytes) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
             min(len(a), len(b)))
    return f"differ at byte {i} (len {len(a)} vs {len(b)}): {a[i:i + 24]!r} vs {b[i:i + 24]!r}"


class FakeErr:
    """An error as a failed attempt carries it: ``kind``, ``status`` (may be None), str()."""

    def __init__(self, kind: ErrorKind, status, text: str) -> None:
        self.kind, self.status, self.text = kind, status, text

    def __str__(self) -> str:
        return self.text


def dep(model_id="m", ptype="openai", provider="p", host="h", port=443):
    return SimpleNamespace(model_id=model_id, provider_type=ptype, provider=provider,
                           origin=SimpleNamespace(host=host, port=port))


def trace(trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id=0x00F067AA0BA902B7, parent_id=0,
          attempt_id=0x1234, failed=None):
    return SimpleNamespace(trace_id=trace_id, span_id=span_id, parent_id=parent_id,
                           attempt_id=attempt_id, failed=failed, sampled=True)


START = 1000.0
OFFSET = 1.7e9


def record(**kw) -> tuple:
    """A record as make_span_recorder queues it (field names as OtlpEncoder unpacks it)."""
    r = dict(
        trace=trace(), endpoint="chat", method="POST", path="/v1/chat/completions",
        req_model="gpt-4o-mini", dep=dep(), status=200,
        usage=SimpleNamespace(input=12, output=30), cost=0.0000123, error=None, attempts=1,
        request_id="rid-1", started=START, up_started=START + 0.01, head_at=START + 0.2,
        first_at=0.0, end=START + 0.5, offset=OFFSET, resp_id="c1", resp_model="gpt-4o-2024",
        reasons=["stop"], committed=False,
    )
    r.update(kw)
    return tuple(r.values())


def failed(n: int, err=None) -> list:
    return [(0x100 + i, dep(model_id=f"m{i}", port=8000 + i), START + i * 0.01,
             START + i * 0.01 + 0.005,
             err or FakeErr(ErrorKind.UPSTREAM_STATUS, 500 + i, f"attempt {i} failed"))
            for i in range(n)]


# -- the tag constants match the .proto descriptors --------------------------------------


_WIRE = {1: otlp_pb.FIXED64, 6: otlp_pb.FIXED64, 11: otlp_pb.LEN, 12: otlp_pb.LEN,
         9: otlp_pb.LEN, 3: otlp_pb.VARINT, 8: otlp_pb.VARINT, 14: otlp_pb.VARINT}


@pytest.mark.parametrize("constant, message, field", [
    ("REQUEST_RESOURCE_SPANS", Request, "resource_spans"),
    ("RESOURCE_SPANS_RESOURCE", trace_pb2.ResourceSpans, "resource"),
    ("RESOURCE_SPANS_SCOPE_SPANS", trace_pb2.ResourceSpans, "scope_spans"),
    ("RESOURCE_ATTRIBUTES", resource_pb2.Resource, "attributes"),
    ("SCOPE_SPANS_SCOPE", trace_pb2.ScopeSpans, "scope"),
    ("SCOPE_SPANS_SPANS", trace_pb2.ScopeSpans, "spans"),
    ("SCOPE_NAME", common_pb2.InstrumentationScope, "name"),
    ("SCOPE_VERSION", common_pb2.InstrumentationScope, "version"),
    ("SPAN_TRACE_ID", trace_pb2.Span, "trace_id"),
    ("SPAN_SPAN_ID", trace_pb2.Span, "span_id"),
    ("SPAN_PARENT_SPAN_ID", trace_pb2.Span, "parent_span_id"),
    ("SPAN_NAME", trace_pb2.Span, "name"),
    ("SPAN_KIND", trace_pb2.Span, "kind"),
    ("SPAN_START_TIME", trace_pb2.Span, "start_time_unix_nano"),
    ("SPAN_END_TIME", trace_pb2.Span, "end_time_unix_nano"),
    ("SPAN_ATTRIBUTES", trace_pb2.Span, "attributes"),
    ("SPAN_STATUS", trace_pb2.Span, "status"),
    ("STATUS_MESSAGE", trace_pb2.Status, "message"),
    ("STATUS_CODE", trace_pb2.Status, "code"),
    ("KEY_VALUE_KEY", common_pb2.KeyValue, "key"),
    ("KEY_VALUE_VALUE", common_pb2.KeyValue, "value"),
    ("ANY_STRING", common_pb2.AnyValue, "string_value"),
    ("ANY_BOOL", common_pb2.AnyValue, "bool_value"),
    ("ANY_INT", common_pb2.AnyValue, "int_value"),
    ("ANY_DOUBLE", common_pb2.AnyValue, "double_value"),
    ("ANY_ARRAY", common_pb2.AnyValue, "array_value"),
    ("ARRAY_VALUES", common_pb2.ArrayValue, "values"),
])
def test_tags_match_the_proto_descriptors(constant, message, field):
    fd = message.DESCRIPTOR.fields_by_name[field]
    assert getattr(otlp_pb, constant) == bytes((fd.number << 3 | _WIRE[fd.type],))


def test_enum_values_match_the_proto():
    assert otlp_pb.SPAN_KIND_SERVER == trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
    assert otlp_pb.SPAN_KIND_CLIENT == trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT
    assert otlp_pb.STATUS_CODE_ERROR == trace_pb2.Status.StatusCode.STATUS_CODE_ERROR


# -- AnyValue / varint edge cases, against the official classes --------------------------


def _oracle_value(v) -> bytes:
    enc = ProtobufOtlpEncoder.__new__(ProtobufOtlpEncoder)
    enc._AnyValue, enc._ArrayValue = common_pb2.AnyValue, common_pb2.ArrayValue
    return enc._value(v).SerializeToString()


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize("value", [
    0, 1, 127, 128, 300, 16383, 16384, 2**31, 2**32, 2**62, 2**63 - 1, -1, -2, -127, -128,
    -(2**31), -(2**63), True, False, 0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, math.inf, -math.inf,
    math.nan, "", "x", "é ✓ 日本 🚀", "a" * 127, "a" * 128, "b" * 20000, [], (), [0], ["", False],
    (1, 2.5, "s", True, None), [[1, [2, []]], ()], None, b"raw", Color.RED, 3 + 4j,
])
def test_any_value_matches_protobuf(value):
    assert otlp_pb.any_value(value) == _oracle_value(value)


@pytest.mark.parametrize("bad", [2**63, -(2**63) - 1, 2**64, [2**70]])
def test_out_of_range_int64_raises_like_protobuf(bad):
    with pytest.raises(ValueError):
        _oracle_value(bad)
    with pytest.raises(ValueError):
        otlp_pb.any_value(bad)


def test_nan_payloads_are_kept():
    for bits in (0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001,
                 0x7FFFFFFFFFFFFFFF):
        v = struct.unpack("<d", struct.pack("<Q", bits))[0]
        assert otlp_pb.any_value(v) == _oracle_value(v)


def test_varint():
    assert otlp_pb.varint(0) == b"\x00"
    assert otlp_pb.varint(300) == b"\xac\x02"
    assert otlp_pb.varint(2**64 - 1) == b"\xff" * 9 + b"\x01"
    assert otlp_pb.varint(-1) == b"\xff" * 9 + b"\x01"  # int64 -1: 10 bytes


def test_building_blocks_at_default_values_match_protobuf():
    """Proto3 presence rules for the pieces tracing.py happens not to hit today."""
    Status, Span = trace_pb2.Status, trace_pb2.Span
    for code, message in [(0, ""), (2, ""), (0, "m"), (1, "é" * 200)]:
        assert otlp_pb.status(code, message) == \
            Status(code=code, message=message).SerializeToString()
    for name, version in [("", ""), ("n", ""), ("", "v"), ("helix", "1.0")]:
        assert otlp_pb.instrumentation_scope(name, version) == \
            common_pb2.InstrumentationScope(name=name, version=version).SerializeToString()
    for key in ("", "k", "ключ"):
        assert otlp_pb.key_value(key, "") == common_pb2.KeyValue(
            key=key, value=common_pb2.AnyValue(string_value="")).SerializeToString()
    # around the one-byte length limits of attributes()' short-string path
    for key in ("", "k", "k" * 30, "k" * 120, "k" * 127, "k" * 128, "k" * 300):
        for n in (*range(0, 8), *range(85, 135), 300, 20000):
            for value in ("v" * n, "é" * n):
                span = trace_pb2.Span()
                span.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
                assert otlp_pb.attributes(otlp_pb.SPAN_ATTRIBUTES, [(key, value)]) == \
                    span.SerializeToString()
    assert otlp_pb.span(b"", b"", b"", "", 0, 0, 0, b"", None) == b""
    empty_status = Span()
    empty_status.status.SetInParent()
    assert otlp_pb.span(b"", b"", b"", "", 0, 0, 0, b"", b"") == \
        empty_status.SerializeToString()
    full = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, parent_span_id=b"\x03" * 8,
                name="n", kind=3, start_time_unix_nano=2**64 - 1, end_time_unix_nano=1,
                status=Status(code=2, message="m"))
    full.attributes.add(key="a", value=common_pb2.AnyValue(int_value=0))
    assert otlp_pb.span(b"\x01" * 16, b"\x02" * 8, b"\x03" * 8, "n", 3, 2**64 - 1, 1,
                        otlp_pb.attributes(otlp_pb.SPAN_ATTRIBUTES, [("a", 0), ("b", None)]),
                        otlp_pb.status(2, "m")) == full.SerializeToString()
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            Span(start_time_unix_nano=bad)
        with pytest.raises(ValueError):
            otlp_pb.span(b"", b"", b"", "", 0, bad, 0, b"", None)
    assert Request().SerializeToString() == b""  # the body helix check's probe sends
    assert otlp_pb.export_request(b"", b"", []) == Request(resource_spans=[
        trace_pb2.ResourceSpans(resource=resource_pb2.Resource(),
                                scope_spans=[trace_pb2.ScopeSpans(
                                    scope=common_pb2.InstrumentationScope())])
    ]).SerializeToString()


# -- whole requests: explicit edge cases -------------------------------------------------


def test_no_records():
    assert both([])  # resource and scope, no spans


CASES = {
    "typical": record(),
    "parent span": record(trace=trace(parent_id=0xABCDEF)),
    "all-zero trace id": record(trace=trace(trace_id=0, span_id=1, attempt_id=1)),
    "max ids": record(trace=trace(trace_id=2**128 - 1, span_id=2**64 - 1, parent_id=2**64 - 1,
                                  attempt_id=2**64 - 1)),
    "failed list empty": record(trace=trace(failed=[])),
    "one failed attempt": record(trace=trace(failed=failed(1)), attempts=2),
    "three failed attempts": record(trace=trace(parent_id=7, failed=failed(3)), attempts=4),
    "failed attempt without status or message": record(
        trace=trace(failed=failed(1, FakeErr(ErrorKind.CONNECT_REFUSED, None, "")))),
    "failed attempt, long unicode message": record(
        trace=trace(failed=failed(2, FakeErr(ErrorKind.READ_TIMEOUT, 504, "é" * 300)))),
    "error with message, 502": record(
        status=502, usage=None, error=HelixError(ErrorKind.UPSTREAM_STATUS, "bad gateway"),
        resp_id=None, resp_model=None, reasons=None),
    "error without message": record(status=504,
                                    error=HelixError(ErrorKind.READ_TIMEOUT, "")),
    "error after commit (stream), status 200": record(
        status=200, committed=True, error=HelixError(ErrorKind.UPSTREAM_PROTOCOL, "cut")),
    "error before commit, status 429": record(
        status=429, error=HelixError(ErrorKind.RATE_LIMITED, "slow down")),
    "error message over 256 chars": record(
        status=500, error=HelixError(ErrorKind.INTERNAL, "x" * 1000)),
    "500 without error": record(status=500),
    "503 without error, no dep": record(status=503, dep=None, up_started=0.0),
    "404 without error": record(status=404, usage=None, cost=None),
    "4xx with error": record(status=400, error=HelixError(ErrorKind.INVALID_REQUEST, "no")),
    "status 0": record(status=0, error=HelixError(ErrorKind.INTERNAL, "crash")),
    "usage None, cost None": record(usage=None, cost=None),
    "dep None": record(dep=None),
    "up_started 0": record(up_started=0.0),
    "no head, stream first token": record(head_at=0.0, first_at=START + 0.3),
    "embeddings": record(endpoint="embeddings", reasons=None, req_model="text-emb"),
    "no request model": record(req_model=None),
    "empty request model and strings": record(req_model="", request_id="", resp_id="",
                                              method="", path="", reasons=[]),
    "unicode everywhere": record(req_model="モデル-✓", path="/v1/çhat", request_id="🚀" * 50,
                                 dep=dep(model_id="ḿ", ptype="ƥ", provider="¶", host="hôst")),
    "attribute types": record(
        usage=SimpleNamespace(input=0, output=2**63 - 1), cost=0, attempts=-5,
        request_id=12345, resp_id=True, reasons=("a", 1, 2.5, False, ["n"], None),
        resp_model=3.25),
    "negative and huge ints": record(usage=SimpleNamespace(input=-(2**63), output=-1),
                                     attempts=2**63 - 1, cost=-0.0),
    "float attribute values": record(cost=float("inf"), usage=SimpleNamespace(
        input=1.5, output=float("nan"))),
    "bool attribute values": record(usage=SimpleNamespace(input=False, output=True),
                                    attempts=False),
    "port 0, empty host": record(dep=dep(host="", port=0)),
    "zero times": record(started=0.0, offset=0.0, up_started=0.0, end=0.0),
    "zero start only": record(started=-OFFSET, first_at=1.0),
    "far-future times": record(offset=1.8e10),
    "all None": record(req_model=None, usage=None, cost=None, request_id=None, resp_id=None,
                       resp_model=None, reasons=None, dep=None, up_started=0.0, head_at=0.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_edge_case(name):
    both([CASES[name]])


def test_every_edge_case_in_one_batch():
    data = both(list(CASES.values()))
    spans = Request.FromString(data).resource_spans[0].scope_spans[0].spans
    assert len(spans) > len(CASES)


def test_realistic_records_from_the_recorder():
    """Records as make_span_recorder builds them from request contexts (tracing's own
    TraceState, retries via attempt_failed), one batch."""
    items: list = []
    q = SimpleNamespace(offer=lambda item, size=0: items.append(item))
    rec = make_span_recorder(q)
    phase = make_trace_phase(1.0)
    ctxs = [
        fake_ctx(request_id="rid-1"),
        fake_ctx(stream=True),
        fake_ctx(status=502, usage=None, error=HelixError(ErrorKind.UPSTREAM_STATUS, "bad"),
                 response_body=None),
        fake_ctx(headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-"
                                         "00f067aa0ba902b7-01"}),
    ]
    retried = fake_ctx(attempts=3)
    ctxs.append(retried)
    for ctx in ctxs:
        phase(ctx)
    for i in range(2):
        retried.trace.attempt_failed(
            retried, fake_dep(provider=f"p{i}"), retried.started + i * 0.01,
            retried.started + i * 0.01 + 0.005,
            HelixError(ErrorKind.UPSTREAM_STATUS, f"upstream {i}", status=500 + i))
    for ctx in ctxs:
        rec(ctx)
    assert len(items) == len(ctxs)
    data = both(items)
    spans = Request.FromString(data).resource_spans[0].scope_spans[0].spans
    assert len(spans) == 2 * len(ctxs) + 2


def test_resource_and_scope():
    req = Request.FromString(both([]))
    rs = req.resource_spans[0]
    res = {kv.key: kv.value for kv in rs.resource.attributes}
    assert res["service.name"].string_value == "svc"
    assert res["process.pid"].int_value == os.getpid()
    assert rs.scope_spans[0].scope.name == "helix"
    assert rs.scope_spans[0].scope.version == __version__


# -- whole requests: generated records (Hypothesis) --------------------------------------


try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    st = None

if st is not None:
    text = st.text(st.characters(codec="utf-8"), max_size=40)
    ints = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-300, 300))
    scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(), text)
    values = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple)), max_leaves=8)
    kinds = st.sampled_from(list(ErrorKind))
    helix_errors = st.builds(lambda k, m, s: HelixError(k, m, status=s), kinds,
                             st.text(st.characters(codec="utf-8"), max_size=300),
                             st.one_of(st.none(), st.integers(100, 599)))
    attempt_errors = st.one_of(
        helix_errors,
        st.builds(FakeErr, kinds, st.one_of(st.none(), st.integers(0, 599)), text))
    deps = st.builds(dep, model_id=text, ptype=st.one_of(st.none(), text), provider=values,
                     host=text, port=st.one_of(st.integers(0, 65535), st.none()))
    times = st.floats(0, 1e6)
    ids64 = st.integers(1, 2**64 - 1)
    failures = st.lists(st.tuples(ids64, deps, times, times, attempt_errors), max_size=3)
    traces = st.builds(
        trace, trace_id=st.integers(0, 2**128 - 1), span_id=ids64,
        parent_id=st.one_of(st.just(0), ids64), attempt_id=ids64,
        failed=st.one_of(st.none(), failures))
    records = st.builds(
        record,
        trace=traces,
        endpoint=st.sampled_from(["chat", "embeddings", "messages", "responses"]),
        method=text, path=text, req_model=st.one_of(st.none(), text),
        dep=st.one_of(st.none(), deps),
        status=st.one_of(st.sampled_from([0, 200, 201, 400, 401, 404, 429, 499, 500, 502, 503,
                                          504]), st.integers(0, 999)),
        usage=st.one_of(st.none(), st.builds(SimpleNamespace, input=values, output=values)),
        cost=st.one_of(st.none(), st.floats(), ints),
        error=st.one_of(st.none(), helix_errors),
        attempts=st.one_of(ints, st.booleans()),
        request_id=st.one_of(st.none(), text),
        started=times, up_started=st.one_of(st.just(0.0), times),
        head_at=st.one_of(st.just(0.0), times), first_at=st.one_of(st.just(0.0), times),
        end=times, offset=st.one_of(st.just(0.0), st.floats(1.5e9, 2e9)),
        resp_id=st.one_of(st.none(), values), resp_model=st.one_of(st.none(), text),
        reasons=st.one_of(st.none(), st.lists(text, max_size=3), values),
        committed=st.booleans(),
    )

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(records, max_size=6))
    def test_generated_records_match_protobuf(batch):
        both(batch)

    @settings(max_examples=300, deadline=None)
    @given(values)
    def test_generated_values_match_protobuf(value):
        assert otlp_pb.any_value(value) == _oracle_value(value)


# -- no protobuf at run time -------------------------------------------------------------


def test_tracing_does_not_import_protobuf():
    code = textwrap.dedent("""
        import sys
        from types import SimpleNamespace
        from helix.observe.tracing import OtlpEncoder, TraceState
        enc = OtlpEncoder("helix")
        dep = SimpleNamespace(model_id="m", provider_type="openai", provider="p",
                              origin=SimpleNamespace(host="h", port=1))
        rec = (TraceState(1, 0, True), "chat", "POST", "/v1/chat/completions", "m", dep, 200,
               None, 0.5, None, 1, "rid", 1.0, 1.1, 1.2, 0.0, 1.5, 1.7e9, "id", "m", ["stop"],
               False)
        assert enc.encode([rec])
        bad = sorted(m for m in sys.modules
                     if m.split(".")[0] == "opentelemetry" or m.startswith("google.protobuf")
                     or m == "google._upb" or m.startswith("google._upb."))
        assert not bad, bad
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_trace_state_record_is_what_the_oracle_sees():
    """A real TraceState (not a stand-in) through both encoders."""
    ts = TraceState(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True)
    ts.failed = [(5, dep(), START, START + 0.1, HelixError(ErrorKind.CONNECT_REFUSED, "no"))]
    both([record(trace=ts)])
