"""/status guard (issue 14.5) and per-worker requests_total in /status (issue 14.10)."""

from __future__ import annotations

import http.client
import json
import os
import time

import pytest

from helix import config as cfgmod
from helix.errors import HelixError
from helix.limit.keys import KeyTable
from helix.mock import MockProcess
from helix.observe.status import exposure, make_guard
from tests.helpers import HelixProcess, mock_config
from tests.observe.kit import FakeExchange

GATEWAY_KEY = "gw-key-for-status-1"
ADMIN_KEY = "admin-key-status-9"


def _ex(peer: str, authorization: str | None = None) -> FakeExchange:
    ex = FakeExchange({"authorization": authorization} if authorization else {})
    ex.request.client = (peer, 40000)
    return ex


def _keys() -> KeyTable:
    return KeyTable.from_config(cfgmod.AuthConfig(keys=[cfgmod.GatewayKeyConfig(key=GATEWAY_KEY)]))


def test_gateway_keys_without_admin_section_guard_status():
    guard = make_guard(cfgmod.AdminConfig(), _keys())
    assert guard is not None
    guard(_ex("127.0.0.1"))  # loopback: allowed
    guard(_ex("::1"))
    guard(_ex("::ffff:127.0.0.1"))
    guard(_ex("203.0.113.7", f"Bearer {GATEWAY_KEY}"))  # a gateway key: allowed
    for auth in (None, "Bearer wrong-key-123", f"Basic {GATEWAY_KEY}"):
        with pytest.raises(HelixError) as err:
            guard(_ex("203.0.113.7", auth))
        assert err.value.status == 401
    assert "gateway key" in exposure(cfgmod.AdminConfig(), _keys())
    # No keys, no admin section: open, and the start-up line says so.
    assert make_guard(cfgmod.AdminConfig(), None) is None
    assert "open to anyone" in exposure(cfgmod.AdminConfig(), None)


def test_admin_section_wins_over_gateway_keys():
    guard = make_guard(cfgmod.AdminConfig(api_key=ADMIN_KEY), _keys())
    guard(_ex("203.0.113.7", f"Bearer {ADMIN_KEY}"))
    for auth in (f"Bearer {GATEWAY_KEY}", f"Bearer {ADMIN_KEY}x", f"Bearer {ADMIN_KEY[:-1]}",
                 "Bearer \udcff"):
        with pytest.raises(HelixError):
            guard(_ex("127.0.0.1", auth))  # the admin section decides, loopback or not


def _get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _chat(port: int, model: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a fresh connection
    try:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"content-type": "application/json",
                              "authorization": f"Bearer {GATEWAY_KEY}"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def _served(port: int) -> list[int]:
    status, body = _get(port, "/status")
    assert status == 200, body
    return [w["requests_total"] for w in json.loads(body)["workers"]["live"]]


def test_status_counts_requests_per_worker_and_hides_client_model_ids():
    with MockProcess() as mock:


        env = dict(os.environ, HELIX_API_KEYS=GATEWAY_KEY)
        env.pop("HELIX_CONFIG", None)
        with HelixProcess(mock_config(mock.url), workers=2, env=env) as helix:
            assert "served to loopback clients and to requests with a gateway key" in helix.log()
            base = sum(_served(helix.port))
            # The kernel spreads fresh connections over the workers' listeners, unevenly:
            # send batches until both have served some (bounded).
            n = 0
            deadline = time.monotonic() + 30
            while True:
                for i in range(20):
                    model = "gpt-4o-mini" if i % 2 else f"mock/client-chosen-id-{n + i}"
                    assert _chat(helix.port, model) == 200
                n += 20
                time.sleep(1.2)  # the heartbeat publishes the counters once a second
                served = _served(helix.port)
                if all(x > 0 for x in served) or n >= 400 or time.monotonic() > deadline:
                    break
            while sum(served) - base < n and time.monotonic() < deadline:
                time.sleep(0.2)
                served = _served(helix.port)
            assert len(served) == 2 and all(x > 0 for x in served), served
            assert sum(served) - base >= n
            dynamic = 0
            for _ in range(20):  # whichever worker answers: it lists no client-chosen id
                status, body = _get(helix.port, "/status")
                assert status == 200
                assert b"client-chosen-id" not in body  # unbounded client input: counted only
                doc = json.loads(body)
                dynamic = max(dynamic, doc["dynamic_deployments"])
            assert dynamic > 0
            assert {d["model"] for d in doc["deployments"]} <= {
                "gpt-4o-mini", "text-embedding-3-small", "alias-fast"}
