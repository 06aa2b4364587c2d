# cython: language_level=3, boundscheck=False, wraparound=False
"""Byte scans for the JSON guards: the compiled twin of scan_py.py.

Hand-written rather than compiled from the .py source: the twin's two ``bytes.count``
calls are two passes through CPython's generic search; this walks the buffer with glibc's
vectorised ``memchr``, one call per bracket (0.08 against 0.52 us for a 600-byte answer with a
handful of brackets; a body made only of brackets is slower, but one with more brackets than the
depth limit goes on to the exact scan, which costs far more).  Anything but an exact ``bytes``
goes to the twin.  ``depth_exceeds`` is the guard in one C call: the count, and the twin's
exact scan only past the limit.  Parity: tests/fast/test_scan_parity.py.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memchr

from helix._fast.scan_py import MAX_DEPTH
from helix._fast.scan_py import brackets as _brackets_py
from helix._fast.scan_py import depth_exceeds as _depth_exceeds_py
from helix._fast.scan_py import exact_depth_exceeds as _exact

__all__ = ["brackets", "depth_exceeds"]


cdef inline Py_ssize_t _count(const char *p, Py_ssize_t n, int ch):
    # glibc's memchr is vectorised: one call per occurrence, each skipping ahead fast.
    cdef const char *end = p + n
    cdef const char *q
    cdef Py_ssize_t k = 0
    while p < end:
        q = <const char *>memchr(p, ch, end - p)
        if q == NULL:
            break
        k += 1
        p = q + 1
    return k


def brackets(body):
    if type(body) is not bytes:
        return _brackets_py(body)
    cdef const char *p = PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    return _count(p, n, 91) + _count(p, n, 123)  # '[' and '{'


def depth_exceeds(body, limit=MAX_DEPTH):
    if type(body) is not bytes:
        return _depth_exceeds_py(body, limit)
    cdef const char *p = PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    if _count(p, n, 91) + _count(p, n, 123) <= limit:
        return False
    return _exact(body, limit)
