"""Observability end to end: /metrics over 2 workers, OTLP traces, Helicone export, /status.

Collectors are local HTTP servers started by the test; the OTLP payloads are
decoded with ``opentelemetry-proto``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, free_port, http_get

trace_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

KEY = "sk-upstream-secret-1234"
HELICONE_KEY = "sk-helicone-test-key-0001"
ADMIN_KEY = "admin-secret-key-0001"
BODY = json.dumps({"model": "gpt-4o-mini",
                   "messages": [{"role": "user", "content": "observe me"}]}).encode()


class Collector:
    """A tiny HTTP collector: records (path, headers, body) of every POST; answers 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict, bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                with outer.lock:
                    outer.posts.append((self.path, {k.lower(): v for k, v in
                                                    self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client (Helix closing its pool) hanging up is not news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> list[tuple[str, dict, bytes]]:
        with self.lock:
            return list(self.posts)


def _config(mock_url: str, otlp: str, helicone: str, extra: str = "") -> str:
    return f"""
providers:
  - name: mock
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: {KEY}
    models: [gpt-4o-mini, text-embedding-3-small]
observability:
  metrics: {{enabled: true}}
  tracing:
    enabled: true
    endpoint: {otlp}
    headers: {{x-otlp-token: tok-123}}
    sample_ratio: 1.0
    service_name: helix-test
    flush_interval: 0.1
  helicone:
    api_key: {HELICONE_KEY}
    base_url: {helicone}
    properties: {{env: test}}
    flush_interval: 0.1
  logging:
    access_log: true
{extra}
"""


def post(port: int, path: str, body: bytes, headers: dict | None = None, timeout: float = 10.0):
    """One request on a fresh connection (so SO_REUSEPORT spreads them over the workers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body, {"content-type": "application/json",
                                          "authorization": "Bearer client-key",
                                          **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get(port: int, path: str, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def scrape(port: int) -> str:
    status, body = get(port, "/metrics")
    assert status == 200, body
    return body.decode()


def sample(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "4", "--require-key", KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def otlp():
    with Collector() as c:
        yield c


@pytest.fixture(scope="module")
def helicone():
    with Collector() as c:
        yield c


@pytest.fixture(scope="module")
def helix(mock, otlp, helicone):
    with HelixProcess(_config(mock.url, otlp.url, helicone.url), workers=2) as proc:
        yield proc


def status_doc(port: int) -> dict:
    status, body = get(port, "/status")
    assert status == 200, body
    return json.loads(body)


def test_metrics_totals_equal_requests_sent_across_workers(helix):
    before = scrape(helix.port)
    base = sample(before, "helix_http_requests_total", endpoint="chat", model="gpt-4o-mini",
                  status="200")
    n = 40
    for _ in range(n):
        status, _, _ = post(helix.port, "/v1/chat/completions", BODY)
        assert status == 200
    # Both workers answered (the kernel spreads fresh connections over the listeners).
    served = [w["requests_total"] for w in status_doc(helix.port)["workers"]["live"]]
    assert len(served) == 2
    # The last answer's metrics land just after its bytes: wait for them once, bounded.
    wait_for(lambda: sample(scrape(helix.port), "helix_http_requests_total", endpoint="chat",
                            model="gpt-4o-mini", status="200") - base == n, 10,
             "every request counted in /metrics")
    for _ in range(20):  # every scrape, whichever worker answers it, sees every request
        text = scrape(helix.port)
        got = sample(text, "helix_http_requests_total", endpoint="chat", model="gpt-4o-mini",
                     status="200")
        assert got - base == n
    count = sample(text, "helix_gen_ai_server_request_duration_seconds_count",
                   endpoint="chat", model="gpt-4o-mini")
    assert count >= n
    inf = sample(text, "helix_gen_ai_server_request_duration_seconds_bucket",
                 endpoint="chat", model="gpt-4o-mini", le="+Inf")
    assert inf == count
    assert sample(text, "helix_gen_ai_client_operation_duration_seconds_count",
                  model="gpt-4o-mini") >= n
    assert sample(text, "helix_gen_ai_client_token_usage_tokens_sum", token_type="input") > 0
    assert sample(text, "helix_gen_ai_client_token_usage_tokens_sum", token_type="output") > 0
    assert sample(text, "helix_gen_ai_cost_usd_total", model="gpt-4o-mini") > 0
    assert "helix_cache_lookups_total" in text and "helix_worker_restarts_total 0" in text


def test_stream_ttft_histogram_and_error_status(helix):
    body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                       "messages": [{"role": "user", "content": "s"}]}).encode()
    base = sample(scrape(helix.port), "helix_gen_ai_server_time_to_first_token_seconds_count")
    status, headers, data = post(helix.port, "/v1/chat/completions", body)
    assert status == 200 and b"[DONE]" in data
    assert headers.get("x-request-id")
    status, headers, _ = post(helix.port, "/v1/chat/completions",
                              json.dumps({"model": "nope", "messages": [{"role": "user",
                                                                       "content": "x"}]}).encode())
    assert status == 404 and headers.get("x-request-id")
    # A worker records a request's metrics just after its last byte is written, so a
    # scrape sent the moment the answer arrives can come before that: wait, bounded.
    def counted():
        text = scrape(helix.port)
        return text if sample(text, "helix_http_requests_total", status="404") >= 1 else None

    text = wait_for(counted, 10, "the 404 counted in /metrics")
    assert sample(text, "helix_gen_ai_server_time_to_first_token_seconds_count") == base + 1


def test_request_id_accepted_or_generated(helix):
    _, headers, _ = post(helix.port, "/v1/chat/completions", BODY, {"x-request-id": "client-42"})
    assert headers["x-request-id"] == "client-42"
    _, h1, _ = post(helix.port, "/v1/chat/completions", BODY)
    _, h2, _ = post(helix.port, "/v1/chat/completions", BODY)
    assert h1["x-request-id"] and h1["x-request-id"] != h2["x-request-id"]
    line = wait_for(lambda: next((ln for ln in helix.output if "rid=client-42" in ln), None),
                    5, "the access line")
    assert "helix.access:" in line and " 200 " in line and "attempts=1" in line
    assert KEY not in helix.log() and "client-key" not in helix.log()


def _spans(otlp: Collector) -> list:
    spans = []
    for path, _headers, body in otlp.snapshot():
        assert path == "/v1/traces"
        req = trace_pb2.ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
    return spans


def _attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        v = kv.value
        kind = v.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = [x.string_value for x in v.array_value.values]
        else:
            out[kv.key] = getattr(v, kind)
    return out


def test_traces_span_tree_attributes_and_propagation(helix, otlp, mock):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    mock.clear()
    status, _, _ = post(helix.port, "/v1/chat/completions", BODY,
                        {"traceparent": f"00-{trace_id}-{parent}-01"})
    assert status == 200

    def mine():
        spans = [s for s in _spans(otlp) if s.trace_id.hex() == trace_id]
        return spans if len(spans) >= 2 else None

    spans = wait_for(mine, 10, "spans at the OTLP collector")
    server = next(s for s in spans if s.kind == s.SPAN_KIND_SERVER)
    client = next(s for s in spans if s.kind == s.SPAN_KIND_CLIENT)
    assert server.parent_span_id.hex() == parent
    assert client.parent_span_id == server.span_id
    assert server.start_time_unix_nano <= client.start_time_unix_nano
    assert client.end_time_unix_nano <= server.end_time_unix_nano + 1_000_000
    a = _attrs(server)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.system"] == "openai_compatible"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"]
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["http.response.status_code"] == 200
    assert _attrs(client)["server.address"] == "127.0.0.1"
    # The provider got a traceparent naming the upstream-attempt span.
    [rec] = [r for r in mock.requests() if r["path"].endswith("/chat/completions")]
    tp = {k.lower(): v for k, v in rec["headers"].items()}["traceparent"]
    assert tp == f"00-{trace_id}-{client.span_id.hex()}-01"
    headers = otlp.snapshot()[-1][1]
    assert headers["x-otlp-token"] == "tok-123"
    assert headers["content-type"] == "application/x-protobuf"


def test_unsampled_parent_is_propagated_but_not_exported(helix, otlp, mock):
    trace_id = "11111111111111111111111111111111"
    mock.clear()
    post(helix.port, "/v1/chat/completions", BODY,
         {"traceparent": f"00-{trace_id}-2222222222222222-00"})
    [rec] = [r for r in mock.requests() if r["path"].endswith("/chat/completions")]
    tp = {k.lower(): v for k, v in rec["headers"].items()}["traceparent"]
    assert tp.startswith(f"00-{trace_id}-") and tp.endswith("-00")
    time.sleep(0.5)
    assert not [s for s in _spans(otlp) if s.trace_id.hex() == trace_id]


def test_helicone_export(helix, helicone):
    status, _, _ = post(
        helix.port, "/v1/chat/completions", BODY,
        {"helicone-property-team": "blue", "helicone-user-id": "user-7",
         "x-request-id": "heli-1"},
    )
    assert status == 200

    def mine():
        for path, hdrs, body in helicone.snapshot():
            doc = json.loads(body)
            if doc["providerRequest"]["meta"].get("Helix-Request-Id") == "heli-1":
                return path, hdrs, doc
        return None

    path, hdrs, doc = wait_for(mine, 10, "the Helicone log")
    assert path == "/custom/v1/log"
    assert hdrs["authorization"] == f"Bearer {HELICONE_KEY}"
    meta = doc["providerRequest"]["meta"]
    assert meta["Helicone-Property-env"] == "test"
    assert meta["Helicone-Property-team"] == "blue"
    assert meta["Helicone-User-Id"] == "user-7"
    assert doc["providerRequest"]["json"]["messages"][0]["content"] == "observe me"
    assert doc["providerResponse"]["status"] == 200
    assert doc["providerResponse"]["json"]["usage"]["prompt_tokens"] > 0
    assert doc["timing"]["startTime"]["seconds"] > 0
    assert KEY not in body_text(helicone)


def body_text(c: Collector) -> str:
    return "".join(b.decode("utf-8", "replace") + json.dumps(h) for _, h, b in c.snapshot())


def test_status_document(helix):
    doc = status_doc(helix.port)
    assert doc["version"] and isinstance(doc["extensions"]["in_use"], bool)
    assert doc["uptime_s"] >= 0 and len(doc["workers"]["live"]) == 2
    assert doc["cache"] == {"state": "not configured"}
    assert doc["rate_limits"]["state"] in ("not configured", "configured")
    dep = next(d for d in doc["deployments"] if d["model"] == "gpt-4o-mini")
    assert dep["latency"]["requests"] > 0 and dep["latency"]["upstream_mean_ms"] > 0
    assert doc["observability"]["tracing"]["state"] == "enabled"
    assert doc["observability"]["helicone"]["state"] == "enabled"
    assert HELICONE_KEY not in json.dumps(doc)


def test_metrics_survive_a_worker_restart(helix):
    for _ in range(10):
        post(helix.port, "/v1/chat/completions", BODY)
    name = "helix_http_requests_total"
    before = sample(scrape(helix.port), name)
    pids = helix.worker_pids()
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: len(helix.worker_pids()) == 2 and pids[0] not in helix.worker_pids(),
             15, "respawn")
    helix.wait_healthy()
    wait_for(lambda: len(status_doc(helix.port)["workers"]["live"]) == 2, 10, "2 live workers")
    text = scrape(helix.port)
    assert sample(text, name) >= before  # the dead worker's counts are kept
    assert sample(text, "helix_worker_restarts_total") == 1
    for _ in range(10):
        post(helix.port, "/v1/chat/completions", BODY)
    # The /metrics requests are not pipeline requests: only the 10 chats count (waited
    # for: the last one's metrics land just after its answer).
    want = sample(text, name) + 10
    wait_for(lambda: sample(scrape(helix.port), name) >= want, 10, "the 10 chats counted")
    assert sample(scrape(helix.port), name) == want
    assert status_doc(helix.port)["workers"]["restarts_total"] == 1


def test_collectors_down_requests_unaffected_and_bounded(mock):
    dead = f"http://127.0.0.1:{free_port()}"
    extra = f"""  admin: {{api_key: {ADMIN_KEY}}}
"""
    cfg = _config(mock.url, dead, dead, extra).replace(
        "flush_interval: 0.1", "flush_interval: 0.1\n    max_queue: 20\n    batch_size: 5"
    )
    with HelixProcess(cfg, workers=1) as helix:
        auth = {"authorization": f"Bearer {ADMIN_KEY}"}
        assert get(helix.port, "/metrics")[0] == 401
        assert get(helix.port, "/status")[0] == 401
        latencies = []
        for _ in range(200):
            t = time.monotonic()
            status, _, _ = post(helix.port, "/v1/chat/completions", BODY)
            latencies.append(time.monotonic() - t)
            assert status == 200
        latencies.sort()
        assert latencies[len(latencies) // 2] < 0.2, latencies[-5:]
        status, body = get(helix.port, "/status", auth)
        obs = json.loads(body)["observability"]
        for name in ("tracing", "helicone"):
            assert obs[name]["queued"] <= 20
            assert obs[name]["dropped"] > 0
            assert obs[name]["last_error"]
        status, body = get(helix.port, "/metrics", auth)
        text = body.decode()
        assert sample(text, "helix_tracing_requests_dropped_total") > 0
        assert sample(text, "helix_helicone_records_dropped_total") > 0
        assert sample(text, "helix_http_requests_total", status="200") == 200
        assert http_get(helix.port, "/health")[0] == 200


def test_each_retried_attempt_gets_its_own_span_and_traceparent(mock, otlp, helicone):
    from tests.helpers import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    extra = """load_balancing: {strategy: round_robin}
resilience:
  retries: {max_attempts: 3, initial_delay: 1ms, max_delay: 2ms}
"""
    cfg = _config(mock.url, otlp.url, helicone.url, extra).replace(
        "providers:\n",
        f"providers:\n  - {{name: dead, type: openai_compatible, base_url: \"{dead}\", "
        f"api_key: k, models: [gpt-4o-mini]}}\n",
    )
    with HelixProcess(cfg, workers=1) as helix:
        for n in range(6):  # round robin: some request starts on the dead deployment
            trace_id = f"{n + 1:032x}"
            mock.clear()
            status, headers, _ = post(helix.port, "/v1/chat/completions", BODY,
                                      {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
            assert status == 200
            if headers.get("x-helix-attempts") == "2":
                break
        else:
            pytest.fail("no request needed a retry")

        def mine():
            spans = [s for s in _spans(otlp) if s.trace_id.hex() == trace_id]
            return spans if len(spans) >= 3 else None

        spans = wait_for(mine, 10, "three spans for the retried request")
        server = next(s for s in spans if s.kind == s.SPAN_KIND_SERVER)
        clients = [s for s in spans if s.kind == s.SPAN_KIND_CLIENT]
        assert len(clients) == 2 and len({c.span_id for c in clients}) == 2
        assert all(c.parent_span_id == server.span_id for c in clients)
        failed = next(c for c in clients if _attrs(c).get("helix.attempt") == 1)
        assert failed.status.code == failed.status.STATUS_CODE_ERROR
        assert _attrs(failed)["helix.provider"] == "dead"
        ok = next(c for c in clients if c is not failed)
        # The provider that answered saw the second attempt's own span id.
        [rec] = [r for r in mock.requests() if r["path"].endswith("/chat/completions")]
        tp = {k.lower(): v for k, v in rec["headers"].items()}["traceparent"]
        assert tp == f"00-{trace_id}-{ok.span_id.hex()}-01"
