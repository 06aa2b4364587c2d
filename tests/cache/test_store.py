"""Entries, the memory backend, the guarded remote wrapper, single-flight, replay, config."""

import asyncio
import time

import msgspec
import pytest

from helix import config as c
from helix.cache import Cache, check_config, endpoint_of, rules_of
from helix.cache.memory import MemoryBackend
from helix.cache.replay import json_to_sse, sse_for_client, sse_to_json
from helix.cache.singleflight import SingleFlight
from helix.cache.store import (
    JSON,
    Answer,
    Entry,
    Stats,
    Store,
    decode_entry,
    encode_entry,
    merged,
    pick,
)


def answer(body=b"{}", at=1000.0, ttl=60.0, kind=JSON, usage=None):
    return Answer(kind, body, at, at + ttl, usage)


# -- entries -------------------------------------------------------------------------------


def test_entry_roundtrip_and_foreign_bytes():
    e = Entry([answer(b'{"a":1}', usage={"total_tokens": 3})])
    assert decode_entry(encode_entry(e)) == e
    assert decode_entry(b"not msgpack at all") is None


def test_pick_ttl_and_max_age():
    e = Entry([answer(at=1000.0, ttl=60.0)])
    assert pick(e, 1030.0, 1, None) is not None
    assert pick(e, 1061.0, 1, None) is None  # expired
    assert pick(e, 1030.0, 1, 29.0) is None  # older than max-age
    assert pick(e, 1030.0, 1, 30.0) is not None
    assert pick(None, 1030.0, 1, None) is None


def test_bucket_fills_then_answers_at_random():
    a1, a2, a3 = (answer(b'{"n":%d}' % i) for i in (1, 2, 3))
    e = merged(None, a1, 3, 1001.0)
    assert pick(e, 1001.0, 3, None) is None
    e = merged(e, a2, 3, 1001.0)
    assert pick(e, 1001.0, 3, None) is None
    e = merged(e, a3, 3, 1001.0)
    seen = {pick(e, 1001.0, 3, None).body for _ in range(200)}
    assert seen == {a1.body, a2.body, a3.body}
    # a bucket of one is always replaced; a full bucket drops its oldest
    assert merged(e, a1, 1, 1001.0).answers == [a1]
    a4 = answer(b'{"n":4}')
    assert [a.body for a in merged(e, a4, 3, 1001.0).answers] == [a2.body, a3.body, a4.body]


# -- memory ----------------------------------------------------------------------------------


def test_memory_lru_bounded_by_bytes():
    stats = Stats()
    m = MemoryBackend(max_bytes=3 * (100 + 64 + 10), stats=stats)
    now = time.time()
    for k in ("key-000a", "key-000b", "key-000c"):
        assert m.set_now(k, Entry([answer(b"x" * 100, at=now)]), 60)
    assert m.get_now("key-000a") is not None  # a is now most recent
    m.set_now("key-000d", Entry([answer(b"x" * 100, at=now)]), 60)
    assert m.get_now("key-000b") is None  # least recently used went first
    assert m.get_now("key-000a") is not None and m.get_now("key-000d") is not None
    assert stats.evictions == 1 and m.bytes <= m.max_bytes
    assert not m.set_now("huge", Entry([answer(b"x" * 10_000, at=now)]), 60)


def test_memory_expiry_and_purge():
    m = MemoryBackend(1 << 20)
    now = time.time()
    m.set_now("_/a", Entry([answer(at=now - 100, ttl=10)]), 10)
    assert m.get_now("_/a") is None and len(m) == 0 and m.bytes == 0
    for k in ("_/1", "_/2", "sx/1"):
        m.set_now(k, Entry([answer(at=now)]), 60)
    assert m.delete_now("_/1") == 1 and m.delete_now("_/1") == 0
    assert m.delete_prefix_now("sx/") == 1
    assert list(m._data) == ["_/2"]
    assert m.delete_prefix_now("") == 1 and m.bytes == 0


# -- guarded remote store ------------------------------------------------------------------------


