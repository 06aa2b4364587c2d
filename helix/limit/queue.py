"""Priority queueing instead of bare 429s (``rate_limits.queue``).

A request over a request, token or dollar limit does not get its 429 at once: it joins
the queue of the limit scope that refused it (``g``, a team, a user, a key) and waits,
up to ``max_wait``, for capacity; then it is admitted, or gets the 429 it would have got.

**Order.**  Every waiter holds a place ``(priority, round, seq)``, smallest first:

* ``priority`` -- ``Helix-Priority: high | normal | low`` (a gateway key's ``priority`` is
  its default and its ceiling: the header may lower it, never raise it);
* ``round`` -- fairness across users within a priority: a user's first waiting request
  takes the queue's current round, its second the next round, and so on, so a user with
  a hundred queued requests does not delay another user's single one by a hundred
  places (deficit round robin with a quantum of one request);
* ``seq`` -- arrival order within a round.

  The ``local`` backend decides rounds from the places waiting now; the ``redis`` backend
  also remembers, per queue, the round each user last got and the round last served (for
  ``2 x max_wait + 60 s``), so a user whose requests were just served goes behind one
  who had none even when the queue had emptied in between.

Only the head of a queue may take capacity, and a newcomer that finds anyone of its own
or a higher priority waiting on one of its scopes queues behind them instead of taking
capacity the head is waiting for: the check and the admission are one atomic step
(under the limit rows' locks for the ``local`` backend, one Lua script for ``redis``), so
the order is exact across workers and instances.  A higher-priority newcomer takes free
capacity ahead of lower-priority waiters (that is what priority means).

**Waiting is cheap.**  Nobody spins: the head sleeps until the ``retry-after`` the limit
store computed and then asks again; a waiter at position ``k`` sleeps about ``k`` emission
intervals (``period / limit`` of the refusing request limit) before it looks again.  A
waiter leaves its place when it is admitted, when ``max_wait`` is over (the 429 says how
long to wait), when its client disconnects (its handler is cancelled), or when the head
could not be served within its remaining wait anyway (a day's budget is spent: no point
in waiting 10 s).  A place whose owner died (a killed worker) is dropped by the next
waiter that looks at the queue, one second after the owner's own deadline.

**What is guaranteed** (tests/integration/test_queue.py): strict priority among waiters
of one scope; round robin across users within a priority, arrival order within a user;
no newcomer overtakes a waiter of its priority or higher; a waiter waits at most
``max_wait`` (plus one emission interval of polling granularity); a disconnected client's
place is freed at once.  Not guaranteed: fairness *between* scopes (a request refused by
its per-user limit waits in its user's queue, not behind the global one), and when a
waiting request is refused by a second scope while at the head of the first, it moves to
the back of the second's queue.

Local layout (table ``limit_queue``, planned with the limits table): row 0 holds the
table's lock cell and a sequence counter; every other row is one place::

    col 0 scope hash (0: free)   col 1 priority   col 2 round   col 3 seq
    col 4 user hash              col 5 deadline (CLOCK_MONOTONIC ns)   col 6 pid

and each scope's limits row counts its waiters per priority (21 bits each) in column 3,
so a newcomer's check costs one read per scope under locks it takes anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

from helix.errors import ErrorKind, HelixError

__all__ = ["PRIORITIES", "LocalQueue", "Ticket", "priority_of", "wait_turn"]

PRIORITIES = {"high": 0, "normal": 1, "low": 2}
NAMES = ("high", "normal", "low")
NORMAL = 1

TABLE = "limit_queue"
COLS = 8
SCOPE, PRIO, ROUND, SEQ, USER, DEADLINE, PID = 0, 1, 2, 3, 4, 5, 6
LOCK_CELL, SEQ_CELL = 0, 1
GRACE_NS = 1_000_000_000  # a place lives this long past its owner's deadline
BITS = 21
MASK = (1 << BITS) - 1
MIN_SLEEP = 0.005
BUDGET_STEP = 0.01  # a budget queue's guess of the time one admission takes


def priority_of(ctx, header: str | None) -> int:
    """The request's priority: the key's (a ceiling) or the ``Helix-Priority`` header."""
    key = ctx.principal
    ceiling = PRIORITIES[key.priority] if key is not None and key.priority else None
    if header is None:
        return NORMAL if ceiling is None else ceiling
    prio = PRIORITIES.get(header.strip().lower())
    if prio is None:
        raise HelixError(
            ErrorKind.INVALID_REQUEST,
            f"Invalid Helix-Priority header {header[:40]!r}: expected high, normal or low.",
            param="Helix-Priority",
        )
    return prio if ceiling is None else max(prio, ceiling)


def user_of(ctx) -> str:
    """Who a waiter is, for fairness: the key's user or name, else Helicone-User-Id, else the
    client's address."""
    key = ctx.principal
    if key is not None:
        return "k:" + (key.user or key.name)
    user = ctx.exchange.request.headers.get("helicone-user-id")
    if user:
        return "u:" + user
    client = ctx.exchange.request.client
    return "a:" + (client[0] if client else "")


