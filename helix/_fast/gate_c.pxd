# C types for the compiled twin of gate_py.py (Cython pure-Python mode): the logic lives
# only in the .py; this file only adds types.
cimport cython

cdef Py_ssize_t COLS, LOCK, HASH, TOUCHED, STATE
cdef double _NS

cdef class LoneLimit:
    cdef public object store
    cdef public object check
    cdef public long long[:] view
    cdef public object locks
    cdef public object clock
    cdef public str scope
    cdef public long long hash
    cdef public long long period
    cdef public long long interval
    cdef public Py_ssize_t offset
    cdef public tuple limit_header
    cdef public object refused
    cdef public object reset_bytes
    cdef public tuple reset_ms
    cdef public Py_ssize_t base

    @cython.locals(base=Py_ssize_t, r=Py_ssize_t)
    cdef Py_ssize_t _lock_row(self, long long now) except -1

    @cython.locals(now=cython.longlong, base=Py_ssize_t, idx=Py_ssize_t, period=cython.longlong,
                   t=cython.longlong, tat=cython.longlong, new=cython.longlong,
                   ahead=cython.longlong, ok=cython.bint, left=cython.longlong,
                   until=cython.longlong, backlog=cython.longlong, reset=cython.double,
                   headers=list)
    cpdef admit(self, ctx)
