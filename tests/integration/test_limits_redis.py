"""Two helix instances sharing one real redis: one exact limit, bounded failure, recovery."""

import concurrent.futures
import shutil
import time

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess
from tests.limit.redis_server import RedisServer

from .test_limits import post

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")
UPSTREAM = "sk-upstream-secret-1234"
LIMIT = 6
MSGS = [{"role": "user", "content": "hello there"}]


def _config(mock_url, redis_url, policy):
    return f"""
providers:
  - name: mock
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: {UPSTREAM}
    models: [gpt-4o-mini]
rate_limits:
  backend: redis
  redis_url: {redis_url}
  redis_timeout: 200ms
  failure_policy: {policy}
  per_user: {{requests_per_minute: {LIMIT}}}
"""


@pytest.fixture(scope="module")
def env():
    with RedisServer() as redis, MockProcess("--require-key", UPSTREAM) as mock, \
            HelixProcess(_config(mock.url, redis.url, "fail_open"), workers=2) as a, \
            HelixProcess(_config(mock.url, redis.url, "fail_closed"), workers=1) as b:
        yield redis, a, b


def chat(helix, user):
    t0 = time.monotonic()
    status, headers, body = post(
        helix.port, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MSGS},
        headers={"helicone-user-id": user}, timeout=10,
    )
    return status, headers, body, time.monotonic() - t0


def test_one_limit_exact_across_two_instances(env):
    _, a, b = env
    targets = [a, b] * (3 * LIMIT // 2)
    with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
        results = list(pool.map(lambda h: chat(h, "shared-user"), targets))
    statuses = [r[0] for r in results]
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == 2 * LIMIT
    ok = next(r for r in results if r[0] == 200)
    assert ok[1]["x-ratelimit-limit-requests"] == str(LIMIT)


def test_redis_down_policy_then_recovery(env):
    redis, a, b = env
    assert chat(a, "before")[0] == 200
    redis.stop()
    # fail_open serves, fail_closed refuses with 503; neither hangs past the timeout
    for _ in range(3):
        status, _, _, took = chat(a, "during")
        assert status == 200 and took < 2.0
        status, headers, body, took = chat(b, "during")
        assert status == 503 and took < 2.0 and headers.get("retry-after") == "1"
        assert b"rate_limiter_unavailable" in body
    # a hung redis (accepts, never answers): bounded by redis_timeout
    redis.start()
    time.sleep(1.2)  # past the stores' retry interval
    redis.pause()
    try:
        status, _, _, took = chat(a, "hung")
        assert status == 200 and took < 2.0
        status, _, _, took = chat(b, "hung")
        assert status == 503 and took < 2.0
    finally:
        redis.resume()
    time.sleep(1.2)
    # limits resume: exactly LIMIT again for a fresh user, across both instances
    statuses = [chat(h, "after")[0] for h in [a, b] * LIMIT]
    assert statuses.count(200) == LIMIT, statuses
    assert a.wait_log("redis is reachable again")
    assert "rate limits: redis failed" in a.log()