class Flaky:
    name = "flaky"

    def __init__(self):
        self.mode = "ok"
        self.data = {}
        self.calls = 0

    async def _maybe_fail(self):
        self.calls += 1
        if self.mode == "error":
            raise ConnectionError("down")
        if self.mode == "hang":
            await asyncio.sleep(10)

    async def get(self, key):
        await self._maybe_fail()
        return self.data.get(key)

    async def set(self, key, entry, ttl):
        await self._maybe_fail()
        self.data[key] = entry

    async def delete(self, key):
        return int(self.data.pop(key, None) is not None)

    async def delete_prefix(self, prefix):
        return 0

    async def close(self):
        pass


def test_store_failures_and_timeouts_are_misses_then_it_recovers(monkeypatch):
    import helix.cache.store as store_mod

    monkeypatch.setattr(store_mod, "RETRY_INTERVAL", 0.2)

    async def run():
        b = Flaky()
        s = Store(b, timeout=0.05)
        e = Entry([answer(at=time.time())])
        assert await s.set("k", e, 60) and await s.get("k") == e
        b.mode = "error"
        assert await s.get("k") is None and s.stats.errors == 1
        calls = b.calls
        assert await s.get("k") is None and b.calls == calls  # skipped while "down"
        assert s.stats.skipped == 1
        await asyncio.sleep(0.25)
        b.mode = "hang"
        t0 = time.monotonic()
        assert await s.get("k") is None
        assert time.monotonic() - t0 < 0.5 and s.stats.timeouts == 1
        await asyncio.sleep(0.25)
        b.mode = "ok"
        assert await s.get("k") == e  # recovered
        s.set_later("k2", e, 60)
        await asyncio.sleep(0.01)
        assert b.data["k2"] == e and s.stats.writes == 2

    asyncio.run(run())


# -- single-flight ---------------------------------------------------------------------------------


def test_single_flight_one_leader_many_followers():
    async def run():
        sf = SingleFlight()
        fut, leader = sf.join("k")
        assert leader
        followers = [sf.join("k") for _ in range(5)]
        assert all(f is fut and not lead for f, lead in followers)
        waits = [asyncio.create_task(sf.wait(fut, 1.0)) for _ in range(5)]
        await asyncio.sleep(0)
        sf.finish("k", fut, "answer")
        assert await asyncio.gather(*waits) == ["answer"] * 5
        assert len(sf) == 0
        fut2, leader2 = sf.join("k")
        assert leader2 and fut2 is not fut
        t0 = time.monotonic()
        assert await sf.wait(fut2, 0.05) is None  # bounded wait
        assert time.monotonic() - t0 < 0.5
        sf.finish("k", fut2, None)

    asyncio.run(run())


# -- replay ------------------------------------------------------------------------------------


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "hello there",
                "refusal": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "f", "arguments": '{"a":1}'}}
                ],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    "system_fingerprint": "fp",
}


def _chunks(sse: bytes):
    out = []
    for block in sse.split(b"\n\n"):
        if block.startswith(b"data: ") and block != b"data: [DONE]":
            out.append(msgspec.json.decode(block[6:]))
    return out


def test_json_to_sse_and_back_keeps_content_and_usage():
    body = msgspec.json.encode(COMPLETION)
    sse = json_to_sse(body, include_usage=True)
    assert sse.endswith(b"data: [DONE]\n\n")
    chunks = _chunks(sse)
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert chunks[-1]["usage"] == COMPLETION["usage"] and chunks[-1]["choices"] == []
    back = msgspec.json.decode(sse_to_json(sse))
    assert back["choices"][0]["message"]["content"] == "hello there"
    assert back["choices"][0]["message"]["tool_calls"] == COMPLETION["choices"][0]["message"][
        "tool_calls"
    ]
    assert back["choices"][0]["finish_reason"] == "stop"
    assert back["usage"] == COMPLETION["usage"] and back["id"] == "chatcmpl-1"
    no_usage = _chunks(json_to_sse(body, include_usage=False))
    assert all("usage" not in ch for ch in no_usage)


