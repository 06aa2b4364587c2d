"""What a cache entry is, and the one wrapper every backend goes through.

An entry is a *bucket* of up to N answers for one key (N = 1 unless the
client sends ``Helicone-Cache-Bucket-Max-Size``).  Each answer is the body
exactly as the client got it -- a JSON object or the OpenAI SSE stream --
with its usage and its own store and expiry times (wall clock, so entries
shared through Redis or S3 age the same for every worker).

Backends implement ``get / set / delete / delete_prefix / close`` (async).
:class:`Store` wraps a *remote* backend (Redis, S3) so that a failure or a
timeout is a miss plus a counter, never an error: every call is bounded by
the backend's timeout, and after a failure the backend is skipped (instant
misses, no writes) for ``RETRY_INTERVAL`` seconds before it is tried again,
so an outage does not add its timeout to every request.  The memory backend
is local and synchronous: it is called directly, without that wrapper.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import msgspec

log = logging.getLogger("helix.cache")

JSON = 0
SSE = 1

# After a backend failure, skip it (misses, dropped writes) this long before trying again.
RETRY_INTERVAL = 1.0
# Background writes waiting at once; more are dropped (and counted).
MAX_PENDING_WRITES = 1024


class Answer(msgspec.Struct, array_like=True, frozen=True):
    kind: int  # JSON or SSE
    body: bytes
    stored_at: float  # time.time()
    expires_at: float
    usage: dict | None = None

    @property
    def size(self) -> int:
        return len(self.body) + 64


class Entry(msgspec.Struct, array_like=True, frozen=True):
    answers: list[Answer]

    @property
    def size(self) -> int:
        return sum(a.size for a in self.answers)

    def expires_at(self) -> float:
        return max(a.expires_at for a in self.answers)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Entry).decode


def encode_entry(entry: Entry) -> bytes:
    return _encode(entry)


def decode_entry(data: bytes) -> Entry | None:
    """None for bytes that are not an entry (a foreign value under our prefix): a miss."""
    try:
        return _decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def fresh(entry: Entry | None, now: float, max_age: float | None = None) -> list[Answer]:
    """The answers of ``entry`` neither expired nor older than ``max_age``."""
    if entry is None:
        return []
    return [
        a
        for a in entry.answers
        if a.expires_at > now and (max_age is None or now - a.stored_at <= max_age)
    ]


def pick(entry: Entry | None, now: float, bucket: int, max_age: float | None) -> Answer | None:
    """A hit: one fresh answer at random once the bucket holds ``bucket`` of them."""
    answers = fresh(entry, now, max_age)
    if len(answers) < bucket or not answers:
        return None
    if len(answers) == 1:
        return answers[0]
    return random.choice(answers)


def merged(previous: Entry | None, answer: Answer, bucket: int, now: float) -> Entry:
    """The entry to write after a miss: the still-fresh answers plus the new one, newest kept."""
    if bucket <= 1 or previous is None:
        return Entry([answer])
    keep = fresh(previous, now)[-(bucket - 1) :]
    return Entry([*keep, answer])


class Stats:
    """Counters, per worker.  ``errors``/``timeouts``/``skipped`` are backend failures that
    became misses (or dropped writes); ``too_large`` are answers not stored for their size."""

    __slots__ = (
        "errors",
        "evictions",
        "hits",
        "misses",
        "skipped",
        "timeouts",
        "too_large",
        "writes",
        "writes_dropped",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Store:
    """A remote backend behind a timeout, a failure counter and a short circuit breaker."""

    local = False

    def __init__(self, backend, timeout: float, stats: Stats | None = None) -> None:
        self.backend = backend
        self.name = backend.name
        self.timeout = timeout
        self.stats = stats if stats is not None else Stats()
        self._down_until = 0.0
        self._writes: set[asyncio.Task] = set()

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            self.stats.timeouts += 1
        else:
            self.stats.errors += 1
        if self.available:  # log once per outage window, not once per request
            log.warning(
                "cache backend %s: %s failed (%s); serving misses for %.1fs",
                self.name, op, type(exc).__name__, RETRY_INTERVAL,
            )
        self._down_until = time.monotonic() + RETRY_INTERVAL

    async def get(self, key: str) -> Entry | None:
        if not self.available:
            self.stats.skipped += 1
            return None
        try:
            async with asyncio.timeout(self.timeout):
                return await self.backend.get(key)
        except Exception as exc:
            self._failed("get", exc)
            return None

    async def set(self, key: str, entry: Entry, ttl: float) -> bool:
        if not self.available:
            self.stats.writes_dropped += 1
            return False
        try:
            async with asyncio.timeout(self.timeout):
                await self.backend.set(key, entry, ttl)
        except Exception as exc:
            self._failed("set", exc)
            self.stats.writes_dropped += 1
            return False
        self.stats.writes += 1
        return True

    def set_later(self, key: str, entry: Entry, ttl: float) -> None:
        """Write off the response path (a task); bounded, and dropped rather than queued."""
        if len(self._writes) >= MAX_PENDING_WRITES:
            self.stats.writes_dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self.set(key, entry, ttl))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def delete(self, key: str) -> int:
        # Purges are explicit admin actions: they wait longer and report failures.
        async with asyncio.timeout(max(self.timeout, 30.0)):
            return await self.backend.delete(key)

    async def delete_prefix(self, prefix: str) -> int:
        async with asyncio.timeout(max(self.timeout, 60.0)):
            return await self.backend.delete_prefix(prefix)

    async def close(self) -> None:
        for task in list(self._writes):
            task.cancel()
        await self.backend.close()
