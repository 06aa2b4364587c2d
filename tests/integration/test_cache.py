"""Response caching end to end (memory backend): a real helix (2 workers), the mock provider,
the ``openai`` SDK.

The memory backend is per worker (docs/ARCHITECTURE.md, "Caching").  Tests that need "the same
worker" send their requests one after another through one SDK client, i.e. one keep-alive
connection, which one worker owns; ``test_memory_cache_is_per_worker`` pins what happens across
connections.  Shared-backend behaviour (Redis, S3) is in test_cache_backends.py.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess

openai = pytest.importorskip("openai")

ADMIN = "admin-key-0123456789abcdef"


def config(mock_url: str, caching: str) -> str:
    return f"""
providers:
  - name: mock
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: sk-upstream
    models: [gpt-4o-mini, text-embedding-3-small, {{name: alias-fast, id: gpt-4o-mini}}]
  - name: limited
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: sk-upstream
    headers: {{x-mock-status: "429"}}
  - name: slow
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: sk-upstream
    headers: {{x-mock-latency-ms: "600"}}
caching:
{caching}
"""


CACHING = f"""  backend: memory
  admin_api_key: {ADMIN}
  max_entry_bytes: 20000
  rules:
    - path: "//chat/completions"
      ttl: 2
    - path: "//embeddings"
      ttl: 86400