def test_stream_stored_with_usage_replayed_to_a_client_that_did_not_ask():
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    stored = b"".join(
        [
            b'data: {"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":"a"}}],'
            b'"usage":null}\n\n',
            b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"b"},'
            b'"finish_reason":"stop"}],"usage":null}\n\n',
            b'data: {"id":"x","choices":[],"usage":' + msgspec.json.encode(usage) + b"}\n\n",
            b"data: [DONE]\n\n",
        ]
    )
    assert sse_for_client(stored, include_usage=True) == stored
    plain = sse_for_client(stored, include_usage=False)
    chunks = _chunks(plain)
    assert len(chunks) == 2 and all("usage" not in ch for ch in chunks)
    assert plain.endswith(b"data: [DONE]\n\n")
    doc = msgspec.json.decode(sse_to_json(stored))
    assert doc["choices"][0]["message"]["content"] == "ab" and doc["usage"] == usage


# -- config ------------------------------------------------------------------------------------


def caching(**kw):
    return msgspec.convert(kw, c.CachingConfig, dec_hook=c._dec_hook)


def test_rule_paths_match_sensibly():
    paths = ("//chat/completions", "/v1/chat/completions", "chat/completions", "/chat/completions/")
    for p in paths:
        assert endpoint_of(p) == "chat"
    assert endpoint_of("//embeddings") == "embeddings"
    assert endpoint_of("/v1/models") is None
    rules = rules_of(caching(ttl=10, rules=[{"path": "//embeddings", "ttl": 5}]))
    assert list(rules) == ["embeddings"] and rules["embeddings"].ttl == 5.0
    both = rules_of(caching(ttl=10))
    # No rules: every API whose answers can be cached.
    assert set(both) == {"chat", "embeddings", "messages", "responses"}
    assert both["chat"].ttl == 10.0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"rules": [{"path": "/v1/models"}]}, r"rules\[0\]\.path: Helix caches"),
        ({"rules": [{"path": "//embeddings"}, {"path": "/v1/embeddings"}]}, "same endpoint"),
        ({"rules": [{"path": "//embeddings", "cache_key_include": []}]}, "at least one"),
        ({"rules": [{"path": "//embeddings", "cache_key_include": ["a.b"]}]}, "top-level"),
        ({"backend": "redis"}, "redis_url: required"),
        ({"backend": "redis", "redis_url": "http://x"}, "expected redis://"),
        ({"redis_url": "redis://x"}, "only used with backend: redis"),
        ({"s3_bucket": "b"}, "only used with backend: s3"),
        ({"backend": "redis", "redis_url": "redis://x", "memory_max_bytes": 5}, "memory"),
        ({"backend": "s3"}, "s3_bucket: required"),
        ({"backend": "s3", "s3_bucket": "b_b", "s3_region": "r"}, "not a valid bucket"),
        ({"backend": "s3", "s3_bucket": "bkt"}, "s3_region: required"),
        (
            {"backend": "s3", "s3_bucket": "bkt", "s3_region": "r", "s3_prefix": "a//b"},
            "s3_prefix",
        ),
        ({"backend": "s3", "s3_bucket": "bkt", "s3_region": "r"}, "needs credentials"),
        ({"admin_api_key": "short"}, "at least 16"),
        ({"max_entry_bytes": 0}, "positive"),
    ],
)
def test_unsupported_caching_config_is_refused(kw, message):
    with pytest.raises(c.ConfigError, match=message):
        check_config(caching(**kw), env={})


def test_supported_config_and_env_only_redis():
    check_config(caching(rules=[{"path": "//chat/completions", "ttl": 3600,
                                 "cache_key_include": ["model", "messages", "temperature"]}]))
    check_config(
        caching(backend="s3", s3_bucket="bkt", s3_endpoint="http://127.0.0.1:9"),
        env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"},
    )
    cfg = c.load_env({"REDIS_URL": "redis://localhost:6379"})
    c.check_supported(cfg)  # caching is built: env-only Redis caching is accepted
    assert cfg.caching.backend == "redis"


def test_cache_builds_per_backend():
    cache = Cache(caching())
    assert cache.memory is not None and cache.store is None and cache.backend_name == "memory"
    asyncio.run(cache.close())
    cache = Cache(caching(backend="redis", redis_url="redis://127.0.0.1:1"))
    assert cache.store is not None and cache.backend_name == "redis"
    asyncio.run(cache.close())
