"""The ``local`` backend: one limits table in shared memory, exact across the workers.

Table ``limits`` (planned by :func:`plan_shm` in the master before fork, so
every worker maps the same pages), one 160-byte row (20 x int64) per scope::

    col 0          lock      0, or the pid holding the row (helix._fast RowLocks)
    col 1          hash      63-bit blake2b of the scope string; 0 = free row
    col 2          touched   time.time_ns() of the last write
    col 3          waiting   rate-limit queue: waiters per priority, 21 bits each (queue.py)
    col 4+2u, 5+2u unit u    requests: (tat, -)   tokens/cost: (window, used)

Rows are found by open addressing (``hash % rows``, up to :data:`PROBES`
rows).  A row untouched for a day holds no live state (no period is longer),
so it is reused; if every probed row is live, the least recently touched one
is taken over (its scope starts afresh) and a warning is logged: size
``rate_limits.local_capacity`` above the number of scopes active in a day.

An admission resolves its rows, locks them in ascending row order (no
deadlock), decides every check with the pure functions of ``gcra``/``budget``
(time passed in), writes only if all pass, and unlocks: all-or-nothing, and
exact: two workers can never both take the last unit.  The lock is a CAS on
the row's own cell (compiled) or the mapping's semaphore (pure-Python twin).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

from helix.limit import budget, gcra
from helix.limit import queue as q
from helix.limit.policy import REQUESTS, Check, Result

__all__ = ["COLS", "TABLE", "LocalStore", "plan_shm"]

log = logging.getLogger("helix.limit")

TABLE = "limits"
COLS = 20
LOCK, HASH, TOUCHED, WAITING = 0, 1, 2, 3
STATE = 4
PROBES = 8
DEFAULT_ROWS = 4096
DEFAULT_QUEUE_DEPTH = 1000
DAY_NS = 86400 * 1_000_000_000
_NS = 1_000_000_000


def plan_shm(layout, config, capacity: int) -> None:
    """Reserve the limits table (always: a reload may add limits; untouched pages cost nothing)."""
    rl = config.rate_limits
    rows = rl.local_capacity if rl is not None else DEFAULT_ROWS
    layout.alloc(TABLE, rows=rows, cols=COLS, dtype="q")
    queue = rl.queue if rl is not None else None
    depth = queue.max_depth if queue is not None else DEFAULT_QUEUE_DEPTH
    layout.alloc(q.TABLE, rows=depth + 1, cols=q.COLS, dtype="q")


def scope_hash(scope: str) -> int:
    h = int.from_bytes(hashlib.blake2b(scope.encode(), digest_size=8).digest(), "little")
    return (h & 0x7FFF_FFFF_FFFF_FFFF) or 1


class LocalStore:
    """Admission and settlement against the shared ``limits`` table."""

    def __init__(self, table, locks, clock=time.time_ns, queue=None) -> None:
        self.queue: q.LocalQueue | None = queue  # rate_limits.queue's places
        self.view = table.view
        self.rows = table.rows
        self.locks = locks
        self.clock = clock
        self._hashes: dict[str, int] = {}
        self._where: dict[int, int] = {}  # hash -> row last seen holding it
        self._evicted = 0

    # -- rows ------------------------------------------------------------------------

    def _hash(self, scope: str) -> int:
        h = self._hashes.get(scope)
        if h is None:
            if len(self._hashes) >= 65536:
                self._hashes.clear()
                self._where.clear()
            h = self._hashes[scope] = scope_hash(scope)
        return h

    def _find(self, h: int, now: int) -> int:
        """The row holding ``h``, claiming one if needed (locks only to claim)."""
        view = self.view
        row = self._where.get(h)
        if row is not None and view[row * COLS + HASH] == h:
            return row
        start = h % self.rows
        for i in range(PROBES):
            r = (start + i) % self.rows
            if view[r * COLS + HASH] == h:
                self._where[h] = r
                return r
        # Not present: claim a free or dead row, else the stalest one.
        oldest, oldest_at = -1, None
        for i in range(PROBES):
            r = (start + i) % self.rows
            base = r * COLS
            self.locks.acquire(base + LOCK)
            try:
                cur = view[base + HASH]
                if cur == h:
                    self._where[h] = r
                    return r
                touched = view[base + TOUCHED]
                if cur == 0 or now - touched > DAY_NS:
                    self._claim(base, h, now)
                    self._where[h] = r
                    return r
            finally:
                self.locks.release(base + LOCK)
            if oldest_at is None or touched < oldest_at:
                oldest, oldest_at = r, touched
        base = oldest * COLS
        self.locks.acquire(base + LOCK)
        try:
            self._claim(base, h, now)
        finally:
            self.locks.release(base + LOCK)
        self._evicted += 1
        if self._evicted in (1, 10, 100) or self._evicted % 1000 == 0:
            log.warning(
                "rate limits: the local table is full around a scope (%d evictions so far); "
                "raise rate_limits.local_capacity (now %d rows)", self._evicted, self.rows,
            )
        self._where[h] = oldest
        return oldest

    def _claim(self, base: int, h: int, now: int) -> None:
        view = self.view
        for c in range(WAITING, COLS):
            view[base + c] = 0
        view[base + TOUCHED] = now
        view[base + HASH] = h

    # -- operations ------------------------------------------------------------------

    def _row(self, scope: str, now: int) -> int:
        """Lock the row of one scope; -1 if it was taken over between find and lock."""
        view = self.view
        h = self._hashes.get(scope) or self._hash(scope)
        r = self._where.get(h)
        if r is None or view[r * COLS + HASH] != h:
            r = self._find(h, now)
        self.locks.acquire(r * COLS)
        if view[r * COLS + HASH] == h:
            return r
        self.locks.release(r * COLS)
        self._where.clear()
        return -1

    def _rows(self, checks: list[Check], now: int) -> dict[str, int]:
        """Lock the rows of the checks' scopes (ascending order); scope -> row."""
        view = self.view
        scope = checks[0].scope
        for c in checks:
            if c.scope != scope:
                break
        else:  # one scope (the common case): one row, one lock
            r = self._row(scope, now)
            if r >= 0:
                return {scope: r}
        while True:
            rows: dict[str, int] = {}
            hashes: dict[str, int] = {}
            for c in checks:
                s = c.scope
                if s not in rows:
                    h = hashes[s] = self._hash(s)
                    rows[s] = self._find(h, now)
            order = sorted(rows.values())
            acquire = self.locks.acquire
            for r in order:
                acquire(r * COLS)
            for s, r in rows.items():
                if view[r * COLS + HASH] != hashes[s]:
                    break
            else:
                return rows
            # A row was taken over between find and lock (eviction race): again.
            for r in reversed(order):
                self.locks.release(r * COLS)
            self._where.clear()

    def _unlock(self, rows: dict[str, int]) -> None:
        release = self.locks.release
        if len(rows) == 1:
            for r in rows.values():
                release(r * COLS)
            return
        for r in sorted(rows.values(), reverse=True):
            release(r * COLS)

    def admit(self, checks: list[Check], amounts: tuple[int, int, int],
              ticket: q.Ticket | None = None) -> Result:
        """Decide every check at once; write (reserve) only if all pass.

        ``amounts`` is indexed by kind: (requests, tokens, nano-USD).  With a ``ticket``
        (``rate_limits.queue``) the queues take part in the same atomic step: a newcomer
        is refused (``queued``) while anyone of its priority or higher waits on one of its
        scopes, a waiter only while it is not the head of its queue; a refused ticket
        takes (or moves to) a place in the refusing scope's queue, an admitted one leaves
        its place.
        """
        if ticket is None and len(checks) == 1 and checks[0].kind == REQUESTS:
            return self._admit_request(checks[0], amounts[0])
        now = self.clock()
        rows = self._rows(checks, now)
        view = self.view
        n = len(checks)
        remaining = [0] * n
        reset = [0.0] * n
        windows = [0] * n
        news = [0] * n
        failed = -1
        retry = 0
        try:
            for i, c in enumerate(checks):
                idx = rows[c.scope] * COLS + STATE + 2 * c.unit
                if c.kind == REQUESTS:
                    ok, news[i], left, until, wait = gcra.admit(
                        view[idx], now, c.period_ns, c.limit, amounts[0]
                    )
                else:
                    ok, windows[i], news[i], left, until, wait = budget.reserve(
                        view[idx], view[idx + 1], now, c.period_ns, c.limit, amounts[c.kind]
                    )
                remaining[i] = left
                reset[i] = until / _NS
                if not ok and (failed < 0 or wait > retry):
                    retry = wait
                    failed = i
            queued = full = False
            if ticket is not None and failed < 0:
                failed = self._behind(checks, rows, ticket)
                queued = failed >= 0
            if failed < 0:
                for i, c in enumerate(checks):
                    idx = rows[c.scope] * COLS + STATE + 2 * c.unit
                    if c.kind == REQUESTS:
                        view[idx] = news[i]
                    else:
                        view[idx] = windows[i]
                        view[idx + 1] = news[i]
                for r in rows.values():
                    view[r * COLS + TOUCHED] = now
                if ticket is not None and ticket.slot >= 0:
                    self._unplace(rows, ticket)
            elif ticket is not None:
                full = not self._place(rows, checks[failed].scope, ticket)
        finally:
            self._unlock(rows)
        res = Result(failed < 0, failed, retry / _NS, remaining, reset, windows)
        if ticket is not None:
            res.queued = queued
            res.full = full
        return res

    def _admit_request(self, c: Check, n: int) -> Result:
        """:meth:`admit` for one request limit and no queue (a lone global or per-key rpm):
        the same decision without the lists and loops of the general case."""
        now = self.clock()
        r = self._row(c.scope, now)
        if r < 0:  # taken over in between: the general path retries
            rows = self._rows([c], now)
            r = rows[c.scope]
        view = self.view
        base = r * COLS
        idx = base + STATE + 2 * c.unit
        try:
            ok, new, left, until, wait = gcra.admit(view[idx], now, c.period_ns, c.limit, n)
            if ok:
                view[idx] = new
                view[base + TOUCHED] = now
        finally:
            self.locks.release(base)
        return Result(ok, -1 if ok else 0, wait / _NS, [left], [until / _NS], [0])

    # -- rate_limits.queue (rows locked by the caller) -------------------------------------

    def _behind(self, checks: list[Check], rows: dict[str, int], t: q.Ticket) -> int:
        """The check whose queue ``t`` must wait in although capacity is free, or -1."""
        view = self.view
        if t.slot >= 0:
            head = self.queue.is_head(t.slot, t.seq)
            if head or head is None:
                return -1  # the head (or a lost place: then it is served as it comes)
            for i, c in enumerate(checks):
                if c.scope == t.scope:
                    return i
            return -1
        for i, c in enumerate(checks):
            if q.waiting(view[rows[c.scope] * COLS + WAITING], t.prio):
                return i
        return -1

    def _place(self, rows: dict[str, int], scope: str, t: q.Ticket) -> bool:
        if t.slot >= 0 and t.scope == scope:
            return True  # waits on where it is
        if t.slot >= 0:
            self._unplace(rows, t)
        h = self._hashes.get(scope) or self._hash(scope)
        slot, seq = self.queue.join(h, t.prio, t.user_h, t.deadline_ns)
        if slot < 0:
            return False
        idx = rows[scope] * COLS + WAITING
        self.view[idx] = q.counted(self.view[idx], t.prio, 1)
        t.slot, t.seq, t.scope = slot, seq, scope
        return True

    def _unplace(self, rows: dict[str, int], t: q.Ticket) -> None:
        gone = self.queue.leave(t.slot, t.seq)
        t.slot = -1
        if gone is not None and t.scope in rows:
            idx = rows[t.scope] * COLS + WAITING
            self.view[idx] = q.counted(self.view[idx], t.prio, -1)

    def _uncount(self, scope_h: int, prio: int) -> None:
        """One waiter less in a scope known by its hash (rows locked here)."""
        view = self.view
        start = scope_h % self.rows
        for i in range(PROBES):
            r = (start + i) % self.rows
            if view[r * COLS + HASH] == scope_h:
                break
        else:
            return  # the scope's row is gone, and its counts with it
        base = r * COLS
        self.locks.acquire(base + LOCK)
        try:
            if self.view[base + HASH] == scope_h:
                self.view[base + WAITING] = q.counted(self.view[base + WAITING], prio, -1)
        finally:
            self.locks.release(base + LOCK)

    def queue_position(self, t: q.Ticket) -> int:
        """Places ahead of ``t`` (-1: its place is gone); drops dead owners' places."""
        if t.slot < 0:
            return -1
        pos, dropped = self.queue.position(t.slot, t.seq)
        for scope_h, prio in dropped:
            self._uncount(scope_h, prio)
        if pos < 0:
            t.slot = -1
        return pos

    def queue_leave(self, t: q.Ticket) -> None:
        if t.slot < 0:
            return
        gone = self.queue.leave(t.slot, t.seq)
        t.slot = -1
        if gone is not None:
            self._uncount(*gone)

    def settle(self, checks: list[Check], windows: list[int], estimates: tuple[int, int, int],
               actuals: tuple[int, int, int]) -> None:
        """Replace each budget check's reserved estimate by the actual usage."""
        todo = [(c, w) for c, w in zip(checks, windows, strict=True) if c.kind != REQUESTS]
        if not todo:
            return
        now = self.clock()
        rows = self._rows([c for c, _ in todo], now)
        view = self.view
        try:
            for c, w in todo:
                idx = rows[c.scope] * COLS + STATE + 2 * c.unit
                view[idx], view[idx + 1] = budget.settle(
                    view[idx], view[idx + 1], now, c.period_ns, w, estimates[c.kind],
                    actuals[c.kind],
                )
            for r in rows.values():
                view[r * COLS + TOUCHED] = now
        finally:
            self._unlock(rows)


def attach(worker, mutex=None) -> LocalStore:
    """The store over a worker's shared table (``worker.shm``), with the selected RowLocks."""
    from helix._fast import RowLocks

    table = worker.table(TABLE)
    mutex = worker.shm._lock if mutex is None else mutex
    queue = None
    if q.TABLE in worker.shm:
        qt = worker.table(q.TABLE)
        queue = q.LocalQueue(qt, RowLocks(qt.view, os.getpid(), mutex))
    return LocalStore(table, RowLocks(table.view, os.getpid(), mutex), queue=queue)
