"""Cache hit latency: memory, Redis and S3 (moto) vs a miss.

Usage: python bench/cache.py [--n 2000] [--backends memory,redis,s3]

Two measurements per backend:

* server-side: the ``cache_lookup`` phase alone, in-process, answering a hit into a
  throw-away exchange (key canonicalization + hash + lookup + response framing);
* end to end: a real helix (1 worker) and the mock provider, one keep-alive HTTP/1.1
  connection: the same request repeated (hits) vs a new prompt each time (misses: the
  gateway, the mock round trip and the background store).

Redis is a local ``redis-server``; S3 is moto's server mode (in this process), so the S3
numbers are a lower bound for a real S3 (tens of ms per GET).  Every process started here is
stopped in a finally block.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import statistics
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helix import config as cfgmod  # noqa: E402
from helix.cache import Cache  # noqa: E402
from helix.cache.store import Answer, Entry  # noqa: E402
from helix.client import UpstreamPool  # noqa: E402
from helix.mock import MockProcess  # noqa: E402
from helix.phases.cache import cache_store, make_cache_lookup  # noqa: E402
from helix.pipeline.context import RequestContext  # noqa: E402
from helix.schema.openai import chat_request_decoder  # noqa: E402
from tests.helpers import HelixProcess  # noqa: E402
from tests.integration.test_cache_backends import S3, RedisServer  # noqa: E402

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are terse."},
                                          {"role": "user", "content": "Say hello " * 20}],
     "temperature": 0.2}
).encode()
ANSWER = json.dumps(
    {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello " * 50},
                  "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 30, "completion_tokens": 50, "total_tokens": 80}}
).encode()


class _Conn:
    lost = closing = draining = False
    server_header = b"helix"

    class transport:
        @staticmethod
        def write(data):
            pass

        @staticmethod
        def writelines(data):
            pass

    def response_complete(self, exchange):
        pass


class _Dep:
    provider, model_id = "mock", "gpt-4o-mini"


def _ctx():
    from helix.server import Exchange
    from helix.server.exchange import Request

    req = Request("POST", "/v1/chat/completions", "", {"authorization": "Bearer bench"},
                  BODY, "1.1", None, True)
    ctx = RequestContext(Exchange(_Conn(), req), "chat", time.monotonic())
    ctx.view = chat_request_decoder.decode(BODY)
    ctx.candidates = [_Dep()]
    return ctx


def caching(**kw) -> cfgmod.CachingConfig:
    import msgspec

    return msgspec.convert(kw, cfgmod.CachingConfig, dec_hook=cfgmod._dec_hook)


async def server_side(cache: Cache, n: int) -> list[float]:
    lookup = make_cache_lookup(cache, "chat")
    ctx = _ctx()
    assert not await lookup(ctx)  # a miss: learn the key
    key = ctx.capture.key
    cache_store(ctx)  # the recorder: finishes this miss's single-flight
    now = time.time()
    entry = Entry([Answer(0, ANSWER, now, now + 3600, None)])
    if cache.memory is not None:
        cache.memory.set_now(key, entry, 3600)
    else:
        await cache.store.set(key, entry, 3600)
    out = []
    for _ in range(n):
        ctx = _ctx()
        t0 = time.perf_counter()
        hit = await lookup(ctx)
        out.append(time.perf_counter() - t0)
        assert hit, "expected a hit"
    return out


def end_to_end(port: int, n: int) -> tuple[list[float], list[float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdr = {"content-type": "application/json", "authorization": "Bearer bench"}

    def post(body: bytes) -> tuple[float, str]:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=body, headers=hdr)
        resp = conn.getresponse()
        resp.read()
        return time.perf_counter() - t0, resp.getheader("helicone-cache")

    post(BODY)
    time.sleep(0.2)
    hits, misses = [], []
    for _ in range(n):
        dt, state = post(BODY)
        if state == "HIT":
            hits.append(dt)
    for _ in range(min(n, 500)):
        body = BODY.replace(b"Say hello", uuid.uuid4().hex.encode(), 1)
        dt, state = post(body)
        assert state == "MISS"
        misses.append(dt)
    conn.close()
    return hits, misses


def fmt(samples: list[float]) -> str:
    if not samples:
        return "-"
    s = sorted(samples)
    p50 = statistics.median(s) * 1e6
    p99 = s[int(len(s) * 0.99) - 1] * 1e6
    return f"p50 {p50:9.1f} µs  p99 {p99:9.1f} µs  (n={len(s)})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--backends", default="memory,redis,s3")
    args = ap.parse_args()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    rows = []
    with contextlib.ExitStack() as stack:
        mock = stack.enter_context(MockProcess())
        for backend in args.backends.split(","):
            if backend == "memory":
                yaml, kw = "  backend: memory\n", {}
            elif backend == "redis":
                redis = RedisServer().start()
                stack.callback(redis.stop)
                yaml = f"  backend: redis\n  redis_url: {redis.url}\n"
                kw = {"backend": "redis", "redis_url": redis.url}
            else:
                s3 = S3().start()
                stack.callback(s3.stop)
                s3.client().create_bucket(Bucket="bench")
                s3kw = {"backend": "s3", "s3_bucket": "bench", "s3_endpoint": s3.endpoint,
                        "s3_access_key_id": "testing", "s3_secret_access_key": "testing"}
                yaml = "".join(f"  {k}: {v}\n" for k, v in s3kw.items())
                kw = s3kw

            async def run(kw=kw):
                pool = UpstreamPool()
                cache = Cache(caching(**kw), pool)
                try:
                    return await server_side(cache, args.n)
                finally:
                    await cache.close()
                    await pool.close()

            server = asyncio.run(run())
            cfg = (f"providers:\n  - name: mock\n    type: openai_compatible\n"
                   f"    base_url: {mock.url}/v1\n    api_key: k\n    models: [gpt-4o-mini]\n"
                   f"caching:\n{yaml}")
            with HelixProcess(cfg, workers=1) as hx:
                hits, misses = end_to_end(hx.port, args.n)
            rows.append((backend, server, hits, misses))
    print(f"{'backend':8}  {'server-side hit (cache_lookup phase)':48}")
    for backend, server, _, _ in rows:
        print(f"{backend:8}  {fmt(server)}")
    print(f"\n{'backend':8}  {'end-to-end HIT':48}  end-to-end MISS")
    for backend, _, hits, misses in rows:
        print(f"{backend:8}  {fmt(hits):48}  {fmt(misses)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
