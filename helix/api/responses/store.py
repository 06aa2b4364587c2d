"""Stored responses: what makes ``previous_response_id`` and ``GET /v1/responses/{id}`` work
for providers that keep no conversation state themselves.

One record per response, tenant-scoped (the hashed credential of the client that
created it; another tenant's lookup finds nothing):

* translated responses keep the Response object, their own input items (with
  ids) and the id of the response they continued, so a conversation is the
  chain of its records;
* native responses (OpenAI, Azure) keep only which provider holds them, so a
  later ``GET``/``DELETE`` or a continuation goes back to that deployment.

Backends: ``sqlite`` (default) -- one WAL-mode file every worker of the
instance shares, surviving restarts, bounded by ``ttl`` and ``max_bytes``
(expired records purged, then the oldest); ``redis`` -- every instance sharing
the Redis continues any conversation (``SET ... EX ttl``, one key per record);
``none`` -- nothing is kept (``store: true`` requests on translated providers
are then refused with a clear 400 when they continue a conversation).

SQLite calls are short synchronous statements (a few hundred microseconds);
the database is opened on first use, so a gateway that never serves
/v1/responses never creates it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import msgspec

from helix.config import default_state_dir

__all__ = ["NoStore", "Record", "RedisStore", "SqliteStore", "open_store"]

log = logging.getLogger("helix.responses")
_encode = msgspec.json.Encoder().encode


class Record(msgspec.Struct, kw_only=True):
    """One stored response."""

    tenant: str
    created_at: float
    response: dict | None = None  # the Response object (translated)
    input_items: list = []  # this response's input items, with ids (translated)
    previous: str | None = None  # the response this one continued
    provider: str | None = None  # native: the provider (by config name) that holds it


_record_decoder = msgspec.json.Decoder(Record)


class NoStore:
    kind = "none"

    async def get(self, rid: str, tenant: str) -> Record | None:
        return None

    async def put(self, rid: str, record: Record) -> None:
        return None

    async def delete(self, rid: str, tenant: str) -> bool:
        return False

    async def close(self) -> None:
        return None


class SqliteStore:
    """The embedded store: one file, WAL, shared by every worker of the instance."""

    kind = "sqlite"
    PURGE_EVERY = 256  # writes between purges of expired records

    def __init__(self, path: str, ttl: float, max_bytes: int) -> None:
        self.path = path
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._db = None
        self._writes = 0

    def _conn(self):
        if self._db is None:
            import sqlite3

            os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
                " expires REAL NOT NULL, size INTEGER NOT NULL, doc BLOB NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires)")
            self._db = db
        return self._db

    async def get(self, rid: str, tenant: str) -> Record | None:
        row = self._conn().execute(
            "SELECT doc FROM responses WHERE id = ? AND tenant = ? AND expires > ?",
            (rid, tenant, time.time()),
        ).fetchone()
        return _record_decoder.decode(row[0]) if row else None

    async def put(self, rid: str, record: Record) -> None:
        doc = _encode(record)
        db = self._conn()
        db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                   (rid, record.tenant, time.time() + self.ttl, len(doc), doc))
        self._writes += 1
        if self._writes % self.PURGE_EVERY == 1:
            self.purge()

    def _used_bytes(self, db) -> int:
        """Bytes in use in the database file (pages minus free pages): O(1), no table scan."""
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size

    def purge(self) -> int:
        """Drop expired records, then the oldest while the file holds more than max_bytes."""
        db = self._conn()
        n = db.execute("DELETE FROM responses WHERE expires <= ?", (time.time(),)).rowcount
        if self._used_bytes(db) <= self.max_bytes:
            return n
        total = db.execute("SELECT COALESCE(SUM(size), 0) FROM responses").fetchone()[0]
        if total > self.max_bytes:
            excess = total - self.max_bytes * 0.9
            rows = db.execute("SELECT id, size FROM responses ORDER BY expires").fetchall()
            doomed = []
            for rid, size in rows:
                if excess <= 0:
                    break
                doomed.append((rid,))
                excess -= size
            db.executemany("DELETE FROM responses WHERE id = ?", doomed)
            n += len(doomed)
            log.warning("responses store over %d bytes: dropped the %d oldest records",
                        self.max_bytes, len(doomed))
        return n

    async def delete(self, rid: str, tenant: str) -> bool:
        cur = self._conn().execute("DELETE FROM responses WHERE id = ? AND tenant = ?",
                                   (rid, tenant))
        return cur.rowcount > 0

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class RedisStore:
    """Records as ``helix:resp:<id>`` keys with the TTL; shared by every instance."""

    kind = "redis"
    PREFIX = "helix:resp:"

    def __init__(self, url: str, ttl: float, timeout: float) -> None:
        self.url = url
        self.ttl = ttl
        self.timeout = timeout
        self._client = None

    def _redis(self):
        if self._client is None:
            from helix.limit.redis import redis_client

            self._client = redis_client(self.url, self.timeout)  # a server or a cluster
        return self._client

    async def _call(self, coro):
        from helix.errors import ErrorKind, HelixError

        try:
            async with asyncio.timeout(self.timeout):
                return await coro
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise HelixError(ErrorKind.UNAVAILABLE, "The responses store (Redis) is unreachable "
                             "right now.", code="state_store_unavailable",
                             headers=[(b"retry-after", b"1")]) from exc
        except Exception as exc:  # redis.exceptions.RedisError and its kin
            if type(exc).__module__.startswith("redis"):
                raise HelixError(ErrorKind.UNAVAILABLE, "The responses store (Redis) failed: "
                                 f"{type(exc).__name__}.", code="state_store_unavailable",
                                 headers=[(b"retry-after", b"1")]) from None
            raise

    async def get(self, rid: str, tenant: str) -> Record | None:
        raw = await self._call(self._redis().get(self.PREFIX + rid))
        if raw is None:
            return None
        record = _record_decoder.decode(raw)
        return record if record.tenant == tenant else None

    async def put(self, rid: str, record: Record) -> None:
        await self._call(self._redis().set(self.PREFIX + rid, _encode(record),
                                           ex=max(1, int(self.ttl))))

    async def delete(self, rid: str, tenant: str) -> bool:
        if await self.get(rid, tenant) is None:
            return False
        return bool(await self._call(self._redis().delete(self.PREFIX + rid)))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def open_store(cfg, env: dict[str, str] | None = None) -> Any:
    """The store ``responses:`` config asks for (nothing is opened until first use)."""
    if cfg.store == "none":
        return NoStore()
    if cfg.store == "redis":
        return RedisStore(cfg.redis_url, float(cfg.ttl), float(cfg.redis_timeout))
    path = os.path.join(cfg.state_dir or default_state_dir(env), "responses.sqlite3")
    return SqliteStore(path, float(cfg.ttl), cfg.max_bytes)
