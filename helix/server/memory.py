"""Give large freed buffers back to the kernel at once (glibc malloc tuning).

Request and response bodies are the only large allocations a worker makes.
glibc serves a large allocation with its own ``mmap`` (returned to the kernel
on ``free``) only above a *dynamic* threshold, which grows to the size of the
largest block freed so far (up to 32 MiB): after one 30 MB body, the next ones
come from the heap, and up to twice that stays in the process after they are
freed (the trim threshold follows).  A worker that once saw big bodies would
keep ~60 MB for good -- half a 128 Mi pod.  Fixing the threshold (which also
turns the dynamic adjustment off) keeps every buffer above it in its own
mapping, so memory returns to the baseline when a body is dropped; the cost
is an ``mmap``/``munmap`` pair per large buffer, noise next to moving 1 MiB.
"""

from __future__ import annotations

import ctypes
import gc
import logging

log = logging.getLogger("helix.server")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 8 * 1024 * 1024

_done = False
_libc = None


def _lib():
    global _libc
    if _libc is None:
        # The C library is already mapped into the interpreter: dlopen(NULL) finds its
        # symbols without ``ctypes.util.find_library``, which runs ``ldconfig -p`` in a
        # subprocess (a fork of the worker on its way to its first request).
        try:
            _libc = ctypes.CDLL(None)
            if not hasattr(_libc, "mallopt"):
                _libc = ctypes.CDLL("libc.so.6")
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


def trim() -> None:
    """Hand free heap pages back to the kernel (after a flood of connections closed).

    Connection objects are small, so they live in the heap between long-lived
    allocations, and glibc only trims the top of the heap on its own.
    """
    libc = _lib()
    fn = getattr(libc, "malloc_trim", None) if libc is not None else None
    if fn is not None:
        fn.argtypes = [ctypes.c_size_t]
        fn(0)


def tune_malloc() -> bool:
    """Apply the thresholds once per process; False where glibc is not the allocator."""
    global _done
    if _done:
        return True
    _done = True
    libc = _lib()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    if not ok:
        log.debug("mallopt refused the thresholds; large buffers may stay in the heap")
    return ok


# --- cyclic garbage collector pacing ----------------------------------------------------
#
# CPython runs a young-generation collection when the count of container objects allocated
# minus those freed passes ``threshold0`` (700).  The count never goes below zero and is
# reset by every collection, so under load it follows the *bursts* of the event loop: one
# loop iteration that reads 500 requests allocates their objects before any is freed.
# With hundreds of requests in flight it crossed 700 every few dozen requests, and each
# collection scanned (and promoted) every live request's objects, which then made the
# older generations' collections frequent and large too: at 512 connections 6.5 us of
# every request (one worker, ~2,400 young collections in 7 s), and with 5,000 open
# streams a quarter of the worker's CPU, with full collections of ~80 ms each.  A larger
# fixed threshold would let idle cyclic garbage pile up; scaling it with the connections
# keeps the collector's work per request flat at any concurrency, and the garbage it may
# leave between collections at about the size of the live request state itself.  Nothing
# in Helix's request path is cyclic garbage (a collection under load finds ~0 objects);
# this only decides how often the collector looks.
GC_PER_CONNECTION = 64


class GcPacer:
    """Keeps the young-generation threshold at ``max(base, GC_PER_CONNECTION * connections)``.

    ``update(n)`` is called with the open connection count when connections open and
    close; it resets the threshold only when ``n`` left ``[lo, hi]`` (half to twice the
    count it was last set for), so the common case is two comparisons.  At zero
    connections the process's own threshold is back.
    """

    __slots__ = ("_base", "_t1", "_t2", "hi", "lo")

    def __init__(self) -> None:
        self._base, self._t1, self._t2 = gc.get_threshold()
        self.lo = 0
        self.hi = self._base // GC_PER_CONNECTION

    def update(self, n: int) -> None:
        if self.lo <= n <= self.hi:
            return
        base = self._base
        gc.set_threshold(max(base, GC_PER_CONNECTION * n), self._t1, self._t2)
        self.lo = n // 2
        self.hi = max(n * 2, base // GC_PER_CONNECTION)
