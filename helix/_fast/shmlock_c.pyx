# cython: language_level=3, boundscheck=False, wraparound=False
"""Owner-pid locks in 8-byte shared-memory cells: the compiled twin of shmlock_py.py.

Hand-written rather than compiled from the .py source: the point of this
module is GCC's ``__atomic`` builtins, which pure-Python mode cannot express.
The protocol is the same as the Python twin's (see there); the parity tests in
tests/limit/test_shmlock.py run on both.
"""

from libc.errno cimport ESRCH, errno
from posix.signal cimport kill


cdef extern from "sched.h":
    int sched_yield() nogil


cdef extern from *:
    """
    static inline int helix_cas64(long long *p, long long expected, long long desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0,
                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
    }
    static inline long long helix_load64(long long *p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    """
    int helix_cas64(long long *p, long long expected, long long desired) nogil
    long long helix_load64(long long *p) nogil


cdef enum:
    SPINS_BEFORE_CHECK = 4096


cdef class RowLocks:
    cdef long long[::1] _view
    cdef readonly long long pid

    def __init__(self, view, long long pid, mutex=None):
        self._view = view
        self.pid = pid

    cpdef bint acquire(self, Py_ssize_t index) except -1:
        """Take lock ``index``; True if it was taken over from a dead owner."""
        if index < 0 or index >= self._view.shape[0]:
            raise IndexError(index)
        cdef long long *p = &self._view[index]
        cdef long long owner
        cdef unsigned long spins = 0
        while not helix_cas64(p, 0, self.pid):
            spins += 1
            if spins % 64 == 0:
                sched_yield()
            if spins % SPINS_BEFORE_CHECK == 0:
                owner = helix_load64(p)
                if owner and kill(<int>owner, 0) == -1 and errno == ESRCH:
                    if helix_cas64(p, owner, self.pid):
                        return True
        return False

    cpdef void release(self, Py_ssize_t index) except *:
        if index < 0 or index >= self._view.shape[0]:
            raise IndexError(index)
        helix_cas64(&self._view[index], self.pid, 0)

    def owner(self, Py_ssize_t index):
        if index < 0 or index >= self._view.shape[0]:
            raise IndexError(index)
        return helix_load64(&self._view[index])
