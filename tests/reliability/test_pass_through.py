"""A large native answer is relayed as it arrives, never held whole (issue 14.2): the client
gets every byte, the usage at its end is still read (cost, access line), and the worker's
memory does not grow by the answer's size."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import time

import pytest

from tests.helpers import HelixProcess
from tests.reliability.kit import MI, settled_pss
from tests.reliability.liar import BIG, Liar


@pytest.fixture(scope="module")
def helix():
    with Liar() as liar:
        cfg = f"""
providers:
  - {{name: big, type: openai_compatible, base_url: '{liar.url}/v1', api_key: k,
     headers: {{x-liar: big200}}, models: [big]}}
  - {{name: bigc, type: openai_compatible, base_url: '{liar.url}/v1', api_key: k,
     headers: {{x-liar: bigchunked}}, models: [bigc]}}
observability:
  logging: {{access_log: true}}
"""
        with HelixProcess(cfg, workers=1) as proc:
            yield proc


def fetch(port: int, model: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "hi"}]}),
            {"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("model", ["big", "bigc"])
def test_large_native_answer_is_relayed_whole_with_its_usage(helix, model):
    since = len(helix.output)
    status, headers, body = fetch(helix.port, model)
    assert status == 200 and body == BIG
    assert headers.get("transfer-encoding") == "chunked"  # relayed as it came
    deadline = time.monotonic() + 5
    while True:
        lines = [ln for ln in helix.output[since:] if f"model={model} " in ln]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines, "no access line"
    assert "tokens=11/750000 " in lines[-1], lines[-1]  # the usage at its end


def test_concurrent_large_answers_are_not_held(helix):
    pid = helix.worker_pids()[0]
    fetch(helix.port, "big")
    before = settled_pss(pid)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: fetch(helix.port, "bigc"), range(8)))
    assert all(r[0] == 200 and r[2] == BIG for r in results)
    grown = settled_pss(pid) - before
    assert grown < 8 * len(BIG) / 2, f"{grown / MI:.1f} MiB held after 8 x 3 MB answers"
