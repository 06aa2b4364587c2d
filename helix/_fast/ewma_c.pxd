# C types for the compiled twin of ewma_py.py (Cython pure-Python mode): the
# logic lives only in the .py; this file only adds types.
cimport cython

cdef Py_ssize_t COLS, VALUE, STAMP, INFLIGHT

cpdef Py_ssize_t stride_for(Py_ssize_t ndeps)

cdef class LatencyTable:
    cdef public double[:] view
    cdef public Py_ssize_t rows
    cdef public Py_ssize_t ndeps
    cdef public Py_ssize_t stride
    cdef public double tau
    cdef public double floor

    @cython.locals(best=Py_ssize_t, best_t=double, off=Py_ssize_t, t=double, _i=Py_ssize_t)
    cdef Py_ssize_t _newest(self, Py_ssize_t dep)

    @cython.locals(off=Py_ssize_t, t=double, v=double)
    cpdef double estimate(self, Py_ssize_t dep, double now)

    @cython.locals(total=double, off=Py_ssize_t, _i=Py_ssize_t)
    cpdef double inflight(self, Py_ssize_t dep)

    @cython.locals(best_t=double, v=double, total=double, off=Py_ssize_t, t=double, _i=Py_ssize_t)
    cpdef double cost(self, Py_ssize_t dep, double now)

    cpdef Py_ssize_t choose(self, Py_ssize_t a, Py_ssize_t b, double now)

    @cython.locals(off=Py_ssize_t, t=double, v=double, w=double, mine=Py_ssize_t)
    cpdef double observe(self, Py_ssize_t row, Py_ssize_t dep, double now, double sample)

    @cython.locals(off=Py_ssize_t)
    cpdef add(self, Py_ssize_t row, Py_ssize_t dep, double delta)

    @cython.locals(base=Py_ssize_t, i=Py_ssize_t)
    cpdef clear_row(self, Py_ssize_t row)

cdef Py_ssize_t H_COLS, W_COLS, B_BUCKET, B_REQ, B_ERR, B_PREV_REQ, B_PREV_ERR

cdef class RequestWindow:
    cdef public double[:] window
    cdef public double[:] health
    cdef public Py_ssize_t base
    cdef public double half

    @cython.locals(bucket=double, b=Py_ssize_t, k=cython.longlong)
    cpdef count(self, Py_ssize_t dep, double now, bint error)

    @cython.locals(b=Py_ssize_t)
    cpdef bint settled(self, Py_ssize_t dep, double now, bint success)

cdef Py_ssize_t SUCCESS

cdef class AttemptBook:
    cdef public LatencyTable latency
    cdef public RequestWindow window
    cdef public object change
    cdef public Py_ssize_t row
    cdef public Py_ssize_t ndeps

    @cython.locals(i=Py_ssize_t)
    cpdef begin(self, dep)

    @cython.locals(i=Py_ssize_t)
    cpdef end(self, dep, Py_ssize_t event, double now, sample=*, retry_after=*)
