"""Upstream faults of every kind (issue 14.7, 14.2, 14.8) through a running 2-worker helix
with canary secrets everywhere (issue 14.6, the test-wide canary check): every fault is a
clean answer in the client's dialect, no canary ever appears in a response, a log line,
/status, /metrics or `helix check`, and fds and memory stay flat after a thousand faults."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from helix.mock import MockProcess
from tests.helpers import ROOT, HelixProcess
from tests.reliability.kit import MI, chat_body, fds, request, settled_pss
from tests.reliability.liar import Liar

CANARY = "CANARY"
GW = "CANARY-gateway-key-0001"
ADMIN = "CANARY-admin-key-0001"

# mode -> (status the client must get, error code or None)
FAULTS = {
    "echo401": (401, None),
    "echo500": (500, None),
    "status999": (502, "upstream_protocol_error"),
    "html200": (502, "upstream_invalid_response"),
    "notjson200": (502, "upstream_invalid_response"),
    "deep200": (502, "upstream_invalid_response"),
    "huge200": (502, "upstream_response_too_large"),
    "hugechunked": (502, "upstream_response_too_large"),
    "trickle": (504, "upstream_timeout"),
    "deepsse0": (502, "upstream_invalid_response"),
    "garbage": (502, None),
    "close": (502, None),
}


def config(mock_url: str, liar_url: str) -> str:
    lines = [
        "server: {max_body_bytes: 300000}",
        "upstream: {request_timeout: 1s, max_response_bytes: 1000000}",
        "providers:",
        f"  - {{name: mock, type: openai_compatible, base_url: '{mock_url}/v1',",
        "     api_key: CANARY-provider-mock-01, models: [gpt-4o-mini]}",
    ]
    for mode in [*FAULTS, "deepsse1"]:
        lines += [
            f"  - {{name: {mode}, type: openai_compatible, base_url: '{liar_url}/v1',",
            f"     api_key: CANARY-provider-{mode}-01, headers: {{x-liar: {mode}}},",
            f"     models: [{mode}-model]}}",
        ]
    lines += [
        f"auth: {{keys: [{{key: {GW}, name: canary}}]}}",
        "rate_limits: {per_user: {requests_per_minute: 1}}",
        "observability:",
        "  metrics: {enabled: true}",
        f"  admin: {{api_key: {ADMIN}}}",
        "  logging: {access_log: true}",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def env():
    with (
        MockProcess("--no-record") as mock,
        Liar() as liar,
        HelixProcess(config(mock.url, liar.url), workers=2) as helix,
    ):
        yield helix, liar


def no_canary(*blobs) -> None:
    for blob in blobs:
        text = blob if isinstance(blob, str) else repr(blob)
        assert CANARY not in text, text[:2000]


def openai_error(data: bytes) -> dict:
    err = json.loads(data)["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    return err


@pytest.mark.parametrize("mode", sorted(FAULTS))
@pytest.mark.parametrize("stream", [False, True])
def test_each_fault_is_a_clean_error(env, mode, stream):
    helix, _ = env
    status, code = FAULTS[mode]
    body = chat_body(f"{mode}-model", 10, stream=stream)
    got, headers, data = request(helix.port, body, key=GW)
    no_canary(headers, data)
    # A stream request answered with a JSON content type is read whole, so the same
    # rules apply to it.
    assert got == status, (mode, got, data[:300])
    err = openai_error(data)
    if code is not None:
        assert err["code"] == code, err


def test_client_side_errors(env):
    helix, _ = env
    cases = [
        (404, chat_body("no-such-model"), {}),
        (400, chat_body(5), {}),
        (400, b'{"model":"gpt-4o-mini","messages":[],"x":' + b"[" * 3000 + b"]" * 3000 + b"}", {}),
        (413, b"{" + b" " * 400_000 + b"}", {}),
        (401, chat_body("gpt-4o-mini"), {"authorization": "Bearer CANARY-wrong-key-1"}),
    ]
    for status, body, headers in cases:
        got, h, data = request(helix.port, body, key=GW, headers=headers)
        assert got == status, (status, got, data[:200])
        openai_error(data)
        no_canary(h, data)
    # 429 after one request of user u1.
    statuses = [request(helix.port, chat_body("gpt-4o-mini"), key=GW,
                        headers={"helicone-user-id": "u1"})[0] for _ in range(2)]
    assert statuses == [200, 429]
    # HTTP/1.1 without Host is a 400 (RFC 9112 3.2).
    with socket.create_connection(("127.0.0.1", helix.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")


def test_deep_json_logs_at_most_one_line_each(env):
    helix, _ = env
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":' + b"[" * 5000
    body += b"]" * 5000 + b"}]}"
    time.sleep(0.2)  # earlier tests' access lines are out of the 50-ms buffer
    before = len(helix.output)
    for _ in range(5):
        got, _, data = request(helix.port, body, key=GW)
        assert got == 400 and openai_error(data)["code"] == "json_too_deep"
    request(helix.port, chat_body("gpt-4o-mini"), key=GW)  # flush marker
    deadline = time.monotonic() + 5  # access lines are buffered up to 50 ms
    while len(helix.output) - before < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    new = helix.output[before:]
    assert len(new) <= 6, new  # the access lines, nothing else
    assert not any("Traceback" in line or "RecursionError" in line for line in new), new


def test_faults_leave_fds_and_memory_flat(env):
    helix, _ = env
    workers = helix.worker_pids()
    modes = ["status999", "html200", "notjson200", "garbage", "close", "echo401", "deep200"]

    def burst(n: int) -> None:
        for i in range(n):
            mode = modes[i % len(modes)]
            got, _, data = request(helix.port, chat_body(f"{mode}-model"), key=GW)
            assert got == FAULTS[mode][0], (mode, got, data[:200])

    burst(len(modes) * 4)  # warm every path
    fd0 = {p: fds(p) for p in workers}
    pss0 = {p: settled_pss(p) for p in workers}
    threads = [threading.Thread(target=burst, args=(280,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert helix.worker_pids() == workers
    for p in workers:
        assert fds(p) <= fd0[p] + 4, (p, fd0[p], fds(p))
        after = settled_pss(p)
        assert after - pss0[p] < 8 * MI, (p, pss0[p] / MI, after / MI)


def test_canary_never_in_status_metrics_logs_or_check(env):
    helix, _ = env
    for path in ("/status", "/metrics"):
        got, h, data = request(helix.port, None, method="GET", path=path, key=ADMIN)
        assert got == 200, (path, got)
        no_canary(h, data)
    no_canary(helix.log(), "".join(helix.output))
    out = subprocess.run([sys.executable, "-m", "helix", "check", "--config", helix.config_path],
                         capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    no_canary(out.stdout, out.stderr)


@pytest.mark.parametrize("api", ["messages", "responses"])
def test_other_client_apis_keep_the_promises(env, api):
    """The Anthropic Messages and Responses endpoints: errors in their own dialect, the
    canary scrubbed from a provider's echo, deep JSON a 400."""
    helix, _ = env

    def body(model, extra=b""):
        if api == "messages":
            doc = {"model": model, "max_tokens": 16,
                   "messages": [{"role": "user", "content": "hi"}]}
        else:
            doc = {"model": model, "input": "hi"}
        return json.dumps(doc).encode()[:-1] + extra + b"}"

    headers = {"x-api-key": GW, "anthropic-version": "2023-06-01"} if api == "messages" else {}
    key = None if api == "messages" else GW
    path = f"/v1/{api}"

    def shape(data: bytes) -> dict:
        doc = json.loads(data)
        if api == "messages":
            assert doc["type"] == "error", doc
        return doc["error"]

    got, h, data = request(helix.port, body("echo401-model"), path=path, key=key, headers=headers)
    assert got == 401, (got, data[:300])
    shape(data)
    no_canary(h, data)
    for mode in ("html200", "status999", "deep200"):
        got, h, data = request(helix.port, body(f"{mode}-model"), path=path, key=key,
                               headers=headers)
        assert got == 502, (mode, got, data[:300])
        shape(data)
        no_canary(h, data)
    deep = b',"x":' + b"[" * 3000 + b"]" * 3000
    got, h, data = request(helix.port, body("gpt-4o-mini", deep), path=path, key=key,
                           headers=headers)
    assert got == 400, (got, data[:300])
    assert shape(data)


