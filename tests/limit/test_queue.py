"""The rate-limit queue's local places and its part in LocalStore's atomic admission."""

import os
import time

import pytest

from helix._fast import RowLocksPy
from helix.errors import HelixError
from helix.limit import local
from helix.limit import queue as q
from helix.limit.keys import GatewayKey
from helix.limit.policy import Check
from helix.master.shm import SharedMemory, ShmLayout

S = 1_000_000_000
RPM = 0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000 * S

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def store():
    layout = ShmLayout()
    layout.alloc(local.TABLE, rows=256, cols=local.COLS, dtype="q")
    layout.alloc(q.TABLE, rows=9, cols=q.COLS, dtype="q")
    shm = SharedMemory(layout)
    table, qt = shm.table(local.TABLE), shm.table(q.TABLE)
    queue = q.LocalQueue(qt, RowLocksPy(qt.view, os.getpid(), shm._lock))
    clock = Clock()
    s = local.LocalStore(table, RowLocksPy(table.view, os.getpid(), shm._lock), clock,
                         queue=queue)
    s.fake = clock
    return s


CHECKS = [Check("g", RPM, 2)]  # a burst of 2, then one every 30 s
ONE = (1, 0, 0)


def ticket(prio=q.NORMAL, user="u"):
    return q.Ticket(prio, user, 10.0, time.monotonic())


def waiting(store, scope="g"):
    row = store._where[store._hash(scope)]
    cell = store.view[row * local.COLS + local.WAITING]
    return [(cell >> (q.BITS * p)) & q.MASK for p in range(3)]


def test_refused_ticket_takes_a_place_and_the_head_is_served_first(store):
    assert store.admit(CHECKS, ONE).allowed and store.admit(CHECKS, ONE).allowed
    first = ticket()
    res = store.admit(CHECKS, ONE, first)
    assert not res.allowed and not res.queued and first.slot >= 0
    assert res.retry_after == pytest.approx(30.0)
    assert waiting(store) == [0, 1, 0]
    store.fake.now += 30 * S  # one unit of capacity is back
    late = ticket()
    res = store.admit(CHECKS, ONE, late)  # a newcomer does not take it from the waiter
    assert not res.allowed and res.queued and res.retry_after == 0
    assert store.queue_position(late) == 1 and store.queue_position(first) == 0
    assert store.admit(CHECKS, ONE, first).allowed  # the head is
    assert first.slot == -1 and waiting(store) == [0, 1, 0]  # only `late` still waits
    store.queue_leave(late)
    assert waiting(store) == [0, 0, 0]


def test_higher_priority_newcomer_takes_free_capacity_first(store):
    store.admit(CHECKS, ONE)
    store.admit(CHECKS, ONE)
    low = ticket(q.PRIORITIES["low"])
    assert not store.admit(CHECKS, ONE, low).allowed
    store.fake.now += 30 * S
    high = ticket(q.PRIORITIES["high"])
    assert store.admit(CHECKS, ONE, high).allowed  # no place taken at all
    assert high.slot == -1
    res = store.admit(CHECKS, ONE, low)  # the low head finds the capacity gone
    assert not res.allowed and not res.queued and low.slot >= 0


def test_places_round_robin_across_users(store):
    store.admit(CHECKS, ONE)
    store.admit(CHECKS, ONE)
    a1, a2, a3, b1 = ticket(user="a"), ticket(user="a"), ticket(user="a"), ticket(user="b")
    for t in (a1, a2, a3, b1):
        assert not store.admit(CHECKS, ONE, t).allowed
    order = sorted((store.queue_position(t), name)
                   for t, name in ((a1, "a1"), (a2, "a2"), (a3, "a3"), (b1, "b1")))
    assert [name for _, name in order] == ["a1", "b1", "a2", "a3"]


def test_a_dead_owners_place_is_dropped_and_uncounted(store):
    store.admit(CHECKS, ONE)
    store.admit(CHECKS, ONE)
    dead, alive = ticket(), ticket()
    store.admit(CHECKS, ONE, dead)
    store.admit(CHECKS, ONE, alive)
    assert waiting(store) == [0, 2, 0] and store.queue_position(alive) == 1
    # The dead owner's place ends past its deadline (plus the grace second).
    store.queue.view[dead.slot * q.COLS + q.DEADLINE] = time.monotonic_ns() - 1
    assert store.queue_position(alive) == 0
    assert waiting(store) == [0, 1, 0]
    assert store.queue_position(dead) == -1


def test_queue_full(store):
    store.admit(CHECKS, ONE)
    store.admit(CHECKS, ONE)
    tickets = [ticket(user=str(i)) for i in range(9)]
    results = [store.admit(CHECKS, ONE, t) for t in tickets]
    assert [r.full for r in results] == [False] * 8 + [True]  # 8 places in this table
    assert tickets[-1].slot == -1


class Ctx:
    def __init__(self, key=None, headers=None, client=("10.0.0.1", 1)):
        self.principal = key
        self.exchange = type("E", (), {"request": type("R", (), {
            "headers": headers or {}, "client": client})()})()


def test_priority_of_header_and_key_ceiling():
    assert q.priority_of(Ctx(), None) == q.NORMAL
    assert q.priority_of(Ctx(), "HIGH") == 0
    low_key = GatewayKey("k", b"d", priority="low")
    assert q.priority_of(Ctx(low_key), None) == 2
    assert q.priority_of(Ctx(low_key), "high") == 2  # the key's priority is a ceiling
    high_key = GatewayKey("k", b"d", priority="high")
    assert q.priority_of(Ctx(high_key), "low") == 2  # ... that the client may go below
    with pytest.raises(HelixError) as ei:
        q.priority_of(Ctx(), "urgent")
    assert ei.value.status == 400 and ei.value.param == "Helix-Priority"
    assert q.user_of(Ctx(GatewayKey("k", b"d", user="ann"))) == "k:ann"
    assert q.user_of(Ctx(headers={"helicone-user-id": "bo"})) == "u:bo"
    assert q.user_of(Ctx()) == "a:10.0.0.1"
