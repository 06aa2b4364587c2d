"""The Lua store against a real redis-server: same decisions as the local store, bounded failure."""

import asyncio
import shutil
import time

import pytest

from helix.limit.policy import Check
from helix.limit.redis import RedisDown, RedisStore

from .redis_server import RedisServer

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")
RPM, TPM, USD_H = 0, 3, 6


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


def run(coro):
    return asyncio.run(coro)


def test_gcra_exact_and_headers(redis_server):
    async def go():
        store = RedisStore(redis_server.url, 0.5)
        c = [Check("k:gcra-test", RPM, 5)]
        results = await asyncio.gather(*(store.admit(c, (1, 0, 0)) for _ in range(15)))
        await store.close()
        return results

    results = run(go())
    assert sum(r.allowed for r in results) == 5
    refused = [r for r in results if not r.allowed]
    assert all(11.5 < r.retry_after <= 12.0 for r in refused)  # one interval: 60/5 s
    assert sorted(r.remaining[0] for r in results if r.allowed) == [0, 1, 2, 3, 4]


def test_all_or_nothing_and_budget_settle(redis_server):
    async def go():
        store = RedisStore(redis_server.url, 0.5)
        glob, user = Check("g-aon", RPM, 100), Check("u:aon", RPM, 1)
        assert (await store.admit([glob, user], (1, 0, 0))).allowed
        r = await store.admit([glob, user], (1, 0, 0))
        assert not r.allowed and r.failed == 1
        r = await store.admit([glob], (1, 0, 0))
        assert r.remaining == [98]  # the refused request consumed nothing
        tpm = Check("t:aon", TPM, 100)
        r = await store.admit([tpm], (1, 60, 0))
        assert r.allowed and r.remaining == [40]
        assert not (await store.admit([tpm], (1, 60, 0))).allowed
        await store.settle([tpm], r.windows, (1, 60, 0), (1, 10, 0))
        assert (await store.admit([tpm], (1, 60, 0))).remaining == [30]
        usd = Check("k:aon", USD_H, 1_000_000)
        r = await store.admit([usd], (1, 0, 900_000))
        await store.settle([usd], r.windows, (1, 0, 900_000), (1, 0, 0))  # released
        assert (await store.admit([usd], (1, 0, 900_000))).allowed
        await store.close()

    run(go())


def test_down_and_hung_redis_never_hang(redis_server):
    async def go():
        store = RedisStore(redis_server.url, 0.1)
        c = [Check("k:down", RPM, 1000)]
        assert (await store.admit(c, (1, 0, 0))).allowed
        redis_server.pause()
        try:
            t0 = time.monotonic()
            with pytest.raises(RedisDown):
                await store.admit(c, (1, 0, 0))
            assert time.monotonic() - t0 < 0.5
            # within the retry interval: refused at once, no wait
            t0 = time.monotonic()
            with pytest.raises(RedisDown):
                await store.admit(c, (1, 0, 0))
            assert time.monotonic() - t0 < 0.01
            assert store.errors == 1
        finally:
            redis_server.resume()
        await asyncio.sleep(1.1)
        assert (await store.admit(c, (1, 0, 0))).allowed  # recovered
        await store.close()

    run(go())
