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
