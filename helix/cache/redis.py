"""Redis backend: one cache shared by every worker (and every gateway instance).

Entries are msgpack under ``<prefix><namespace>/<hash>`` with a ``PX`` expiry
equal to the newest answer's remaining life, so Redis drops them itself.
Each call is bounded by ``Store``'s timeout (the client's socket timeouts are
set to the same value); redis-py's own retries are off, because a retry
after a timeout only doubles the time a request waits for a miss.
``redis+cluster://`` URLs use Redis Cluster (see ``helix.limit.redis.redis_client``).
"""

from __future__ import annotations

import re
import time

from helix.cache.store import Entry, decode_entry, encode_entry

_GLOB = re.compile(r"([*?\[\]\\])")


class RedisBackend:
    name = "redis"
    local = False

    def __init__(self, url: str, timeout: float, prefix: str = "helix:cache:") -> None:
        self.prefix = prefix
        from helix.limit.redis import redis_client

        # redis+cluster:// -> RedisCluster.  Cache commands are single-key (GET, SET PX,
        # UNLINK) and purges SCAN every master and UNLINK per slot, so entries spread
        # over the whole cluster: no hash tag here, on purpose.
        self.client = redis_client(url, timeout)

    async def get(self, key: str) -> Entry | None:
        data = await self.client.get(self.prefix + key)
        return None if data is None else decode_entry(data)

    async def set(self, key: str, entry: Entry, ttl: float) -> None:
        ms = int((entry.expires_at() - time.time()) * 1000)
        if ms <= 0:
            return
        await self.client.set(self.prefix + key, encode_entry(entry), px=ms)

    async def delete(self, key: str) -> int:
        return int(await self.client.unlink(self.prefix + key))

    async def delete_prefix(self, prefix: str) -> int:
        pattern = _GLOB.sub(r"\\\1", self.prefix + prefix) + "*"
        removed = 0
        batch: list[bytes] = []
        async for name in self.client.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                removed += int(await self.client.unlink(*batch))
                batch = []
        if batch:
            removed += int(await self.client.unlink(*batch))
        return removed

    async def close(self) -> None:
        await self.client.aclose()
