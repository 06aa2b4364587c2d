# cython: language_level=3, boundscheck=False, wraparound=False
"""One finished request added to its metrics row: the compiled twin of hist_py.py.

Hand-written: the twin's eleven indexed ``+=`` on a shared-memory ``memoryview`` and four
``bisect_left`` calls are each a boxed float round trip (≈ 1.3 us a request); here they are
stores through the view's pointer and a linear scan of at most 16 bounds.  The row's range
is checked once per call.  Parity: tests/fast/test_hist_parity.py.
"""

from libc.stdlib cimport malloc, free

from helix._fast.slots cimport Fields, field, fields_init

__all__ = ["RequestRecorder", "RowWriter"]


cdef struct Bounds:
    Py_ssize_t n
    double *v


cdef int _fill(Bounds *out, bounds) except -1:
    cdef Py_ssize_t i, n = len(bounds)
    out.v = <double *>malloc(max(n, 1) * sizeof(double))
    if out.v == NULL:
        raise MemoryError()
    out.n = n
    for i in range(n):
        out.v[i] = bounds[i]
    return 0


cdef inline Py_ssize_t _bucket(const Bounds *bd, double x) noexcept nogil:
    # bisect_left: the first bound >= x (NaN compares false everywhere: bucket 0, as there).
    cdef Py_ssize_t i = 0
    while i < bd.n and bd.v[i] < x:
        i += 1
    return i


cdef class RowWriter:
    cdef double[::1] view
    cdef Py_ssize_t cols, c_cost, c_dur, c_up, c_ttft, c_in, c_out
    cdef Bounds dur, ttft, tok

    def __cinit__(self):
        self.dur.v = self.ttft.v = self.tok.v = NULL

    def __init__(self, view, Py_ssize_t cols, dur_bounds, ttft_bounds, tok_bounds,
                 Py_ssize_t c_cost, Py_ssize_t c_dur, Py_ssize_t c_up, Py_ssize_t c_ttft,
                 Py_ssize_t c_in, Py_ssize_t c_out):
        self.view = view
        self.cols = cols
        _fill(&self.dur, dur_bounds)
        _fill(&self.ttft, ttft_bounds)
        _fill(&self.tok, tok_bounds)
        self.c_cost, self.c_dur, self.c_up = c_cost, c_dur, c_up
        self.c_ttft, self.c_in, self.c_out = c_ttft, c_in, c_out

    def __dealloc__(self):
        free(self.dur.v)
        free(self.ttft.v)
        free(self.tok.v)

    cdef inline void _hist(self, Py_ssize_t c, const Bounds *bd, double x) noexcept:
        self.view[c] += x
        self.view[c + 1 + _bucket(bd, x)] += 1.0

    def observe(self, Py_ssize_t b, double dur, up, ttft, tin, tout, cost):
        """Add a request to the row starting at flat index ``b`` (column 0: the count)."""
        self._observe(b, dur, up, ttft, tin, tout, cost)

    cdef int _observe(self, Py_ssize_t b, double dur, up, ttft, tin, tout, cost) except -1:
        if b < 0 or b + self.cols > self.view.shape[0]:
            raise IndexError("metrics row out of range")
        self.view[b] += 1.0
        self._hist(b + self.c_dur, &self.dur, dur)
        if up is not None:
            self._hist(b + self.c_up, &self.dur, up)
        if ttft is not None:
            self._hist(b + self.c_ttft, &self.ttft, ttft)
        if tin is not None:
            self._hist(b + self.c_in, &self.tok, tin)
        if tout is not None:
            self._hist(b + self.c_out, &self.tok, tout)
        if cost is not None:
            self.view[b + self.c_cost] += <double>cost
        return 0


# What the recorder reads, by offset (helix/_fast/slots.pxd): the request's context, its
# API, its deployment and its usage.
cdef Fields _CTX, _API, _DEP, _USAGE
fields_init(&_CTX, ("deployment", "api", "status", "started", "upstream_started",
                    "first_chunk_at", "usage", "cost", "cache"))
fields_init(&_API, ("name",))
fields_init(&_DEP, ("model_id", "provider"))
fields_init(&_USAGE, ("input", "output", "cache_read", "cache_write"))
cdef enum:
    DEP, API, STATUS, STARTED, UP_STARTED, FIRST_AT, USAGE, COST, CACHE


cdef class RequestRecorder:
    """See hist_py.RequestRecorder: the metrics request recorder, one C call a request
    (the Python closure it was cost ≈ 85 bytecodes).  Parity:
    tests/fast/test_hist_parity.py."""

    cdef RowWriter writer
    cdef dict index
    cdef object new_row, prompt_cache, cache_result, monotonic

    __name__ = "record_metrics"  # what the runner calls this recorder

    def __init__(self, RowWriter writer, dict index, new_row, prompt_cache, cache_result,
                 monotonic):
        self.writer = writer
        self.index = index
        self.new_row = new_row
        self.prompt_cache = prompt_cache
        self.cache_result = cache_result
        self.monotonic = monotonic

    def __call__(self, ctx):
        cdef double now = self.monotonic()
        cdef double started, up, first
        dep = field(&_CTX, ctx, DEP)
        name = field(&_API, field(&_CTX, ctx, API), 0)
        if dep is not None:
            key = (name, field(&_DEP, dep, 0), field(&_DEP, dep, 1), field(&_CTX, ctx, STATUS))
        else:
            key = (name, "", "", field(&_CTX, ctx, STATUS))
        b = self.index.get(key)
        if b is None:
            b = self.new_row(key)
        started = field(&_CTX, ctx, STARTED)
        up = field(&_CTX, ctx, UP_STARTED)
        first = field(&_CTX, ctx, FIRST_AT)
        usage = field(&_CTX, ctx, USAGE)
        tin = tout = None
        if usage is not None:
            tin = field(&_USAGE, usage, 0)
            tout = field(&_USAGE, usage, 1)
        self.writer._observe(b, now - started, now - up if up else None,
                             first - started if first else None, tin, tout,
                             field(&_CTX, ctx, COST))
        cache = field(&_CTX, ctx, CACHE)
        if usage is not None and (field(&_USAGE, usage, 2) or field(&_USAGE, usage, 3)) \
                and dep is not None and cache != "hit":
            self.prompt_cache(dep, usage)
        if cache is not None:  # set by the cache phase only when caching applies
            self.cache_result(cache == "hit")
