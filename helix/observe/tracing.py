"""OpenTelemetry traces over OTLP/HTTP, recorded off the request path.

Per request, when tracing is on:

* the ``trace_context`` phase (first in the pipeline) reads the client's W3C
  ``traceparent`` (a valid one decides sampling, as OpenTelemetry's
  ParentBased sampler does; otherwise ``sample_ratio`` of new trace ids are
  sampled) and sets ``ctx.trace`` and ``ctx.upstream_headers``, so the
  provider gets a ``traceparent`` naming the upstream-attempt span (and the
  client's ``tracestate``), sampled or not;
* the ``record_span`` recorder, for sampled requests only, queues one small
  record; the exporter task turns batches of them into an OTLP
  ``ExportTraceServiceRequest`` (protobuf wire format, written by
  :mod:`helix.observe.otlp_pb`: no protobuf package needed) and POSTs it to
  ``<endpoint>/v1/traces``.  The queue is bounded; drops are
  counted (``helix_tracing_requests_dropped_total``).

Spans: one SERVER span per request (``{operation} {request model}``) and one
CLIENT child span per upstream attempt, with the GenAI semantic-convention
attributes (``gen_ai.operation.name``, ``gen_ai.system`` and
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.response.id``, ``gen_ai.response.finish_reasons``,
``gen_ai.usage.input_tokens`` / ``output_tokens``) plus HTTP ones.  Neither
OpenTelemetry nor protobuf is imported: the official packages are only the
test oracle of the encoder (``tests/observe/test_otlp_pb.py``).
"""

from __future__ import annotations

import random
import time

import msgspec

from helix import __version__
from helix.observe import otlp_pb as pb

_MASK64 = (1 << 64) - 1


class TraceState:
    """The request's place in a trace (``ctx.trace``)."""

    __slots__ = ("attempt_id", "failed", "flags", "parent_id", "sampled", "span_id",
                 "trace_id")

    def __init__(self, trace_id: int, parent_id: int, sampled: bool) -> None:
        getrandbits = random.getrandbits
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.span_id = getrandbits(64) or 1
        self.attempt_id = getrandbits(64) or 1
        self.sampled = sampled
        self.flags = 1 if sampled else 0
        # Attempts that failed and were retried: (span id, deployment, start, end, error).
        self.failed: list[tuple] | None = None

    def traceparent(self, span_id: int) -> bytes:
        return b"00-%032x-%016x-%02x" % (self.trace_id, span_id, self.flags)

    def attempt_failed(self, ctx, dep, start: float, end: float, error) -> None:
        """The attempt loop is retrying: keep this attempt's span, give the next its own id
        (and its own ``traceparent`` upstream)."""
        if self.failed is None:
            self.failed = []
        self.failed.append((self.attempt_id, dep, start, end, error))
        self.attempt_id = random.getrandbits(64) or 1
        if ctx.upstream_headers:
            ctx.upstream_headers[0] = (b"traceparent", self.traceparent(self.attempt_id))


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """``(trace_id, parent span id, flags)`` of a valid W3C traceparent, else None."""
    parts = value.strip().split("-")
    if len(parts) < 4:
        return None
    version, tid, pid, flags = parts[:4]
    if len(version) != 2 or version == "ff" or len(tid) != 32 or len(pid) != 16 or \
            len(flags) != 2:
        return None
    if version == "00" and len(parts) != 4:
        return None
    try:
        int(version, 16)
        trace_id, parent_id, bits = int(tid, 16), int(pid, 16), int(flags, 16)
    except ValueError:
        return None
    if not trace_id or not parent_id or tid != tid.lower() or pid != pid.lower():
        return None
    return trace_id, parent_id, bits


def make_trace_phase(sample_ratio: float):
    bound = int(sample_ratio * (1 << 64))
    getrandbits = random.getrandbits

    def trace_context(ctx) -> None:
        headers = ctx.exchange.request.headers
        tp = headers.get("traceparent")
        parsed = parse_traceparent(tp) if tp else None
        if parsed is not None:
            trace = TraceState(parsed[0], parsed[1], bool(parsed[2] & 1))
        else:
            trace_id = getrandbits(128) or 1
            trace = TraceState(trace_id, 0, (trace_id & _MASK64) < bound)
        ctx.trace = trace
        up = [(b"traceparent", trace.traceparent(trace.attempt_id))]
        ts = headers.get("tracestate")
        if ts and parsed is not None:
            up.append((b"tracestate", ts.encode("latin-1")))
        ctx.upstream_headers = up

    return trace_context


class _Choice(msgspec.Struct):
    finish_reason: str | None = None


