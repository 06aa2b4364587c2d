"""Unit tests of helix.observe: shared-memory metrics, tracing, Helicone, access log, export."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

import msgspec
import pytest

from helix import config as cfgmod
from helix.errors import ErrorKind, HelixError
from helix.master.shm import READY
from helix.observe import Observability
from helix.observe import export as export_mod
from helix.observe import metrics as m
from helix.observe.access import LineWriter, RequestIds, make_access_recorder
from helix.observe.export import BatchExporter, ExportError
from helix.observe.helicone import build_document, make_helicone_recorder
from helix.observe.status import make_guard
from helix.observe.tracing import (
    OtlpEncoder,
    make_span_recorder,
    make_trace_phase,
    otlp_url,
    parse_traceparent,
)
from tests.observe.kit import FakeExchange, fake_ctx, make_shm, obs_config, worker

METRICS = {"metrics": {"enabled": True, "max_series": 8}}


def sample(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        mt = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not mt or mt.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', mt.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(mt.group(3))
    return total


# -- metrics ---------------------------------------------------------------------------


def test_metrics_fold_every_worker_and_render_histograms():
    cfg = obs_config(**METRICS)
    shm = make_shm(cfg)
    a = m.Metrics.attach(worker(shm, 0), cfg)
    b = m.Metrics.attach(worker(shm, 1), cfg)
    ra, rb = a.recorder(), b.recorder()
    for _ in range(3):
        ra(fake_ctx())
    rb(fake_ctx(stream=True))
    rb(fake_ctx(status=502, usage=None, cost=None))
    text = b.render().decode()
    assert sample(text, "helix_http_requests_total", status="200") == 4
    assert sample(text, "helix_http_requests_total", status="502") == 1
    name = "helix_gen_ai_server_request_duration_seconds"
    assert sample(text, f"{name}_count", model="gpt-4o-mini") == 5
    assert sample(text, f"{name}_bucket", le="+Inf") == 5
    assert sample(text, f"{name}_bucket", le="0.16") == 0  # fake requests took 0.25 s
    assert sample(text, f"{name}_bucket", le="0.32") == 5
    assert sample(text, "helix_gen_ai_server_time_to_first_token_seconds_count") == 1
    assert sample(text, "helix_gen_ai_client_token_usage_tokens_sum", token_type="input") == 48
    assert sample(text, "helix_gen_ai_client_token_usage_tokens_sum", token_type="output") == 120
    assert sample(text, "helix_gen_ai_cost_usd_total") == pytest.approx(4 * 0.0000123)
    # Families of features not built yet exist and are zero until used.
    assert "# TYPE helix_cache_lookups_total counter" in text
    assert sample(text, "helix_worker_restarts_total") == 0


def test_metrics_survive_a_new_worker_in_the_same_slot():
    cfg = obs_config(**METRICS)
    shm = make_shm(cfg)
    first = m.Metrics.attach(worker(shm, 0), cfg)
    first.recorder()(fake_ctx())
    first.deployment_in_flight("mock", "gpt-4o-mini", 3)
    first.cache_result(True)
    again = m.Metrics.attach(worker(shm, 0), cfg)  # the respawned worker adopts the rows
    again.recorder()(fake_ctx())
    shm.workers.prepare(0, 1)
    shm.workers.table.set(0, 2, READY)
    text = again.render().decode()
    assert sample(text, "helix_http_requests_total") == 2
    assert again.req.used == 1  # same label set, same row
    assert sample(text, "helix_cache_lookups_total", result="hit") == 1
    assert sample(text, "helix_deployment_in_flight_requests") == 0  # gauges reset


def test_metrics_overflow_row_bounds_memory():
    cfg = obs_config(**METRICS)
    shm = make_shm(cfg)
    mt = m.Metrics.attach(worker(shm, 0), cfg)
    rec = mt.recorder()
    from tests.observe.kit import fake_dep

    for i in range(50):
        rec(fake_ctx(deployment=fake_dep(model_id=f"model-{i}")))
    assert mt.req.used == 8
    text = mt.render().decode()
    assert sample(text, "helix_http_requests_total") == 50
    assert sample(text, "helix_http_requests_total", model="other") == 50 - 7


def test_metrics_off_plans_nothing():
    cfg = obs_config()
    shm = make_shm(cfg)
    assert m.REQ not in shm
    assert m.Metrics.attach(worker(shm, 0), cfg) is None
    assert m.Metrics.attach(worker(shm, 0), obs_config(**METRICS)) is None  # enabled by reload


def test_label_values_are_escaped():
    assert m.escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert m.num(3.0) == "3" and m.num(0.5) == "0.5" and m.num(float("inf")) == "+Inf"


# -- tracing ---------------------------------------------------------------------------


def test_parse_traceparent():
    tid, pid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    assert parse_traceparent(f"00-{tid}-{pid}-01") == (int(tid, 16), int(pid, 16), 1)
    for bad in ("", "00-xyz", f"ff-{tid}-{pid}-01", f"00-{'0' * 32}-{pid}-01",
                f"00-{tid}-{'0' * 16}-01", f"00-{tid.upper()}-{pid}-01", f"00-{tid}-{pid}-01-x"):
        assert parse_traceparent(bad) is None
    assert parse_traceparent(f"01-{tid}-{pid}-01-future") is not None


def test_trace_phase_sampling_and_propagation():
    off, on = make_trace_phase(0.0), make_trace_phase(1.0)
    ctx = fake_ctx()
    off(ctx)
    assert not ctx.trace.sampled and ctx.upstream_headers[0][1].endswith(b"-00")
    on(ctx)
    assert ctx.trace.sampled and ctx.upstream_headers[0][1].endswith(b"-01")
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    ctx = fake_ctx(headers={"traceparent": f"00-{tid}-00f067aa0ba902b7-01",
                            "tracestate": "k=v"})
    off(ctx)  # the parent's decision wins over the ratio
    assert ctx.trace.sampled and ctx.trace.trace_id == int(tid, 16)
    assert ctx.upstream_headers[0][1] == b"00-%s-%016x-01" % (tid.encode(), ctx.trace.attempt_id)
    assert ctx.upstream_headers[1] == (b"tracestate", b"k=v")


def test_otlp_encoding_round_trip():
    pb = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

    class Q:
        items: list = []

        def offer(self, item, size=0):
            self.items.append(item)

    q = Q()
    record = make_span_recorder(q)
    ctx = fake_ctx(request_id="rid-1")
    make_trace_phase(1.0)(ctx)
    record(ctx)
    err = fake_ctx(status=502, usage=None, error=HelixError(ErrorKind.UPSTREAM_STATUS, "bad"),
                   request_id=None, response_body=None)
    make_trace_phase(1.0)(err)
    record(err)
    req = pb.ExportTraceServiceRequest()
    req.ParseFromString(OtlpEncoder("svc").encode(q.items))
    spans = req.resource_spans[0].scope_spans[0].spans
    assert len(spans) == 4
    server, client = spans[0], spans[1]
    assert client.parent_span_id == server.span_id
    attrs = {kv.key: kv.value for kv in server.attributes}
    assert attrs["gen_ai.response.model"].string_value == "gpt-4o-mini-2024"
    assert attrs["gen_ai.response.id"].string_value == "c1"
    assert [v.string_value for v in attrs["gen_ai.response.finish_reasons"].array_value.values] \
        == ["stop"]
    assert attrs["helix.request_id"].string_value == "rid-1"
    assert spans[2].status.code == spans[2].status.STATUS_CODE_ERROR
    res = {kv.key: kv.value.string_value for kv in req.resource_spans[0].resource.attributes}
    assert res["service.name"] == "svc"


def test_otlp_url():
    assert otlp_url(None) == "http://127.0.0.1:4318/v1/traces"
    assert otlp_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert otlp_url("http://c:4318/custom/traces") == "http://c:4318/custom/traces"


# -- Helicone ----------------------------------------------------------------------------


def test_helicone_document():
    class Q:
        def offer(self, item, size=0):
            self.item, self.size = item, size

    q = Q()
    rec = make_helicone_recorder(q, {"env": "prod"}, bodies=True)
    ctx = fake_ctx(headers={"helicone-property-team": "blue", "helicone-user-id": "u1",
                            "authorization": "Bearer secret"}, request_id="r1")
    rec(ctx)
    assert q.size > 0
    body, headers = build_document(q.item)
    doc = json.loads(body)
    meta = doc["providerRequest"]["meta"]
    assert meta["Helicone-Property-env"] == "prod" and meta["Helicone-Property-team"] == "blue"
    assert meta["Helicone-User-Id"] == "u1" and meta["Helix-Request-Id"] == "r1"
    assert doc["providerRequest"]["json"]["model"] == "gpt-4o-mini"
    assert doc["providerResponse"]["json"]["choices"][0]["finish_reason"] == "stop"
    assert doc["providerRequest"]["url"] == "http://127.0.0.1:1/chat/completions"
    assert (b"Helicone-User-Id", b"u1") in headers
    assert b"secret" not in body
    # Without bodies, usage still goes (Helicone prices from it).
    rec = make_helicone_recorder(q, {}, bodies=False)
    rec(fake_ctx(stream=True))
    doc = json.loads(build_document(q.item)[0])
    assert doc["providerResponse"]["json"]["usage"]["completion_tokens"] == 30
    assert doc["timing"]["timeToFirstToken"] > 0


# -- access log and request ids ------------------------------------------------------------


LINE = re.compile(
    r'helix\.access: \S+ "(?P<method>\S+) (?P<path>\S+)" (?P<status>\d+) \S+ '
    r"model=(?P<model>\S+) provider=(?P<provider>\S+) "
    r"tokens=(?P<tokens>\S+) cost=(?P<cost>\S+)"
)


def test_access_line_text_and_json():
    out = io.StringIO()
    rec = make_access_recorder("text", LineWriter(out))
    rec(fake_ctx(request_id="abc", cache=None,
                 headers={"authorization": "Bearer sk-secret"}))
    line = out.getvalue()
    mt = LINE.search(line)
    assert mt and mt["tokens"] == "12/30" and mt["status"] == "200"
    assert "rid=abc" in line and "attempts=1" in line and "sk-secret" not in line
    out = io.StringIO()
    rec = make_access_recorder("json", LineWriter(out))
    rec(fake_ctx(stream=True, request_id="r2", cache="hit"))
    doc = json.loads(out.getvalue())
    assert doc["request_id"] == "r2" and doc["cache"] == "hit" and doc["ttft_ms"] > 0
    assert doc["prompt_tokens"] == 12 and doc["logger"] == "helix.access"


def test_access_lines_are_buffered_briefly_and_bounded():
    """On a loop, lines wait for the writer's timer (one write for many), a full buffer is
    written at once, and flush() (shutdown) leaves nothing behind."""
    import asyncio

    out = io.StringIO()
    w = LineWriter(out, delay=0.05, limit=3)

    async def main():
        w.write("a")
        w.write("b")
        assert out.getvalue() == ""  # held
        await asyncio.sleep(0.2)
        assert out.getvalue() == "a\nb\n"  # one write after the delay
        w.write("c")
        w.write("d")
        w.write("e")  # the limit: written now, not later
        assert out.getvalue() == "a\nb\nc\nd\ne\n"
        w.write("f")
        w.flush()
        assert out.getvalue().endswith("e\nf\n") and w._timer is None

    asyncio.run(asyncio.wait_for(main(), 10))


def test_request_ids():
    ids = RequestIds()
    a, b = ids.new(), ids.new()
    assert a != b and a.startswith(ids.prefix)
    assert ids.pick({"x-request-id": "mine-1"}) == "mine-1"
    assert ids.pick({"x-request-id": "has space"}) != "has space"
    assert ids.pick({"x-request-id": "x" * 200}) != "x" * 200


def test_observability_is_absent_when_off(monkeypatch):
    monkeypatch.setattr(logging.getLogger("helix.access"), "level", logging.INFO)
    obs = Observability(obs_config(logging={"request_id": False}))
    assert obs.phases == [] and obs.recorders == [] and obs.exporters == {}
    assert list(obs.routes) == ["/status", "/ui"]
    on = Observability(obs_config(logging={"access_log": True}))
    assert [p.__name__ for p in on.phases] == ["request_id"]
    assert [r.__name__ for r in on.recorders] == ["log_access"]


# -- export ----------------------------------------------------------------------------------


def test_exporter_bounds_retries_and_counts(monkeypatch):
    monkeypatch.setattr(export_mod, "BACKOFF_INITIAL", 0.001)
    sent, counts = [], {"exported": 0, "dropped": 0}
    fail = {"n": 2}

    async def send(batch):
        if fail["n"]:
            fail["n"] -= 1
            raise ExportError("down")
        sent.extend(batch)
        return [], 0

    def on_count(outcome, n):
        counts[outcome] += n

    async def main():
        exp = BatchExporter("t", send, max_queue=5, batch_size=2, interval=0.01, max_retries=3,
                            max_bytes=100, on_count=on_count)
        assert all(exp.offer(i, 10) for i in range(5))
        assert not exp.offer(99, 10)  # full by count
        assert len(exp.queue) == 5
        exp.start()
        for _ in range(200):
            if not exp.queue:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert not exp.offer(100, 101)  # too big for the byte budget
        await exp.close()
        return exp

    exp = asyncio.run(main())
    assert sorted(sent) == [0, 1, 2, 3, 4]
    assert counts == {"exported": 5, "dropped": 2} and exp.failures == 2


def test_exporter_gives_up_after_retries(monkeypatch):
    monkeypatch.setattr(export_mod, "BACKOFF_INITIAL", 0.001)

    async def send(batch):
        raise ExportError("still down")

    async def main():
        exp = BatchExporter("t", send, max_queue=10, batch_size=10, interval=0.01, max_retries=2)
        for i in range(3):
            exp.offer(i)
        await exp._export(exp._take())
        return exp

    exp = asyncio.run(main())
    assert exp.dropped == 3 and exp.failures == 3 and exp.last_error == "still down"


# -- config and access guard ---------------------------------------------------------------------


def test_config_sections_are_accepted_and_validated():
    cfg = obs_config(tracing={"enabled": True, "sample_ratio": 0.5, "headers": {"a": "b"}},
                     metrics={"enabled": True}, helicone={"api_key": "k"},
                     admin={"allow_from": ["10.0.0.0/8"]})
    cfgmod.check_supported(cfg)
    for bad in ({"tracing": {"sample_ratio": 2}}, {"admin": {"allow_from": ["nope"]}},
                {"metrics": {"prometheus_endpoint": "metrics"}}):
        with pytest.raises(cfgmod.ConfigError):
            obs_config(**bad)
    masked = cfgmod.mask_secrets(cfgmod.to_builtins(obs_config(admin={"api_key": "topsecret1"})))
    assert "topsecret1" not in msgspec.json.encode(masked).decode()


def test_guard():
    assert make_guard(cfgmod.AdminConfig()) is None
    guard = make_guard(cfgmod.AdminConfig(api_key="k1", allow_from=["10.0.0.0/8"]))
    ex = FakeExchange({"authorization": "Bearer k1"})
    guard(ex)
    ex = FakeExchange()
    ex.request.client = ("10.1.2.3", 1)
    guard(ex)
    ex.request.client = ("192.168.1.1", 1)
    with pytest.raises(HelixError) as err:
        guard(ex)
    assert err.value.status == 401


def test_grafana_dashboard_uses_only_exposed_metrics():
    import os

    from tests.helpers import ROOT

    with open(os.path.join(ROOT, "deploy", "grafana", "helix-dashboard.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    cfg = obs_config(**METRICS)
    shm = make_shm(cfg)
    mt = m.Metrics.attach(worker(shm, 0), cfg)
    shm.workers.prepare(0, 1)  # a live worker: its gauges count
    mt.recorder()(fake_ctx(stream=True))
    mt.deployment_health("mock", "gpt-4o-mini", True)
    mt.deployment_in_flight("mock", "gpt-4o-mini", 1)
    mt.retry("mock", "gpt-4o-mini")
    mt.fallback("a", "b")
    mt.rate_limited("global")
    mt.cache_result(False)
    exposed = {ln.split("{")[0].split(" ")[0] for ln in mt.render().decode().splitlines()
               if ln and not ln.startswith("#")}
    used = {n for e in exprs for n in re.findall(r"\bhelix_\w+", e)}
    assert used and used <= exposed, used - exposed


def test_status_history_starts_when_the_counters_were_zero():
    """A worker that starts after requests were served (a late or replacement worker) still
    shows them: its history starts at the master's start, when the shared counters were zero,
    not at its own first sample."""
    import time as _time

    from helix.observe import metrics as m
    from helix.observe.status import History

    class Counters:
        def __init__(self):
            self.n = 0.0

        def fold_requests(self):
            row = [0.0] * m.REQ_COLS
            row[m.C_REQUESTS] = self.n
            return {("chat", "gpt-4o-mini", "mock", 200): row}

    counters = Counters()
    counters.n = 3.0  # served before this worker's first sample
    since = _time.time() - 5.0
    late = History(counters, {"gpt-4o-mini"}, since)
    late.sample()
    counters.n = 4.0
    points = late.document()["points"]
    assert sum(p["models"].get("gpt-4o-mini", {}).get("requests", 0) for p in points) == 4
    assert points[0]["seconds"] >= 5.0
    # Without ``since`` (the old behaviour) the three early requests were lost: the check
    # above fails on that code.
    old = History(counters, {"gpt-4o-mini"})
    old.sample()
    counters.n = 5.0
    assert sum(p["models"].get("gpt-4o-mini", {}).get("requests", 0)
               for p in old.document()["points"]) == 1


def test_status_history_ignores_a_start_older_than_its_window():
    """A worker replaced long after the master started begins at its own first sample: one
    bar since the start would make the page's recent rates a lifetime average."""
    import time as _time

    from helix.observe import metrics as m
    from helix.observe.status import HISTORY_INTERVAL, HISTORY_POINTS, History

    class Counters:
        def fold_requests(self):
            row = [0.0] * m.REQ_COLS
            row[m.C_REQUESTS] = 1000.0
            return {("chat", "gpt-4o-mini", "mock", 200): row}

    h = History(Counters(), {"gpt-4o-mini"},
                _time.time() - 2 * HISTORY_POINTS * HISTORY_INTERVAL)
    h.sample()
    points = h.document()["points"]
    assert sum(p["models"].get("gpt-4o-mini", {}).get("requests", 0) for p in points) == 0
    assert all(p["seconds"] < HISTORY_INTERVAL for p in points)
