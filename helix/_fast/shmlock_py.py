"""Owner-pid locks in 8-byte cells of a shared-memory table (pure-Python twin).

A lock is one signed 64-bit cell: 0 when free, else the pid of the process
holding it.  Storing the owner (rather than a flag) lets a waiter that has
spun for a while check whether the owner still exists and take the lock over
from a process that died inside its critical section (SIGKILL, OOM) -- a
POSIX semaphore would stay locked forever.

``shmlock_c.pyx`` is the compiled twin: the same protocol with GCC's
``__atomic`` compare-and-swap.  This twin has no atomic CAS, so it makes its
compare-and-swap atomic with the process-shared ``mutex`` of the mapping
(``SharedMemory._lock``); the two must not be mixed on one table (the choice
is made once, in ``helix/_fast/__init__.py``).  ``tests/limit`` runs the same
contention and dead-owner tests on both.
"""

from __future__ import annotations

import os

__all__ = ["RowLocks"]

SPINS_BEFORE_CHECK = 4096


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RowLocks:
    """Locks for the cells ``view[i]`` (a ``'q'`` memoryview) taken as process ``pid``."""

    __slots__ = ("_mutex", "_view", "pid")

    def __init__(self, view, pid: int, mutex) -> None:
        self._view = view
        self.pid = pid
        self._mutex = mutex

    def _cas(self, index: int, expected: int, desired: int) -> bool:
        with self._mutex:
            if self._view[index] == expected:
                self._view[index] = desired
                return True
            return False

    def acquire(self, index: int) -> bool:
        """Take lock ``index``; True if it was taken over from a dead owner."""
        spins = 0
        while not self._cas(index, 0, self.pid):
            spins += 1
            if spins % 64 == 0:
                os.sched_yield()
            if spins % SPINS_BEFORE_CHECK == 0:
                owner = self._view[index]
                if owner and not _alive(owner) and self._cas(index, owner, self.pid):
                    return True
        return False

    def release(self, index: int) -> None:
        self._cas(index, self.pid, 0)

    def owner(self, index: int) -> int:
        return self._view[index]
