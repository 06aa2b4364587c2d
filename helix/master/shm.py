"""Shared-memory tables shared by the master and its forked workers.

One anonymous ``MAP_SHARED`` mapping is created by the master *before* the
first fork, so every worker inherits the very same pages: no file, no name,
nothing to clean up, and the mapping dies with the last process holding it.
Its size and layout are therefore fixed for the master's lifetime; every
feature that needs cross-worker state reserves its region up front.

Usage (master, before forking)::

    layout = ShmLayout()
    layout.alloc("workers", rows=capacity, cols=len(WORKER_FIELDS), dtype="Q")
    layout.alloc("latency_ewma", rows=capacity * deployments, cols=2, dtype="d")
    shm = SharedMemory(layout)
    shm.table("latency_ewma").view      # typed, flat memoryview ('d' -> float)

Layout
------
::

    offset 0                                   region "workers"  (first alloc)
    +------------------------------------------+
    | row 0: cols * itemsize bytes             |  row-major, rows * cols items
    | row 1 ...                                |
    +------------------------------------------+  padded up to a 64-byte boundary
    | region 2 (next alloc) ...                |
    +------------------------------------------+  total size rounded up to PAGE

* Every region starts on a 64-byte (cache line) boundary, so regions never
  share a line (no false sharing between e.g. heartbeats and counters) and
  every 8-byte item is naturally aligned.
* Items are native-endian C types given by a ``struct``/``memoryview`` format
  char: ``Q`` uint64, ``q`` int64, ``d`` float64, ``I``/``i``/``f`` 4 bytes.
* An aligned 8-byte store through a memoryview is a single machine store on
  x86-64 and aarch64, so a reader never sees a torn value.  That is enough
  for *single-writer* cells (each worker writes only its own rows).  Cells
  written by several processes need :meth:`SharedMemory.fetch_add`.

Worker table (``WORKER_TABLE``): one 64-byte row (8 x uint64, one cache line)
per worker slot; ``capacity`` is about ``2 * workers + 4`` so a rolling reload
can run two generations side by side::

    col  field           written by  meaning
    0    pid             worker      os.getpid() (0 while the slot is free)
    1    generation      master      config generation the worker runs
    2    state           both        FREE 0 / BOOTING 1 / READY 2 / DRAINING 3
    3    heartbeat       worker      time.monotonic_ns() of the last beat
    4    started_at      master      time.time_ns() when the worker was forked
    5    requests_total  worker      requests served so far
    6    in_flight       worker      requests being served now
    7    connections     worker      open client connections

The master writes a row only while no worker owns it (before the fork and
after reaping); in between only the owning worker writes it.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass

__all__ = [
    "ALIGN",
    "BOOTING",
    "DRAINING",
    "FREE",
    "READY",
    "STATE_NAMES",
    "WORKER_FIELDS",
    "WORKER_TABLE",
    "SharedMemory",
    "ShmLayout",
    "Table",
    "WorkerSlot",
    "WorkerSlots",
]

ALIGN = 64
_DTYPES = frozenset("bBhHiIlLqQfd")

# Worker slot states.
FREE = 0
BOOTING = 1
READY = 2
DRAINING = 3
# The per-slot restart counters the master keeps (read by /metrics).
RESTARTS_TABLE = "worker_restarts"

STATE_NAMES = {FREE: "free", BOOTING: "booting", READY: "ready", DRAINING: "draining"}

WORKER_TABLE = "workers"
WORKER_FIELDS = (
    "pid",
    "generation",
    "state",
    "heartbeat",
    "started_at",
    "requests_total",
    "in_flight",
    "connections",
)
PID, GENERATION, STATE, HEARTBEAT, STARTED_AT, REQUESTS_TOTAL, IN_FLIGHT, CONNECTIONS = range(8)


def _align(n: int, to: int) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    rows: int
    cols: int
    dtype: str
    offset: int

    @property
    def nbytes(self) -> int:
        return self.rows * self.cols * struct.calcsize(self.dtype)


class ShmLayout:
    """The plan of a mapping: named fixed-size tables, decided before fork."""

    def __init__(self) -> None:
        self._specs: dict[str, _Spec] = {}
        self._end = 0

    def alloc(self, name: str, rows: int, cols: int = 1, dtype: str = "Q") -> None:
        """Reserve a ``rows x cols`` table of ``dtype`` items named ``name``."""
        if name in self._specs:
            raise ValueError(f"shm table {name!r} already allocated")
        if dtype not in _DTYPES:
            raise ValueError(f"unsupported shm dtype {dtype!r}")
        if rows < 1 or cols < 1:
            raise ValueError(f"shm table {name!r} needs rows >= 1 and cols >= 1")
        spec = _Spec(name, rows, cols, dtype, _align(self._end, ALIGN))
        self._specs[name] = spec
        self._end = spec.offset + spec.nbytes

    @property
    def size(self) -> int:
        """Bytes the mapping needs (whole pages)."""
        return max(_align(self._end, mmap.PAGESIZE), mmap.PAGESIZE)

    def __iter__(self):
        return iter(self._specs.values())

    def __contains__(self, name: str) -> bool:
        return name in self._specs


class Table:
    """A typed view of one region: ``view`` is a flat memoryview of rows*cols items."""

    __slots__ = ("cols", "dtype", "name", "offset", "rows", "view")

    def __init__(self, spec: _Spec, buf: memoryview) -> None:
        self.name = spec.name
        self.rows = spec.rows
        self.cols = spec.cols
        self.dtype = spec.dtype
        self.offset = spec.offset
        self.view = buf[spec.offset : spec.offset + spec.nbytes].cast(spec.dtype)

    def index(self, row: int, col: int = 0) -> int:
        """Flat index of ``(row, col)`` into :attr:`view`."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise IndexError(f"{self.name}[{row}, {col}] out of range")
        return row * self.cols + col

    def row(self, row: int) -> memoryview:
        """A live memoryview of one row (``cols`` items); writes go to shared memory."""
        start = self.index(row)
        return self.view[start : start + self.cols]

    def get(self, row: int, col: int = 0):
        return self.view[self.index(row, col)]

    def set(self, row: int, col: int, value) -> None:
        self.view[self.index(row, col)] = value

    def clear_row(self, row: int) -> None:
        r = self.row(row)
        for i in range(self.cols):
            r[i] = 0

    def release(self) -> None:
        self.view.release()


