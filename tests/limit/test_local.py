"""The local store: owner-pid locks (both twins), exact admission across processes."""

import os
import signal
import time

import pytest

from helix._fast import RowLocksC, RowLocksPy
from helix.limit import local
from helix.limit.policy import UNITS, Check
from helix.master.shm import SharedMemory, ShmLayout

IMPLS = [RowLocksPy] + ([RowLocksC] if RowLocksC is not None else [])
S = 1_000_000_000
RPM, TPM, USD_H = 0, 3, 6


def test_compiled_twin_built_when_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert RowLocksC is not None


@pytest.fixture(params=IMPLS, ids=lambda c: c.__module__)
def locks_cls(request):
    return request.param


def make_shm(rows=256):
    layout = ShmLayout()
    layout.alloc(local.TABLE, rows=rows, cols=local.COLS, dtype="q")
    layout.alloc("counter", rows=1, cols=1, dtype="q")
    return SharedMemory(layout)


def make_store(shm, locks_cls, clock=time.time_ns):
    table = shm.table(local.TABLE)
    return local.LocalStore(table, locks_cls(table.view, os.getpid(), shm._lock), clock)


def _fork(fn, n):
    """Run ``fn`` in ``n`` children; their exit codes (``fn``'s return value, 0..255)."""
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = fn() or 0
            finally:
                os._exit(code)
        pids.append(pid)
    codes = []
    deadline = time.monotonic() + 60
    for pid in pids:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes.append(os.waitstatus_to_exitcode(status))
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                pytest.fail("child did not finish")
            time.sleep(0.01)
    return codes


def test_lock_mutual_exclusion_across_processes(locks_cls):
    shm = make_shm()
    table = shm.table(local.TABLE)
    counter = shm.table("counter").view

    def work():
        locks = locks_cls(table.view, os.getpid(), shm._lock)
        for _ in range(2000):
            locks.acquire(0)
            v = counter[0]
            counter[0] = v + 1  # a non-atomic read-modify-write, made safe by the lock
            locks.release(0)

    assert _fork(work, 4) == [0, 0, 0, 0]
    assert counter[0] == 8000
    assert table.view[0] == 0


def test_lock_taken_over_from_dead_owner(locks_cls):
    shm = make_shm()
    table = shm.table(local.TABLE)
    pid = os.fork()
    if pid == 0:
        locks_cls(table.view, os.getpid(), shm._lock).acquire(0)
        os._exit(0)  # dies holding the lock
    os.waitpid(pid, 0)
    assert table.view[0] == pid
    locks = locks_cls(table.view, os.getpid(), shm._lock)
    start = time.monotonic()
    assert locks.acquire(0) is True  # taken over
    assert time.monotonic() - start < 5
    assert locks.owner(0) == os.getpid()
    locks.release(0)
    assert locks.owner(0) == 0


def test_exact_admission_across_processes(locks_cls):
    shm = make_shm()
    limit = 50
    check = [Check("g", RPM, limit)]

    def work():
        store = make_store(shm, locks_cls)
        return sum(store.admit(check, (1, 0, 0)).allowed for _ in range(60))

    assert sum(_fork(work, 4)) == limit


def clock_at(t):
    box = [t]

    def clock():
        return box[0]

    clock.box = box
    return clock


def test_all_or_nothing_across_scopes(locks_cls):
    shm = make_shm()
    clock = clock_at(1000 * S)
    store = make_store(shm, locks_cls, clock)
    glob = Check("g", RPM, 100)
    alice = Check("u:alice", RPM, 2)
    for _ in range(2):
        assert store.admit([glob, alice], (1, 0, 0)).allowed
    r = store.admit([glob, alice], (1, 0, 0))
    assert not r.allowed and r.failed == 1 and r.retry_after == pytest.approx(30.0)
    # the refusal did not consume the global allowance: 98 left
    r = store.admit([glob], (1, 0, 0))
    assert r.allowed and r.remaining == [97]


def test_lone_request_limit_decides_like_the_general_path(locks_cls):
    """A lone request limit takes a shortcut in admit(); it must decide, write and report
    exactly what the general path does (here: the same limit plus an unrelated, never
    binding tokens limit on another scope, which goes the general way)."""
    import random

    rng = random.Random(7)
    clock = clock_at(5000 * S)
    fast = make_store(make_shm(), locks_cls, clock)
    slow = make_store(make_shm(), locks_cls, clock)
    rpm = Check("k:ci", RPM, 5)
    other = Check("t:x", TPM, 10**12)
    for _ in range(200):
        clock.box[0] += rng.choice([0, 1, S // 10, 3 * S, 20 * S])
        a = fast.admit([rpm], (1, 0, 0))
        b = slow.admit([rpm, other], (1, 1, 0))
        assert (a.allowed, a.retry_after) == (b.allowed, b.retry_after)
        assert a.failed == (-1 if a.allowed else 0) and (a.failed < 0) == (b.failed < 0)
        assert a.remaining[0] == b.remaining[0] and a.reset[0] == b.reset[0]
    assert fast.view[fast._where[fast._hash("k:ci")] * local.COLS + local.STATE] == \
        slow.view[slow._where[slow._hash("k:ci")] * local.COLS + local.STATE]


def test_tokens_reserve_and_settle(locks_cls):
    shm = make_shm()
    clock = clock_at(1020 * S + 5 * S)
    store = make_store(shm, locks_cls, clock)
    tpm = Check("t:red", TPM, 100)
    r = store.admit([tpm], (1, 60, 0))
    assert r.allowed and r.remaining == [40]
    assert not store.admit([tpm], (1, 60, 0)).allowed  # reserved estimate counts
    store.settle([tpm], r.windows, (1, 60, 0), (1, 10, 0))
    r2 = store.admit([tpm], (1, 60, 0))
    assert r2.allowed and r2.remaining == [30]
    store.settle([tpm], r2.windows, (1, 60, 0), (1, 500, 0))  # overspent
    r3 = store.admit([tpm], (1, 1, 0))
    assert not r3.allowed and r3.retry_after == pytest.approx(55.0)
    clock.box[0] += 55 * S  # the next minute
    assert store.admit([tpm], (1, 1, 0)).allowed


def test_cost_budget_release_on_failure(locks_cls):
    shm = make_shm()
    store = make_store(shm, locks_cls, clock_at(7200 * S))
    usd = Check("k:ci", USD_H, 1_000_000)  # $0.001
    r = store.admit([usd], (1, 0, 900_000))
    assert r.allowed
    assert not store.admit([usd], (1, 0, 200_000)).allowed
    store.settle([usd], r.windows, (1, 0, 900_000), (1, 0, 0))  # failed: released
    assert store.admit([usd], (1, 0, 200_000)).allowed


def test_full_table_evicts_and_stays_correct(locks_cls):
    shm = make_shm(rows=64)
    store = make_store(shm, locks_cls, clock_at(1000 * S))
    for i in range(500):
        assert store.admit([Check(f"u:{i}", RPM, 1)], (1, 0, 0)).allowed
    # the latest scope is still limited
    assert not store.admit([Check("u:499", RPM, 1)], (1, 0, 0)).allowed


def test_units_table_is_what_config_names():
    from helix.config import LimitSpec

    assert [u[0] for u in UNITS] == list(LimitSpec.__struct_fields__)
