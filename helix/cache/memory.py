"""In-process cache: a dict in LRU order, bounded by bytes.  One per worker.

It is per worker on purpose.  Workers are forked processes; sharing entries
between them would need either a separate process (a socket round trip per
lookup: that is what the Redis backend is for) or a shared-memory heap with
its own allocator, locking and serialization, which would cost the very
microseconds this backend exists to save.  So with N workers a request can
miss up to N times (once per worker) before every worker holds the answer;
use ``backend: redis`` (or ``s3``) for one cache shared by all workers and
all gateway instances.

Calls are synchronous: a lookup is a dict access and a ``move_to_end``.
The ``async`` methods exist so it also fits the backend interface.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from helix.cache.store import Entry, Stats


class MemoryBackend:
    name = "memory"
    local = True

    def __init__(self, max_bytes: int, stats: Stats | None = None) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.stats = stats if stats is not None else Stats()
        self._data: OrderedDict[str, tuple[Entry, float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get_now(self, key: str, now: float | None = None) -> Entry | None:
        item = self._data.get(key)
        if item is None:
            return None
        entry, expires, size = item
        if expires <= (time.time() if now is None else now):
            del self._data[key]
            self.bytes -= size
            return None
        self._data.move_to_end(key)
        return entry

    def set_now(self, key: str, entry: Entry, ttl: float) -> bool:
        size = entry.size + len(key)
        if size > self.max_bytes:
            return False
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
        self._data[key] = (entry, entry.expires_at(), size)
        self.bytes += size
        data = self._data
        while self.bytes > self.max_bytes:
            _, (_, _, evicted) = data.popitem(last=False)
            self.bytes -= evicted
            self.stats.evictions += 1
        self.stats.writes += 1
        return True

    def delete_now(self, key: str) -> int:
        item = self._data.pop(key, None)
        if item is None:
            return 0
        self.bytes -= item[2]
        return 1

    def delete_prefix_now(self, prefix: str) -> int:
        keys = [k for k in self._data if k.startswith(prefix)]
        for k in keys:
            self.delete_now(k)
        return len(keys)

    async def get(self, key: str) -> Entry | None:
        return self.get_now(key)

    async def set(self, key: str, entry: Entry, ttl: float) -> None:
        self.set_now(key, entry, ttl)

    async def delete(self, key: str) -> int:
        return self.delete_now(key)

    async def delete_prefix(self, prefix: str) -> int:
        return self.delete_prefix_now(prefix)

    async def close(self) -> None:
        self._data.clear()
        self.bytes = 0
