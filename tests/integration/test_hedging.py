"""First-token deadlines, hedging and server-timing through a running 2-worker Helix.

One mock records every request and whether its connection was closed before the reply was
complete (``closed_early``); the deployments differ only by the latency header Helix sends
them.  Weighted balancing with a zero weight makes the slow deployment the first choice,
so every hedge and every abandoned attempt is deterministic.
"""

from __future__ import annotations

import json
import time

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, http_get

KEY = "sk-upstream-secret-1234"


def provider(name, url, models, latency, ptype="openai_compatible", path="/v1"):
    return f"""
  - name: {name}
    type: {ptype}
    base_url: {url}{path}
    api_key: {KEY}
    headers: {{x-mock-latency-ms: "{latency}"}}
    models: {models}"""


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "3") as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    slow_first = "{strategy: weighted, weights: {slow: 1, fast: 0, aslow: 1, afast: 0}}"
    cfg = "providers:" + "".join([
        provider("slow", mock.url, "[hedged, timed]", 4000),
        provider("solo", mock.url, "[lonely]", 300),
        provider("fast", mock.url, "[hedged, timed]", 20),
        provider("stall", mock.url, "[stuck]", 4000),
        provider("stall2", mock.url, "[stuck]", 4000),
        provider("aslow", mock.url, "[claude-hedged]", 4000, "anthropic", ""),
        provider("afast", mock.url, "[claude-hedged]", 20, "anthropic", ""),
    ]) + f"""
load_balancing:
  models:
    hedged: {slow_first}
    timed: {slow_first}
    claude-hedged: {slow_first}
    stuck: {{strategy: weighted, weights: {{stall: 1, stall2: 0}}}}
resilience:
  hedge: {{after: 150ms, max: 1}}
  models:
    timed: {{first_token_timeout: 400ms, hedge: {{max: 0}}}}
    stuck: {{first_token_timeout: 300ms, hedge: {{max: 0}}}}
rate_limits:
  global: {{requests_per_day: 100000}}
"""
    with HelixProcess(cfg, workers=2) as proc:
        yield proc


@pytest.fixture
def openai_client(helix, mock):
    openai = pytest.importorskip("openai")
    mock.clear()
    with openai.OpenAI(base_url=helix.base_url, api_key="client-key", max_retries=0,
                       timeout=20) as c:
        yield c


def timings(value: str) -> dict[str, float]:
    out = {}
    for part in value.split(","):
        name, _, dur = part.strip().partition(";dur=")
        out[name] = float(dur)
    return out


def settled(mock, n: int, timeout: float = 8.0) -> list[dict]:
    """The mock's records once ``n`` of them are finished one way or the other."""
    deadline = time.monotonic() + timeout
    while True:
        recs = mock.requests()
        done = [r for r in recs if "completed" in r or "closed_early" in r]
        if len(done) >= n or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


def by_latency(recs, latency: str) -> list[dict]:
    return [r for r in recs if r["headers"].get("x-mock-latency-ms") == latency]


def test_hedge_wins_stream_and_loser_is_cancelled(openai_client, mock):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="hedged", stream=True, messages=[{"role": "user", "content": "race me"}])
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "mock reply to: race me"
    assert raw.headers["x-helix-provider"] == "fast"
    assert raw.headers["x-helix-attempts"] == "2"
    st = timings(raw.headers["server-timing"])
    assert set(st) == {"helix", "upstream", "ttft"}
    assert 0 <= st["helix"] < st["ttft"] and st["upstream"] <= st["ttft"]
    recs = settled(mock, 2)
    slow, fast = by_latency(recs, "4000"), by_latency(recs, "20")
    assert len(slow) == 1 and len(fast) == 1
    assert "closed_early" in slow[0] and "completed" not in slow[0]  # cancelled, not finished
    assert "completed" in fast[0]