def process_lock():
    """A lock shared with every process forked after it is made.

    The POSIX semaphore ``multiprocessing.Lock`` wraps, made directly: importing
    ``multiprocessing.synchronize`` (and with it ``tempfile``, ``shutil`` and the
    context machinery) cost about 5 ms of every start for one C object.  Like
    ``multiprocessing`` under the fork start method, the semaphore is unlinked as soon
    as it exists: it lives on only in this process and the ones it forks.
    ``acquire(block=True, timeout=None)``, ``release()`` and ``with`` as usual.
    """
    try:
        from _multiprocessing import SemLock
    except ImportError:  # a Python built without it: the public way
        import multiprocessing

        return multiprocessing.Lock()
    for _ in range(100):
        name = f"/helix-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            # kind 1 = SEMAPHORE, value 1, maxvalue 1: a non-recursive lock; unlink now.
            return SemLock(1, 1, 1, name, True)
        except FileExistsError:
            continue
    raise FileExistsError("no free semaphore name")


class SharedMemory:
    """The mapping itself: built from a :class:`ShmLayout` in the master before fork."""

    def __init__(self, layout: ShmLayout) -> None:
        self.size = layout.size
        self._mm = mmap.mmap(-1, self.size, flags=mmap.MAP_SHARED)
        self._buf = memoryview(self._mm)
        self._tables = {spec.name: Table(spec, self._buf) for spec in layout}
        # Process-shared (POSIX semaphore); inherited by the workers through fork.
        self._lock = process_lock()

    def table(self, name: str) -> Table:
        return self._tables[name]

    __getitem__ = table

    def __contains__(self, name: str) -> bool:
        return name in self._tables

    def fetch_add(self, region: str | Table, index: int, delta: int) -> int:
        """Atomically add ``delta`` to the 8-byte integer at flat ``index``; return the old value.

        Exact across processes.  This is the portable twin of a GCC
        ``__atomic_fetch_add``: it serialises through one process-shared lock,
        so it costs a semaphore round trip (~1 us).  ``Q`` cells wrap modulo
        2**64, ``q`` cells modulo 2**64 into the signed range.  Limitation of
        the lock version: a process SIGKILLed inside the critical section
        leaves the lock held.
        """
        table = region if isinstance(region, Table) else self._tables[region]
        view = table.view
        if table.dtype == "Q":
            with self._lock:
                old = view[index]
                view[index] = (old + delta) & 0xFFFFFFFFFFFFFFFF
            return old
        if table.dtype == "q":
            with self._lock:
                old = view[index]
                new = (old + delta) & 0xFFFFFFFFFFFFFFFF
                view[index] = new - (1 << 64) if new >= 1 << 63 else new
            return old
        raise TypeError(f"fetch_add needs a 'Q' or 'q' table; {table.name!r} is {table.dtype!r}")

    @property
    def workers(self) -> WorkerSlots:
        return WorkerSlots(self._tables[WORKER_TABLE])

    def close(self) -> None:
        """Release the views and unmap (master at exit; workers never need to)."""
        for table in self._tables.values():
            table.release()
        self._buf.release()
        self._mm.close()


