"""Balancing, health, retries and fallbacks through a real 2-worker Helix and mock providers."""

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, free_port

KEY = "sk-upstream-secret-1234"


def provider(name, url, models, headers="{}", ptype="openai_compatible", path="/v1"):
    return f"""
  - name: {name}
    type: {ptype}
    base_url: {url}{path}
    api_key: {KEY}
    headers: {headers}
    models: {models}"""


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "4") as proc:
        yield proc


# With a deadline the attempt loop runs every attempt; without one (nor first-token timing)
# a request's first attempt runs on its own (runner.make_attempts' forward_first) and only
# a failure enters the loop: every test runs against both.
@pytest.fixture(scope="module", params=["20s", None], ids=["loop", "first-attempt"])
def helix(mock, request):
    down = f"http://127.0.0.1:{free_port()}"
    cfg = "providers:" + "".join([
        provider("fast", mock.url, "[lat]", '{x-mock-latency-ms: "20"}'),
        provider("slow", mock.url, "[lat]", '{x-mock-latency-ms: "200"}'),
        provider("dead", down, "[retry-me, dead-model]"),
        provider("alive", mock.url, "[retry-me]"),
        provider("limited", mock.url, "[rl]", '{x-mock-status: "429", x-mock-retry-after: "2"}'),
        provider("ok", mock.url, "[rl]", '{x-mock-latency-ms: "30"}'),
        provider("claude", mock.url, "[claude-3-5-sonnet]", ptype="anthropic", path=""),
        provider("broken", mock.url, "[brk]", "{x-mock-fail: reset-mid-stream}"),
    ]) + """
resilience:
  retries: {max_attempts: 3, initial_delay: 10ms, max_delay: 50ms}
""" + (f"  deadline: {request.param}\n" if request.param else "") + """  fallbacks:
    - {primary: dead-model, fallback: claude-3-5-sonnet}
load_balancing:
  ewma_decay: 5s
  health: {connect_cooldown: 5s}
"""
    with HelixProcess(cfg, workers=2) as proc:
        yield proc


class Resp:
    def __init__(self, status, headers, body):
        self.status_code = status
        self.headers = headers
        self.content = body
        self.text = body.decode("utf-8", "replace")


class Client:
    """A tiny keep-alive JSON client (http.client) for the gateway."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path, payload):
        self.conn.request("POST", "/v1" + path, body=json.dumps(payload),
                          headers={"content-type": "application/json"})
        r = self.conn.getresponse()
        body = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, body)

    def close(self):
        self.conn.close()


def chat(client, model, **kw):
    return client.post("/chat/completions", {
        "model": model, "messages": [{"role": "user", "content": "hi there"}], **kw})


@pytest.fixture
def client(helix):
    c = Client(helix.port)
    yield c
    c.close()


def test_fast_deployment_gets_most_traffic(helix):
    def one(_):
        c = Client(helix.port)
        try:
            r = chat(c, "lat")
        finally:
            c.close()
        assert r.status_code == 200, r.text
        return r.headers["x-helix-provider"]

    with ThreadPoolExecutor(4) as pool:
        served = list(pool.map(one, range(120)))
    share = served.count("fast") / len(served)
    assert share > 0.75, served


def test_first_attempt_fails_retry_elsewhere_succeeds(client, helix):
    attempts = []
    for _ in range(10):
        r = chat(client, "retry-me")
        assert r.status_code == 200, r.text
        assert r.headers["x-helix-provider"] == "alive"
        attempts.append(int(r.headers["x-helix-attempts"]))
    assert max(attempts) <= 2
    # once "dead" failed, it cools down for everyone: later requests take one attempt
    assert attempts[-3:] == [1, 1, 1]


def test_dead_primary_falls_back_to_anthropic(helix):
    openai = pytest.importorskip("openai")
    with openai.OpenAI(base_url=helix.base_url, api_key="x", max_retries=0, timeout=20) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="dead-model", messages=[{"role": "user", "content": "hello"}])
        resp = raw.parse()
        assert resp.choices[0].message.content
        assert raw.headers["x-helix-provider"] == "claude"
        stream = c.chat.completions.create(
            model="dead-model", messages=[{"role": "user", "content": "hello"}], stream=True)
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        assert text


def test_nothing_is_retried_after_a_stream_started(client, mock):
    mock.clear()
    r = chat(client, "brk", stream=True)
    assert r.status_code == 200
    assert b'"error"' in r.content
    hits = [q for q in mock.requests() if q["headers"].get("x-mock-fail") == "reset-mid-stream"]
    assert len(hits) == 1


def test_429_moves_traffic_and_comes_back_after_retry_after(client, mock):
    mock.clear()

    def limited_hits():
        return sum(1 for q in mock.requests() if q["headers"].get("x-mock-status") == "429")

    for _ in range(20):
        r = chat(client, "rl")
        assert r.status_code == 200, r.text  # a 429 attempt is retried on "ok"
        assert r.headers["x-helix-provider"] == "ok"
    first = limited_hits()
    assert 1 <= first <= 2  # shared across both workers: one 429 cools it for all
    time.sleep(2.5)  # Retry-After: 2
    for _ in range(20):
        assert chat(client, "rl").status_code == 200
    assert limited_hits() > first  # tried again after the cooldown...
    assert limited_hits() <= first + 2  # ...and cooled down again at once


def test_client_errors_are_not_retried(client, mock):
    mock.clear()
    r = client.post("/chat/completions", {"model": "lat", "messages": "not-a-list"})
    assert r.status_code == 400
