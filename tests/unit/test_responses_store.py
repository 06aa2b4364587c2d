"""The embedded responses store: tenant scoping, TTL and the size bound."""

import asyncio
import time

from helix.api.responses.store import Record, SqliteStore


def run(coro):
    return asyncio.run(coro)


def record(tenant: str, size: int = 10) -> Record:
    return Record(tenant=tenant, created_at=time.time(), response={"id": "r", "pad": "x" * size})


def test_tenant_scoped_and_deleted(tmp_path):
    store = SqliteStore(str(tmp_path / "s.sqlite3"), ttl=60, max_bytes=10**9)
    run(store.put("resp_1", record("alice")))
    assert run(store.get("resp_1", "alice")).tenant == "alice"
    assert run(store.get("resp_1", "bob")) is None
    assert not run(store.delete("resp_1", "bob"))
    assert run(store.delete("resp_1", "alice"))
    assert run(store.get("resp_1", "alice")) is None
    run(store.close())


def test_expired_records_are_gone_and_purged(tmp_path):
    store = SqliteStore(str(tmp_path / "s.sqlite3"), ttl=0.05, max_bytes=10**9)
    run(store.put("resp_1", record("a")))
    time.sleep(0.1)
    assert run(store.get("resp_1", "a")) is None
    assert store.purge() == 1
    run(store.close())


def test_the_oldest_go_first_beyond_max_bytes(tmp_path):
    store = SqliteStore(str(tmp_path / "s.sqlite3"), ttl=600, max_bytes=200_000)
    for i in range(40):
        run(store.put(f"resp_{i}", record("a", 20_000)))
    store.purge()
    assert run(store.get("resp_0", "a")) is None  # the oldest were dropped
    assert run(store.get("resp_39", "a")) is not None
    assert store._used_bytes(store._conn()) < 2 * 200_000
    run(store.close())


def test_two_connections_share_the_file(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    a, b = SqliteStore(path, 60, 10**9), SqliteStore(path, 60, 10**9)  # two workers
    run(a.put("resp_x", record("t")))
    assert run(b.get("resp_x", "t")) is not None
    run(a.close())
    run(b.close())