def hash64(text: str) -> int:
    h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return (h & 0x7FFF_FFFF_FFFF_FFFF) or 1


def waiting(cell: int, prio: int) -> int:
    """Waiters of priority ``prio`` or higher in a packed per-priority count."""
    n = 0
    for p in range(prio + 1):
        n += (cell >> (BITS * p)) & MASK
    return n


def counted(cell: int, prio: int, delta: int) -> int:
    shift = BITS * prio
    n = max(0, ((cell >> shift) & MASK) + delta)
    return (cell & ~(MASK << shift)) | (min(n, MASK) << shift)


class Ticket:
    """One waiting request's place (``slot``/``seq`` for local, ``member`` for Redis)."""

    __slots__ = ("_id", "_user_h", "deadline", "deadline_ns", "member", "prio", "qidx",
                 "scope", "seq", "slot", "user", "wait_ms")

    def __init__(self, prio: int, user: str, max_wait: float, now: float) -> None:
        self.prio = prio
        self.user = user
        self.deadline = now + max_wait
        self.deadline_ns = time.monotonic_ns() + int(max_wait * 1e9)
        self.wait_ms = int(max_wait * 1000)
        self.scope = ""
        self.slot = -1
        self.seq = 0
        self.member = ""
        self.qidx = 0
        self._user_h = 0
        self._id = ""

    # Made only when the request has to wait (most tickets are admitted at once).
    @property
    def user_h(self) -> int:
        if not self._user_h:
            self._user_h = hash64(self.user)
        return self._user_h

    @property
    def id(self) -> str:
        if not self._id:
            self._id = os.urandom(6).hex()
        return self._id

    @property
    def placed(self) -> bool:
        return self.slot >= 0 or bool(self.member)