class _Answer(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    choices: list[_Choice] = []


_decode_answer = msgspec.json.Decoder(_Answer).decode


def answer_fields(body: bytes | None) -> tuple[str | None, str | None, list[str] | None]:
    """``(response id, response model, finish reasons)`` of an OpenAI JSON answer."""
    if not body:
        return None, None, None
    try:
        a = _decode_answer(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None, None
    reasons = [c.finish_reason for c in a.choices if c.finish_reason]
    return a.id, a.model, reasons or None


def make_span_recorder(exporter):
    offer = exporter.offer
    monotonic = time.monotonic
    wall = time.time

    def record_span(ctx) -> None:
        trace = ctx.trace
        if trace is None or not trace.sampled:
            return
        end = monotonic()
        ex = ctx.exchange
        view = ctx.view
        rid, rmodel, reasons = answer_fields(ctx.response_body)
        offer((
            trace, ctx.api.name, ex.request.method, ex.request.path,
            getattr(view, "model", None), ctx.deployment, ctx.status, ctx.usage, ctx.cost,
            ctx.error, ctx.attempts, ctx.request_id,
            ctx.started, ctx.upstream_started, ctx.head_at, ctx.first_chunk_at, end,
            wall() - end, rid, rmodel, reasons, ctx.committed,
        ))

    return record_span


# -- OTLP encoding (helix.observe.otlp_pb: protobuf wire format, no protobuf package) -----


class OtlpEncoder:
    """Span records (as :func:`make_span_recorder` queues them) -> the bytes of one OTLP
    ``ExportTraceServiceRequest``, written by :mod:`helix.observe.otlp_pb`."""

    def __init__(self, service_name: str) -> None:
        import os
        import socket

        self.service_name = service_name
        self.resource = [
            ("service.name", service_name),
            ("service.version", __version__),
            ("telemetry.sdk.name", "helix"),
            ("telemetry.sdk.language", "python"),
            ("host.name", socket.gethostname()),
            ("process.pid", os.getpid()),
        ]
        self._scope = pb.instrumentation_scope("helix", __version__)

    def encode(self, records: list) -> bytes:
        spans: list[bytes] = []
        for rec in records:
            self._spans(spans, rec)
        return pb.export_request(pb.attributes(pb.RESOURCE_ATTRIBUTES, self.resource),
                                 self._scope, spans)

    def _spans(self, spans: list, rec) -> None:
        (trace, endpoint, method, path, req_model, dep, status, usage, cost, error, attempts,
         request_id, started, up_started, head_at, first_at, end, offset, resp_id, resp_model,
         reasons, committed) = rec
        span = pb.span
        attributes = pb.attributes
        ATTRS = pb.SPAN_ATTRIBUTES

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
        server_id = trace.span_id.to_bytes(8, "big")
        spans.append(span(
            trace_id, server_id,
            trace.parent_id.to_bytes(8, "big") if trace.parent_id else b"",
            f"{operation} {req_model}" if req_model else operation,
            pb.SPAN_KIND_SERVER, ns(started), ns(end),
            attributes(ATTRS, [
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
            ]),
            pb.status(pb.STATUS_CODE_ERROR, str(error)[:256] if error is not None else "")
            if server_error else None,
        ))
        for i, (span_id, fdep, f_start, f_end, ferr) in enumerate(trace.failed or (), 1):
            spans.append(span(
                trace_id, span_id.to_bytes(8, "big"), server_id,
                f"{operation} {fdep.model_id}", pb.SPAN_KIND_CLIENT, ns(f_start), ns(f_end),
                attributes(ATTRS, [
                    *gen_ai[:3],
                    ("gen_ai.request.model", fdep.model_id),
                    ("server.address", fdep.origin.host),
                    ("server.port", fdep.origin.port),
                    ("http.response.status_code", ferr.status),
                    ("error.type", ferr.kind.name.lower()),
                    ("helix.provider", fdep.provider),
                    ("helix.attempt", i),
                ]),
                pb.status(pb.STATUS_CODE_ERROR, str(ferr)[:256]),
            ))
        if not up_started or dep is None:
            return
        spans.append(span(
            trace_id, trace.attempt_id.to_bytes(8, "big"), server_id,
            f"{operation} {model_id}", pb.SPAN_KIND_CLIENT, ns(up_started), ns(end),
            attributes(ATTRS, [
                *gen_ai[:3],
                ("gen_ai.request.model", model_id),
                *gen_ai[4:],
                ("server.address", dep.origin.host),
                ("server.port", dep.origin.port),
                ("http.response.status_code", status or None),
                ("error.type", error_type if status >= 400 or error is not None else None),
                ("helix.attempt", attempts or 1),
                ("helix.time_to_head_s", (head_at - up_started) if head_at else None),
            ]),
            pb.status(pb.STATUS_CODE_ERROR) if status >= 400 or error is not None else None,
        ))


def otlp_url(endpoint: str | None) -> str:
    """The OTLP/HTTP traces URL: a bare endpoint gets ``/v1/traces`` appended."""
    url = (endpoint or "http://127.0.0.1:4318").rstrip("/")
    rest = url.split("://", 1)[-1]
    if "/" not in rest:
        url += "/v1/traces"
    return url


def build_tracer(config, metrics):
    """(phase, recorder, exporter) for tracing, or None when it is off."""
    tcfg = config.observability.tracing
    if tcfg is None or not tcfg.enabled:
        return None
    from helix.observe.export import BatchExporter, HttpSender

    encoder = OtlpEncoder(tcfg.service_name)
    headers = [(b"content-type", b"application/x-protobuf")]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in tcfg.headers.items()]
    sender = HttpSender(otlp_url(tcfg.endpoint), headers, float(tcfg.timeout))

    async def send(batch: list) -> list:
        await sender.post(encoder.encode(batch))
        return [], 0

    def on_count(outcome: str, n: int) -> None:
        if metrics is not None:
            metrics.add(f"helix_tracing_requests_{outcome}_total", (), float(n))

    exporter = BatchExporter(
        "tracing", send, max_queue=tcfg.max_queue, batch_size=tcfg.batch_size,
        interval=float(tcfg.flush_interval), max_retries=tcfg.max_retries, on_count=on_count,
    )
    exporter.sender = sender
    exporter.url = sender.label
    return make_trace_phase(tcfg.sample_ratio), make_span_recorder(exporter), exporter