def test_hedge_json_counts_one_request(openai_client, mock):
    remaining = []
    for i in range(2):
        raw = openai_client.chat.completions.with_raw_response.create(
            model="hedged", messages=[{"role": "user", "content": f"json {i}"}])
        assert raw.parse().choices[0].message.content == f"mock reply to: json {i}"
        assert raw.headers["x-helix-provider"] == "fast"
        assert raw.headers["x-helix-attempts"] == "2"
        assert set(timings(raw.headers["server-timing"])) == {"helix", "upstream"}
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    # Two attempts each, one request each for the limits.
    assert remaining[0] - remaining[1] == 1
    recs = settled(mock, 4)
    assert all("closed_early" in r for r in by_latency(recs, "4000"))


def test_first_token_deadline_retries_elsewhere(openai_client, mock, helix):
    for stream in (True, False):
        raw = openai_client.chat.completions.with_raw_response.create(
            model="timed", stream=stream, messages=[{"role": "user", "content": "late"}])
        body = raw.parse()
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in body if c.choices)
        else:
            assert body.choices[0].message.content == "mock reply to: late"
        assert raw.headers["x-helix-provider"] == "fast"
        assert raw.headers["x-helix-attempts"] == "2"
    recs = settled(mock, 4)
    slow = by_latency(recs, "4000")
    assert len(slow) == 2 and all("closed_early" in r and "completed" not in r for r in slow)
    # The abandoned attempts fed health and PeakEWMA: a failure each, latency >= the deadline.
    status = json.loads(http_get(helix.port, "/status")[1])
    health = next(d["health"] for d in status["deployments"]
                  if d["provider"] == "slow" and d["model"] == "timed")
    assert health["latency_ms"] >= 300  # the 400-ms sample, read decayed (ewma_decay)
    assert health["consecutive_failures"] == 2


def test_every_attempt_late_is_a_504_in_the_clients_dialect(helix, mock):
    openai = pytest.importorskip("openai")
    anthropic = pytest.importorskip("anthropic")
    mock.clear()
    with openai.OpenAI(base_url=helix.base_url, api_key="k", max_retries=0, timeout=20) as c, \
            pytest.raises(openai.APIStatusError) as ei:
        c.chat.completions.create(model="stuck", stream=True,
                                  messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 504
    assert ei.value.body["code"] == "first_token_timeout"
    assert ei.value.response.headers["x-helix-attempts"] == "2"
    assert "upstream" not in timings(ei.value.response.headers["server-timing"])
    with anthropic.Anthropic(base_url=f"http://127.0.0.1:{helix.port}", api_key="k",
                             max_retries=0, timeout=20) as a, \
            pytest.raises(anthropic.APIStatusError) as ei:
        a.messages.create(model="stuck", max_tokens=20,
                          messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 504
    assert ei.value.body["type"] == "error"
    assert "resilience.first_token_timeout" in ei.value.body["error"]["message"]
    recs = settled(mock, 4)
    assert len(recs) == 4 and all("closed_early" in r for r in recs)


def test_anthropic_sdk_messages_hedged_stream(helix, mock):
    anthropic = pytest.importorskip("anthropic")
    mock.clear()
    with anthropic.Anthropic(base_url=f"http://127.0.0.1:{helix.port}", api_key="k",
                             max_retries=0, timeout=20) as client, \
            client.messages.stream(model="claude-hedged", max_tokens=50,
                                   messages=[{"role": "user", "content": "hedge claude"}]) as s:
        text = s.get_final_text()
        headers = s.response.headers
    assert text == "mock reply to: hedge claude"
    assert headers["x-helix-provider"] == "afast"
    assert headers["x-helix-attempts"] == "2"
    assert set(timings(headers["server-timing"])) == {"helix", "upstream", "ttft"}
    recs = settled(mock, 2)
    loser = by_latency(recs, "4000")
    assert len(loser) == 1 and loser[0]["path"] == "/v1/messages"
    assert "closed_early" in loser[0]


def test_no_other_deployment_means_no_hedge(openai_client, mock):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="lonely", messages=[{"role": "user", "content": "alone"}])
    assert raw.headers["x-helix-attempts"] == "1"
    assert [r["headers"]["x-mock-latency-ms"] for r in mock.requests()] == ["300"]
