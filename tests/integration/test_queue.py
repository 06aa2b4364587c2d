"""Priority queueing instead of bare 429s, through running 2-worker Helix instances.

A global limit of 120 requests a minute (a burst of 120, then one every 500 ms) is
exhausted first; then a blocker takes the next free place and the requests of the plan
arrive 25 ms apart, all before the capacity after the blocker's frees up; the order in
which they reach the mock (it records arrivals) is the queue's order.  Local backend: one
Helix, its two workers; Redis: two Helix instances sharing a real redis-server, requests
alternating.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess
from tests.limit.redis_server import RedisServer

KEYS = {"alice": "sk-alice-0001", "bob": "sk-bob-00001", "carol": "sk-carol-0001",
        "lowkey": "sk-lowkey-001", "dave": "sk-dave-00001", "filler": "sk-filler-001"}
LIMIT = 120


def config(mock_url: str, backend: str = "", max_wait: str = "6s") -> str:
    return f"""
providers:
  - {{name: p, type: openai_compatible, base_url: {mock_url}/v1, api_key: k, models: [m]}}
  - {{name: c, type: anthropic, base_url: {mock_url}, api_key: k, models: [claude-q]}}
auth:
  keys:
    - {{key: {KEYS['alice']}, name: alice, user: alice}}
    - {{key: {KEYS['bob']}, name: bob, user: bob}}
    - {{key: {KEYS['carol']}, name: carol, priority: high}}
    - {{key: {KEYS['lowkey']}, name: lowkey, priority: low}}
    - {{key: {KEYS['dave']}, name: dave, user: dave}}
    - {{key: {KEYS['filler']}, name: filler, user: filler}}
rate_limits:
{backend}  global: {{requests_per_minute: {LIMIT}}}
  queue: {{max_wait: {max_wait}}}
"""


def post(port: int, who: str, text: str, priority: str | None = None, path="/v1/chat/completions"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEYS[who]}"}
    if priority:
        headers["helix-priority"] = priority
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    if path == "/v1/messages":
        body = {"model": "claude-q", "max_tokens": 20, **body}
    try:
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def exhaust(ports: list[int]) -> None:
    """Spend the burst: batches of requests until one of them had to wait in the queue."""
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while sent <= 2 * LIMIT:
            out = list(pool.map(lambda i: post(ports[i % len(ports)], "filler", "fill"),
                                range(sent, sent + 8)))
            sent += 8
            assert all(status in (200, 429) for status, _, _ in out), out
            if any(timing(headers, "queue") for _, headers, _ in out):
                return  # (the last ones may even have waited in vain: a short max_wait)
    raise AssertionError("the limit never made anyone wait")


def timing(headers: dict, name: str) -> float | None:
    for part in headers.get("server-timing", "").split(","):
        n, _, dur = part.strip().partition(";dur=")
        if n == name:
            return float(dur)
    return None


def arrivals(mock) -> list[str]:
    return [r["body"]["messages"][0]["content"] for r in mock.requests()
            if r["body"]["messages"][0]["content"] not in ("fill", "blocker")]


PLAN = [("alice", "A-l1", "low"), ("lowkey", "L-l2", "high"),  # the key caps it at low
        ("alice", "A-n1", None), ("alice", "A-n2", None), ("alice", "A-n3", None),
        ("bob", "B-n1", "normal"), ("carol", "C-h1", None)]
# Strict priority; within normal, round robin across users (bob's one request does not wait
# behind all of alice's); arrival order within a user.
EXPECTED = ["C-h1", "A-n1", "B-n1", "A-n2", "A-n3", "A-l1", "L-l2"]


def run_plan(ports: list[int]) -> dict[str, tuple]:
    results: dict[str, tuple] = {}
    threads = []
    for i, (who, text, prio) in enumerate([("dave", "blocker", None), *PLAN]):
        def one(port=ports[i % len(ports)], who=who, text=text, prio=prio):
            results[text] = post(port, who, text, prio)
        t = threading.Thread(target=one)
        t.start()
        threads.append(t)
        time.sleep(0.025)
    for t in threads:
        t.join(30)
    return results


@pytest.fixture(scope="module")
def mock():
    with MockProcess() as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    with HelixProcess(config(mock.url), workers=2) as proc:
        yield proc


def test_priority_order_and_fairness_local(helix, mock):
    exhaust([helix.port])
    mock.clear()
    results = run_plan([helix.port])
    assert all(r[0] == 200 for r in results.values()), results
    assert arrivals(mock) == EXPECTED
    for text, (_, headers, _) in results.items():
        assert timing(headers, "queue") > 0, text  # every one of them waited
        assert int(headers["x-ratelimit-limit-requests"]) == LIMIT


def check_disconnect(port: int, mock) -> None:
    exhaust([port])
    mock.clear()
    # A raw client that will hang up while queued.
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "gone"}]})
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                  f"authorization: Bearer {KEYS['bob']}\r\ncontent-type: application/json\r\n"
                  f"content-length: {len(body)}\r\n\r\n{body}").encode())
    time.sleep(0.05)
    later = {}
    t = threading.Thread(target=lambda: later.update(r=post(port, "alice", "stays")))
    t.start()
    time.sleep(0.05)
    sock.close()  # the handler is cancelled: its place is freed
    t.join(30)
    assert later["r"][0] == 200
    time.sleep(1.1)  # the place it held would have come up by now
    assert arrivals(mock) == ["stays"]
    # Nobody is left counted in the queue: once capacity is back, no waiting at all.
    time.sleep(0.6)
    status, headers, _ = post(port, "bob", "fresh")
    assert status == 200 and timing(headers, "queue") is None


def test_disconnect_leaves_the_queue(helix, mock):
    check_disconnect(helix.port, mock)


def test_max_wait_then_429(mock):
    with HelixProcess(config(mock.url, max_wait="1s"), workers=2) as gw:
        exhaust([gw.port])
        with ThreadPoolExecutor(10) as pool:
            out = list(pool.map(lambda i: post(gw.port, "alice", f"w{i}"), range(10)))
    statuses = [s for s, _, _ in out]
    assert 200 in statuses and 429 in statuses, statuses
    for status, headers, body in out:
        if status == 429:
            assert int(headers["retry-after"]) >= 1
            assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
            assert timing(headers, "queue") >= 500  # waited (about max_wait) before giving up


def test_bad_priority_is_a_400_in_the_clients_dialect(helix):
    status, _, body = post(helix.port, "alice", "x", "urgent")
    assert status == 400
    assert json.loads(body)["error"]["param"] == "Helix-Priority"
    status, _, body = post(helix.port, "alice", "x", "urgent", path="/v1/messages")
    assert status == 400
    doc = json.loads(body)
    assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"
    assert "Helix-Priority" in doc["error"]["message"]


def test_priority_order_across_instances_redis(mock):
    with RedisServer() as redis:
        backend = f"  backend: redis\n  redis_url: {redis.url}\n"
        cfg = config(mock.url, backend)
        with HelixProcess(cfg, workers=2) as a, HelixProcess(cfg, workers=2) as b:
            exhaust([a.port, b.port])
            mock.clear()
            results = run_plan([a.port, b.port])
            assert all(r[0] == 200 for r in results.values()), results
            assert arrivals(mock) == EXPECTED
            check_disconnect(b.port, mock)