def test_stream_event_nested_too_deep_through_a_translating_relay(env):
    """An Anthropic client in front of an OpenAI-compatible provider: the relay decodes each
    event (msgspec), which raises RecursionError on one nested 3,000 deep.  forward's _relay
    makes that a 502 in Anthropic's shape while nothing has gone out, and an Anthropic error
    event after the first event has; the worker lives on."""
    helix, _ = env
    headers = {"x-api-key": GW, "anthropic-version": "2023-06-01"}

    def body(model):
        return json.dumps({"model": model, "max_tokens": 16, "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()

    got, h, data = request(helix.port, body("deepsse0-model"), path="/v1/messages", key=None,
                           headers=headers)
    assert got == 502, (got, data[:300])
    doc = json.loads(data)
    assert doc["type"] == "error" and "nests JSON" in doc["error"]["message"], doc
    no_canary(h, data)
    got, h, data = request(helix.port, body("deepsse1-model"), path="/v1/messages", key=None,
                           headers=headers)
    assert got == 200, (got, data[:300])
    text = data.decode()
    assert "event: message_start" in text and '"fine"' in text, text[:600]
    assert text.rstrip().endswith("}") and "event: error" in text, text[-600:]
    assert "nests JSON" in text.split("event: error", 1)[1], text[-600:]
    no_canary(h, data)
    assert request(helix.port, chat_body("gpt-4o-mini"), key=GW)[0] == 200