class WorkerSlot:
    """One worker's own row: written only by that worker (single writer, lock-free)."""

    __slots__ = ("_row", "index")

    def __init__(self, table: Table, index: int) -> None:
        self.index = index
        self._row = table.row(index)

    def set_pid(self, pid: int) -> None:
        self._row[PID] = pid

    def set_state(self, state: int) -> None:
        self._row[STATE] = state

    def beat(
        self,
        requests_total: int | None = None,
        in_flight: int | None = None,
        connections: int | None = None,
    ) -> None:
        """Publish counters (when given), then the heartbeat timestamp."""
        row = self._row
        if requests_total is not None:
            row[REQUESTS_TOTAL] = requests_total
        if in_flight is not None:
            row[IN_FLIGHT] = in_flight
        if connections is not None:
            row[CONNECTIONS] = connections
        row[HEARTBEAT] = time.monotonic_ns()

    @property
    def state(self) -> int:
        return self._row[STATE]

    @property
    def heartbeat(self) -> int:
        return self._row[HEARTBEAT]


class WorkerSlots:
    """Reader/master view of the worker table."""

    __slots__ = ("table",)

    def __init__(self, table: Table) -> None:
        self.table = table

    @property
    def capacity(self) -> int:
        return self.table.rows

    def slot(self, index: int) -> WorkerSlot:
        return WorkerSlot(self.table, index)

    def prepare(self, index: int, generation: int) -> None:
        """Master, before fork: claim a free row for a new worker."""
        row = self.table.row(index)
        for i in range(len(WORKER_FIELDS)):
            row[i] = 0
        row[GENERATION] = generation
        row[STARTED_AT] = time.time_ns()
        # Counts as a beat, so the heartbeat timeout also bounds a hung boot.
        row[HEARTBEAT] = time.monotonic_ns()
        row[STATE] = BOOTING

    def release(self, index: int) -> None:
        """Master, after reaping: free the row."""
        self.table.clear_row(index)

    def state(self, index: int) -> int:
        return self.table.get(index, STATE)

    def heartbeat(self, index: int) -> int:
        return self.table.get(index, HEARTBEAT)

    def read(self, index: int) -> dict[str, int]:
        row = self.table.row(index)
        return dict(zip(WORKER_FIELDS, row.tolist(), strict=True))

    def snapshot(self) -> list[dict[str, int]]:
        """All occupied rows, with their slot index (for /status and the master)."""
        out = []
        for i in range(self.table.rows):
            info = self.read(i)
            if info["state"] != FREE:
                info["slot"] = i
                out.append(info)
        return out