"""


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "5") as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    with HelixProcess(config(mock.url, CACHING), workers=2) as proc:
        yield proc


@pytest.fixture(scope="module")
def helix1(mock):
    """One worker: for tests whose requests cannot share a connection (the SDK closes a
    stream's connection, so the next request may reach the other worker's memory cache)."""
    with HelixProcess(config(mock.url, CACHING), workers=1) as proc:
        yield proc


@pytest.fixture
def client(helix):
    with openai.OpenAI(base_url=helix.base_url, api_key="tenant-a", max_retries=0,
                       timeout=15) as c:
        yield c


@pytest.fixture
def client1(helix1):
    with openai.OpenAI(base_url=helix1.base_url, api_key="tenant-a", max_retries=0,
                       timeout=15) as c:
        yield c


def prompt() -> list[dict]:
    return [{"role": "user", "content": f"hello {uuid.uuid4().hex}"}]


def calls(mock, messages, path="/v1/chat/completions") -> int:
    text = messages[0]["content"] if isinstance(messages, list) else messages
    return sum(
        1 for r in mock.requests() if r["path"] == path and text in json.dumps(r["body"])
    )


def chat(client, messages, *, stream=False, model="gpt-4o-mini", headers=None, usage=False):
    """(content, usage, response headers) through the SDK."""
    kw = {"stream_options": {"include_usage": True}} if stream and usage else {}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=stream, extra_headers=headers or {}, **kw
    )
    out = raw.parse()
    if stream:
        parts, u = [], None
        for ch in out:
            if ch.choices:
                parts.append(ch.choices[0].delta.content or "")
            if ch.usage is not None:
                u = ch.usage.model_dump()
        return "".join(parts), u, raw.headers
    u = out.usage.model_dump() if out.usage else None
    return out.choices[0].message.content, u, raw.headers


def test_miss_then_hit_one_upstream_call(client, mock):
    m = prompt()
    text1, usage1, h1 = chat(client, m)
    assert h1["helicone-cache"] == "MISS" and "age" not in h1
    text2, usage2, h2 = chat(client, m)
    assert h2["helicone-cache"] == "HIT" and int(h2["age"]) >= 0
    assert (text2, usage2) == (text1, usage1)
    assert h2["x-helix-cache-key"] == h1["x-helix-cache-key"]
    assert calls(mock, m) == 1
    # an alias resolving to the same deployment shares the entry
    assert chat(client, m, model="alias-fast")[2]["helicone-cache"] == "HIT"
    assert calls(mock, m) == 1


def test_json_stored_replayed_as_stream_and_back(client1, mock):
    client = client1
    m = prompt()
    text, usage, _ = chat(client, m)
    s_text, s_usage, h = chat(client, m, stream=True, usage=True)
    assert h["helicone-cache"] == "HIT" and h["content-type"].startswith("text/event-stream")
    assert s_text == text and s_usage == usage
    no_usage = chat(client, m, stream=True)
    assert no_usage[0] == text and no_usage[1] is None
    assert calls(mock, m) == 1


def test_stream_stored_replayed_as_json_and_as_stream(client1, mock):
    client = client1
    m = prompt()
    s_text, s_usage, h = chat(client, m, stream=True, usage=True)
    assert h["helicone-cache"] == "MISS" and s_usage is not None
    time.sleep(0.1)  # the store happens after the response (memory: right after)
    text, usage, h2 = chat(client, m)
    assert h2["helicone-cache"] == "HIT" and h2["content-type"] == "application/json"
    assert text == s_text and usage == s_usage
    again = chat(client, m, stream=True, usage=True)
    assert again[2]["helicone-cache"] == "HIT" and again[:2] == (s_text, s_usage)
    plain = chat(client, m, stream=True)  # stored with a usage chunk; not asked for here
    assert plain[0] == s_text and plain[1] is None
    assert calls(mock, m) == 1


def test_ttl_expiry(client, mock):
    m = prompt()
    chat(client, m)
    assert chat(client, m)[2]["helicone-cache"] == "HIT"
    time.sleep(2.2)
    assert chat(client, m)[2]["helicone-cache"] == "MISS"
    assert calls(mock, m) == 2


def test_cache_control_no_cache_no_store_max_age(client, mock):
    m = prompt()
    # no-store: neither looked up nor stored (no cache header at all)
    h = chat(client, m, headers={"Cache-Control": "no-store"})[2]
    assert "helicone-cache" not in h
    assert chat(client, m)[2]["helicone-cache"] == "MISS"  # nothing was stored
    # no-cache: skips the lookup (upstream again) but stores its answer
    h = chat(client, m, headers={"Cache-Control": "no-cache"})[2]
    assert h["helicone-cache"] == "MISS"
    assert calls(mock, m) == 3
    assert chat(client, m)[2]["helicone-cache"] == "HIT"
    # max-age caps the acceptable age
    time.sleep(1.1)
    assert chat(client, m, headers={"Cache-Control": "max-age=0"})[2]["helicone-cache"] == "MISS"
    assert chat(client, m, headers={"Cache-Control": "max-age=60"})[2]["helicone-cache"] == "HIT"
    assert calls(mock, m) == 4


def test_per_request_enable_header(client, mock):
    m = prompt()
    h = chat(client, m, headers={"Helicone-Cache-Enabled": "false"})[2]
    assert "helicone-cache" not in h
    chat(client, m)
    h = chat(client, m, headers={"Helicone-Cache-Enabled": "false"})[2]
    assert "helicone-cache" not in h  # bypassed although an entry exists
    assert calls(mock, m) == 3
    h = chat(client, m, headers={"Helicone-Cache-Enabled": "true"})[2]
    assert h["helicone-cache"] == "HIT"


def test_tenants_never_share_by_default(client, mock):
    m = prompt()
    chat(client, m)  # tenant-a stores
    # same connection (same worker), another bearer: a miss, not tenant-a's answer
    h = chat(client, m, headers={"Authorization": "Bearer tenant-b"})[2]
    assert h["helicone-cache"] == "MISS"
    h = chat(client, m, headers={"Helicone-User-Id": "someone"})[2]
    assert h["helicone-cache"] == "MISS"
    assert chat(client, m)[2]["helicone-cache"] == "HIT"
    assert calls(mock, m) == 3


def test_seed_and_bucket(client, mock):
    m = prompt()
    chat(client, m)
    assert chat(client, m, headers={"Helicone-Cache-Seed": "s1"})[2]["helicone-cache"] == "MISS"
    assert chat(client, m, headers={"Helicone-Cache-Seed": "s1"})[2]["helicone-cache"] == "HIT"
    b = {"Helicone-Cache-Bucket-Max-Size": "3", "Helicone-Cache-Seed": "bucket"}
    states = [chat(client, m, headers=b)[2]["helicone-cache"] for _ in range(5)]
    assert states == ["MISS", "MISS", "MISS", "HIT", "HIT"]
    assert calls(mock, m) == 5
    with pytest.raises(openai.BadRequestError):
        chat(client, m, headers={"Helicone-Cache-Bucket-Max-Size": "0"})


def test_embeddings_are_cached(client, mock):
    text = f"embed {uuid.uuid4().hex}"
    a = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=text)
    b = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=text)
    assert a.headers["helicone-cache"] == "MISS" and b.headers["helicone-cache"] == "HIT"
    assert a.parse().data[0].embedding == b.parse().data[0].embedding
    assert calls(mock, text, "/v1/embeddings") == 1


def test_errors_are_never_cached(client, mock):
    m = prompt()
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            chat(client, m, model="limited/gpt-4o-mini")
    assert calls(mock, m) == 2


def test_large_answers_are_not_stored(client, mock):
    m = [{"role": "user", "content": "x " * 12000 + uuid.uuid4().hex}]
    chat(client, m, model="mock/gpt-4o-mini")  # the reply is small, the request is not
    m2 = prompt()
    big = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=m2[0]["content"], dimensions=4096
    )
    assert big.headers["helicone-cache"] == "MISS"
    again = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=m2[0]["content"], dimensions=4096
    )
    assert again.headers["helicone-cache"] == "MISS"  # ~80 KB > max_entry_bytes: 20000
    assert calls(mock, m2[0]["content"], "/v1/embeddings") == 2


def _post(port, path, body, headers=None, timeout=10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body),
                     headers={"content-type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_memory_cache_is_per_worker(helix, mock):
    """Each new connection may land on either worker: a request misses at most once per
    worker, so with 2 workers: 1 or 2 upstream calls, every other request a hit."""
    m = prompt()
    body = {"model": "gpt-4o-mini", "messages": m}
    states = []
    for _ in range(30):
        status, headers, _ = _post(helix.port, "/v1/chat/completions", body,
                                   {"authorization": "Bearer tenant-a"})
        assert status == 200
        states.append(headers["helicone-cache"])
    upstream = calls(mock, m)
    assert 1 <= upstream <= helix.workers
    assert states.count("MISS") == upstream and states.count("HIT") == 30 - upstream


def test_admin_purge(helix, client, mock):
    m = prompt()
    key = chat(client, m)[2]["x-helix-cache-key"]
    assert chat(client, m)[2]["helicone-cache"] == "HIT"
    status, _, _ = _post(helix.port, "/admin/cache/purge", {"all": True},
                         {"authorization": "Bearer wrong"})
    assert status == 401
    status, _, _ = _post(helix.port, "/admin/cache/purge", {"bogus": 1},
                         {"authorization": f"Bearer {ADMIN}"})
    assert status == 400
    # Purge through the client's own connection so it reaches the worker holding the entry
    # (the memory backend is per worker).
    raw = client.post("/../admin/cache/purge", body={"key": key}, cast_to=object,
                      options={"headers": {"Authorization": f"Bearer {ADMIN}"}})
    assert raw["scope"] == "key" and raw["backend"] == "memory"
    assert chat(client, m)[2]["helicone-cache"] == "MISS"


def concurrent(port: int, body: dict, n: int) -> list[tuple[int, str | None, dict]]:
    results, errors = [], []
    barrier = threading.Barrier(n)

    def one():
        try:
            barrier.wait(timeout=10)
            status, headers, data = _post(port, "/v1/chat/completions", body,
                                          {"authorization": "Bearer t"}, timeout=20)
            results.append((status, headers.get("helicone-cache"), json.loads(data)))
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and len(results) == n
    assert all(status == 200 for status, _, _ in results)
    assert len({r["choices"][0]["message"]["content"] for _, _, r in results}) == 1
    return results


def test_single_flight_50_concurrent_identical_requests(helix1, mock):
    """One worker: 50 concurrent identical misses make exactly one upstream call; the 49
    others are served the leader's answer (a HIT) -- the provider answers in 600 ms."""
    m = prompt()
    results = concurrent(helix1.port, {"model": "slow/gpt-4o-mini", "messages": m}, 50)
    assert calls(mock, m) == 1
    assert [h for _, h, _ in results].count("MISS") == 1


def test_single_flight_is_per_worker(helix, mock):
    """Two workers: at most one upstream call per worker."""
    m = prompt()
    results = concurrent(helix.port, {"model": "slow/gpt-4o-mini", "messages": m}, 50)
    upstream = calls(mock, m)
    assert 1 <= upstream <= helix.workers
    assert [h for _, h, _ in results].count("MISS") == upstream