class LocalQueue:
    """The places of every local queue, in one shared table (see the module doc)."""

    def __init__(self, table, locks) -> None:
        self.view = table.view
        self.rows = table.rows
        self.locks = locks
        self.pid = os.getpid()

    def join(self, scope_h: int, prio: int, user_h: int, deadline_ns: int) -> tuple[int, int]:
        """Take a place in ``scope_h``'s queue: ``(slot, seq)``, or ``(-1, 0)`` when full."""
        view = self.view
        now = time.monotonic_ns()
        self.locks.acquire(LOCK_CELL)
        try:
            free = -1
            head_round = -1
            mine = -1
            for r in range(1, self.rows):
                b = r * COLS
                h = view[b + SCOPE]
                if h == 0:
                    if free < 0:
                        free = r
                    continue
                if h != scope_h or view[b + PRIO] != prio or view[b + DEADLINE] < now:
                    continue
                rnd = view[b + ROUND]
                if head_round < 0 or rnd < head_round:
                    head_round = rnd
                if view[b + USER] == user_h and rnd > mine:
                    mine = rnd
            if free < 0:
                return -1, 0
            seq = view[SEQ_CELL] + 1
            view[SEQ_CELL] = seq
            b = free * COLS
            view[b + PRIO] = prio
            view[b + ROUND] = max(head_round, mine + 1, 0)
            view[b + SEQ] = seq
            view[b + USER] = user_h
            view[b + DEADLINE] = deadline_ns + GRACE_NS
            view[b + PID] = self.pid
            view[b + SCOPE] = scope_h  # last: the place exists once it names its scope
            return free, seq
        finally:
            self.locks.release(LOCK_CELL)

    def leave(self, slot: int, seq: int) -> tuple[int, int] | None:
        """Free a place; ``(scope hash, priority)`` to uncount, None if it was gone already."""
        view = self.view
        b = slot * COLS
        self.locks.acquire(LOCK_CELL)
        try:
            if view[b + SEQ] != seq or view[b + SCOPE] == 0:
                return None
            out = (view[b + SCOPE], view[b + PRIO])
            view[b + SCOPE] = 0
            return out
        finally:
            self.locks.release(LOCK_CELL)

    def position(self, slot: int, seq: int) -> tuple[int, list[tuple[int, int]]]:
        """Places ahead of ``slot`` in its queue (-1: the place is gone), and the places of
        dead owners dropped on the way (``(scope hash, priority)`` each, to uncount)."""
        view = self.view
        now = time.monotonic_ns()
        dropped: list[tuple[int, int]] = []
        b = slot * COLS
        self.locks.acquire(LOCK_CELL)
        try:
            if view[b + SEQ] != seq or view[b + SCOPE] == 0:
                return -1, dropped
            scope_h = view[b + SCOPE]
            key = (view[b + PRIO], view[b + ROUND], seq)
            ahead = 0
            for r in range(1, self.rows):
                o = r * COLS
                h = view[o + SCOPE]
                if h == 0 or r == slot:
                    continue
                if view[o + DEADLINE] < now:
                    dropped.append((h, view[o + PRIO]))
                    view[o + SCOPE] = 0
                    continue
                if h == scope_h and (view[o + PRIO], view[o + ROUND], view[o + SEQ]) < key:
                    ahead += 1
            return ahead, dropped
        finally:
            self.locks.release(LOCK_CELL)

    def is_head(self, slot: int, seq: int) -> bool | None:
        """Whether ``slot`` is first in its queue (None: the place is gone).  Places past
        their deadline do not count (the next :meth:`position` drops them)."""
        view = self.view
        now = time.monotonic_ns()
        b = slot * COLS
        self.locks.acquire(LOCK_CELL)
        try:
            if view[b + SEQ] != seq or view[b + SCOPE] == 0:
                return None
            scope_h = view[b + SCOPE]
            key = (view[b + PRIO], view[b + ROUND], seq)
            for r in range(1, self.rows):
                o = r * COLS
                if view[o + SCOPE] != scope_h or r == slot or view[o + DEADLINE] < now:
                    continue
                if (view[o + PRIO], view[o + ROUND], view[o + SEQ]) < key:
                    return False
            return True
        finally:
            self.locks.release(LOCK_CELL)


def interval_of(checks, failed: int) -> float:
    """About how long one admission takes on the refusing check's scope (seconds)."""
    from helix.limit.policy import REQUESTS

    scope = checks[failed].scope
    best = 0.0
    for c in checks:
        if c.scope == scope and c.kind == REQUESTS:
            step = c.period / c.limit
            best = step if best == 0.0 else min(best, step)
    return best or BUDGET_STEP


async def wait_turn(store, ticket: Ticket, checks, amounts, result, clock, sync: bool):
    """Wait in ``ticket``'s queue (joined by the refusal ``result``) until admitted: the
    admitting Result, or the last refusal once waiting cannot succeed.  The place is always
    left (admitted, gave up, cancelled)."""
    last = result  # the refusal to answer with: a capacity refusal when there was one
    try:
        res = result
        while True:
            if res.full or not ticket.placed:
                return last
            now = clock()
            left = ticket.deadline - now
            if left <= 0:
                return last
            pos = store.queue_position(ticket) if sync else await store.queue_position(ticket)
            if pos < 0:
                return last
            retry = res.retry_after
            if pos == 0:
                if retry > left:
                    return last  # capacity comes back too late for this request
                pause = retry
            else:
                pause = max(retry, pos * interval_of(checks, res.failed))
            await asyncio.sleep(max(MIN_SLEEP, min(pause, left)))
            res = store.admit(checks, amounts, ticket) if sync else \
                await store.admit(checks, amounts, ticket)
            if res.allowed:
                return res
            if not res.queued:
                last = res
    finally:
        if ticket.placed:
            if sync:
                store.queue_leave(ticket)
            else:
                store.leave_later(ticket)
