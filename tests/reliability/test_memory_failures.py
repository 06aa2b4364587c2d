"""Memory comes back after failures (issues 14.1, 14.3): a 1-worker helix, big bodies,
every failure path; the worker's PSS must return to its warmed-up baseline.

Before the fix, each failed request's body stayed alive in a reference cycle (context ->
error -> traceback -> frame -> context) until a full collection: ten 4 MB failures per
path grew the worker by ~40 MB per path."""

from __future__ import annotations

import os

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, free_port
from tests.reliability.kit import (
    GATEWAY_KEY,
    MI,
    chat_body,
    request,
    send_and_vanish,
    settled_pss,
)

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux /proc smaps_rollup"
)

BODY = 4 * MI
ROUNDS = 8


def config(mock_url: str) -> str:
    down = f"http://127.0.0.1:{free_port()}/v1"
    return f"""
providers:
  - {{name: mock, type: openai_compatible, base_url: "{mock_url}/v1", api_key: sk-up-1,
     models: [gpt-4o-mini]}}
  - {{name: down, type: openai_compatible, base_url: "{down}", api_key: sk-up-2,
     models: [down-model]}}
  - {{name: slow, type: openai_compatible, base_url: "{mock_url}/v1", api_key: sk-up-3,
     models: [slow-model], timeout: 0.3s, headers: {{x-mock-latency-ms: "3000"}}}}
  - {{name: hang, type: openai_compatible, base_url: "{mock_url}/v1", api_key: sk-up-4,
     models: [hang-model], headers: {{x-mock-fail: hang}}}}
  - {{name: upstream500, type: openai_compatible, base_url: "{mock_url}/v1", api_key: sk-up-5,
     models: [err-model], headers: {{x-mock-status: "500"}}}}
auth:
  keys: [{{key: {GATEWAY_KEY}, name: rel}}]
rate_limits:
  per_user: {{requests_per_minute: 1}}
server:
  max_body_bytes: {BODY + 4096}
"""


def failure_paths(port: int, size: int):
    """(name, callable) for every failure path; each call makes one failing request."""

    def expect(status, body, **kw):
        def go():
            got, _, data = request(port, body, **kw)
            assert got == status, (got, data[:300])
        return go

    big = size
    return [
        ("404", expect(404, chat_body("no-such-model", big))),
        ("400", expect(400, chat_body(5, big))),
        ("401", expect(401, chat_body("gpt-4o-mini", big), key="wrong-key-000000")),
        ("429", expect(429, chat_body("gpt-4o-mini", big), headers={"helicone-user-id": "u1"})),
        ("502", expect(502, chat_body("down-model", big))),
        ("504", expect(504, chat_body("slow-model", big))),
        ("500", expect(500, chat_body("err-model", big))),
        ("400-deep", expect(400, b'{"model":"gpt-4o-mini","messages":[],"x":'
                            + b"[" * 5000 + b"]" * 5000 + b" " * max(0, big - 20000) + b"}")),
        ("413", expect(413, b"{" + b" " * (BODY + 8192) + b"}")),
        ("disconnect", lambda: send_and_vanish(port, chat_body("hang-model", big))),
    ]


@pytest.fixture(scope="module")
def helix():
    with MockProcess("--no-record") as mock, HelixProcess(config(mock.url), workers=1) as h:
        yield h


def test_memory_returns_after_every_failure_path(helix):
    (worker,) = helix.worker_pids()
    # Burn the rate limit once, warm every path with small bodies.
    request(helix.port, chat_body("gpt-4o-mini"), headers={"helicone-user-id": "u1"})
    for _, fail in failure_paths(helix.port, 1000):
        fail()
    base = settled_pss(worker)
    for name, fail in failure_paths(helix.port, BODY):
        for _ in range(ROUNDS):
            fail()
        after = settled_pss(worker)
        # ROUNDS x 4 MB would be 32 MB per path if bodies were retained.
        assert after - base < 12 * MI, f"{name}: {base / MI:.0f} -> {after / MI:.0f} MB"
    assert helix.worker_pids() == [worker], "the worker must not have been replaced"


def test_client_chosen_model_ids_do_not_pin_memory(helix):
    (worker,) = helix.worker_pids()
    for i in range(50):  # warm the dynamic-deployment path
        request(helix.port, chat_body(f"mock/warm-{i:03d}" + "w" * 200))
    base = settled_pss(worker)
    for i in range(1200):  # distinct ids at the length limit: the LRU keeps a bounded set
        st, _, _ = request(helix.port, chat_body(f"mock/id-{i:05d}-" + "m" * 240))
        assert st == 200
    for i in range(20):  # 1 MB ids: refused before anything keeps them
        st, _, data = request(helix.port, chat_body("mock/" + f"{i}" + "L" * MI))
        assert st == 400 and b'"param":"model"' in data, data[:200]
    after = settled_pss(worker)
    assert after - base < 8 * MI, f"{base / MI:.0f} -> {after / MI:.0f} MB"
    st, _, status = request(helix.port, None, path="/status", method="GET")
    assert st == 200 and len(status) < 64 * 1024, len(status)
    assert b"id-0" not in status and b"LLLL" not in status
