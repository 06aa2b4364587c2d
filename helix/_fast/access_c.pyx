# cython: language_level=3, boundscheck=False, wraparound=False
"""Per-request text, the compiled twin of access_py.py: the text access line, the
``server-timing`` value and the ``x-helix-cost-usd`` value.

Hand-written rather than compiled from the .py source: the point is one ASCII buffer
filled with ``memcpy`` and ``snprintf`` and one ``str`` made from it, instead of the
f-string's fifteen formatted pieces and their join (≈ 20,000 instructions a line).
glibc's ``%.1f``/``%.8f`` round the exact binary value to nearest, as Python's float
formatting does, so the text is the same.  Anything else -- a non-ASCII name, a field of
another type than the usual (an int subclass, a None count), a line longer than the
buffer -- is formatted by the twin.  Same text: tests/fast/test_access_parity.py.  The two header
values are made the same way, as ``bytes`` (three ``%.3f`` and one ``%.10f`` through
``bytes.__mod__`` were ≈ 15,000 instructions a response); same bytes:
tests/fast/test_timing_parity.py.  :class:`RequestIds` is the ``request_id`` phase as one C
call (it was three Python frames a request): same ids, tests/fast/test_request_ids_parity.py.
"""

from libc.math cimport copysign, floor, isfinite
from libc.stdio cimport snprintf
from libc.string cimport memcpy

import random
import time

from cpython.object cimport PyObject, PyTypeObject

from helix._fast.slots cimport (
    MAX_MEMBERS,
    Fields,
    MemberSlots,
    field,
    fields_init,
    member_slots,
    set_field,
)

from helix._fast.access_py import cost_value as _cost_value_py
from helix._fast.access_py import text_line as _text_line_py
from helix._fast.access_py import timing_value as _timing_value_py

__all__ = ["AccessLine", "ContextFactory", "RequestIds", "cost_value", "text_line", "timing_value"]


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    object PyUnicode_New(Py_ssize_t, unsigned int)
    object PyBytes_FromStringAndSize(const char *, Py_ssize_t)
    object PyUnicode_DecodeASCII(const char *, Py_ssize_t, const char *)
    long long PyLong_AsLongLongAndOverflow(object, int *) except? -1


cdef enum:
    CAP = 2048

# The fields read here, by offset (helix/_fast/slots.pxd): a request's context
# (helix/pipeline/context.py), its request, its deployment, its usage.
cdef Fields _CTX, _REQ, _DEP, _USAGE
fields_init(&_CTX, ("queued", "started", "waited", "upstream_started", "head_at",
                    "first_chunk_at", "exchange", "usage", "cost", "deployment", "status",
                    "cache", "attempts", "request_id", "response_headers"))
fields_init(&_REQ, ("client", "method", "path"))
fields_init(&_DEP, ("model_id", "provider"))
fields_init(&_USAGE, ("input", "output"))
cdef enum:
    QUEUED, STARTED, WAITED, UP_STARTED, HEAD_AT, FIRST_AT, EXCHANGE, USAGE, COST, DEP, \
        STATUS, CACHE, ATTEMPTS, RID, RESPONSE_HEADERS


cdef struct Buf:
    char data[CAP]
    Py_ssize_t n
    bint bad


cdef inline void _raw(Buf *b, const char *s, Py_ssize_t n) noexcept:
    if b.bad or b.n + n > CAP:
        b.bad = True
        return
    memcpy(b.data + b.n, s, n)
    b.n += n


cdef inline void _str(Buf *b, object s) noexcept:
    """An exact ASCII ``str``; anything else sends the line to the twin."""
    if b.bad:
        return
    if type(s) is not str or not PyUnicode_IS_ASCII(s):
        b.bad = True
        return
    _raw(b, <const char *>PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s))


cdef inline void _str_or_dash(Buf *b, object s) noexcept:
    """``s or '-'``."""
    if s:
        _str(b, s)
    else:
        _raw(b, "-", 1)


cdef inline void _digits(Buf *b, unsigned long long x, int width) noexcept:
    """``x`` in decimal, zero-padded to ``width`` digits."""
    cdef char tmp[24]
    cdef int i = 24
    while x or i > 24 - width:
        i -= 1
        tmp[i] = <char>(48 + x % 10)
        x //= 10
    if i == 24:
        i -= 1
        tmp[i] = 48
    _raw(b, tmp + i, 24 - i)


cdef inline void _int(Buf *b, object v):
    cdef int overflow = 0
    cdef long long x
    if b.bad:
        return
    if type(v) is not int:
        b.bad = True
        return
    x = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow:
        b.bad = True
        return
    # _digits, not snprintf("%lld"): four of these a line were ≈ 1,600 instructions.
    if x < 0:
        _raw(b, "-", 1)
        _digits(b, <unsigned long long>(-(x + 1)) + 1, 1)  # LLONG_MIN has no positive
    else:
        _digits(b, <unsigned long long>x, 1)


cdef unsigned long long[11] _POW10
_POW10[:] = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000,
             10000000000]


cdef inline void _fixed(Buf *b, double v, int places) noexcept:
    """``v`` with ``places`` (1 to 10) decimals, as Python's ``f"{v:.{places}f}"``.  Scaled
    and rounded in integers when the scaled value is small and clearly not near a tie (the
    product's error is far below the margin, so the rounding is the exactly rounded one);
    else glibc's exact ``%.*f``."""
    cdef char tmp[400]
    cdef unsigned long long unit = _POW10[places]
    cdef double x = v * <double>unit
    cdef double frac
    cdef unsigned long long r
    cdef int n
    if 0.0 <= x < 1e9 and copysign(1.0, x) > 0.0:  # -0.0 prints as "-0.0"
        frac = x - floor(x)
        if not (0.4999 < frac < 0.5001):
            r = <unsigned long long>(x + 0.5)
            _digits(b, r // unit, 1)
            _raw(b, ".", 1)
            _digits(b, r % unit, places)
            return
    if not isfinite(v):  # glibc writes a negative NaN as "-nan", Python as "nan"
        b.bad = True
        return
    n = snprintf(tmp, 400, "%.*f", places, v)
    if n < 0 or n >= 400:
        b.bad = True
        return
    _raw(b, tmp, n)


cpdef str text_line(str stamp, str head, ctx, double now):
    """The line for ``ctx`` finished at ``now`` (monotonic), ``stamp`` its wall time."""
    cdef Buf b
    b.n = 0
    b.bad = False
    req = field(&_CTX, ctx, EXCHANGE).request
    started_o = field(&_CTX, ctx, STARTED)
    if type(started_o) is not float:
        return _text_line_py(stamp, head, ctx, now)
    cdef double started = started_o
    ttft = field(&_CTX, ctx, FIRST_AT)
    usage = field(&_CTX, ctx, USAGE)
    cost = field(&_CTX, ctx, COST)
    client = field(&_REQ, req, 0)
    dep = field(&_CTX, ctx, DEP)
    _str(&b, stamp)
    _str(&b, head)
    if client:
        _str(&b, client[0])
    else:
        _raw(&b, "-", 1)
    _raw(&b, " \"", 2)
    _str(&b, field(&_REQ, req, 1))
    _raw(&b, " ", 1)
    _str(&b, field(&_REQ, req, 2))
    _raw(&b, "\" ", 2)
    _int(&b, field(&_CTX, ctx, STATUS))
    _raw(&b, " ", 1)
    _fixed(&b, (now - started) * 1000.0, 1)
    _raw(&b, "ms model=", 9)
    if dep:
        _str(&b, field(&_DEP, dep, 0))
        _raw(&b, " provider=", 10)
        _str(&b, field(&_DEP, dep, 1))
    else:
        _raw(&b, "- provider=-", 12)
    _raw(&b, " tokens=", 8)
    if usage is not None:
        _int(&b, field(&_USAGE, usage, 0))
        _raw(&b, "/", 1)
        _int(&b, field(&_USAGE, usage, 1))
    else:
        _raw(&b, "-", 1)
    _raw(&b, " cost=", 6)
    if cost is None:
        _raw(&b, "-", 1)
    elif type(cost) is float:
        _fixed(&b, cost, 8)
    else:
        b.bad = True
    _raw(&b, " ttft=", 6)
    if not ttft:
        _raw(&b, "-", 1)
    elif type(ttft) is float:
        _fixed(&b, (<double>ttft - started) * 1000.0, 1)
        _raw(&b, "ms", 2)
    else:
        b.bad = True
    _raw(&b, " cache=", 7)
    _str_or_dash(&b, field(&_CTX, ctx, CACHE))
    _raw(&b, " attempts=", 10)
    _int(&b, field(&_CTX, ctx, ATTEMPTS))
    _raw(&b, " rid=", 5)
    _str_or_dash(&b, field(&_CTX, ctx, RID))
    if b.bad:
        return _text_line_py(stamp, head, ctx, now)
    line = PyUnicode_New(b.n, 127)
    memcpy(PyUnicode_DATA(line), b.data, b.n)
    return line



cpdef bytes timing_value(ctx, double now):
    """The ``server-timing`` value for ``ctx`` as of ``now``: see access_py.timing_value."""
    cdef Buf b
    cdef double queued, started, waited, sent, head_at, first, own
    q = field(&_CTX, ctx, QUEUED)
    st = field(&_CTX, ctx, STARTED)
    w = field(&_CTX, ctx, WAITED)
    u = field(&_CTX, ctx, UP_STARTED)
    if type(q) is not float or type(st) is not float or type(w) is not float \
            or type(u) is not float:
        return _timing_value_py(ctx, now)
    queued = q
    started = st
    waited = w
    sent = u
    b.n = 0
    b.bad = False
    own = now - started - waited - queued
    _raw(&b, "helix;dur=", 10)
    _fixed(&b, own * 1000.0 if own > 0.0 else 0.0, 3)
    if queued != 0.0:
        _raw(&b, ", queue;dur=", 12)
        _fixed(&b, queued * 1000.0, 3)
    if sent != 0.0:
        h = field(&_CTX, ctx, HEAD_AT)
        if type(h) is not float:
            return _timing_value_py(ctx, now)
        head_at = h
        if head_at >= sent:
            _raw(&b, ", upstream;dur=", 15)
            _fixed(&b, (head_at - sent) * 1000.0, 3)
            f = field(&_CTX, ctx, FIRST_AT)
            if type(f) is not float:
                return _timing_value_py(ctx, now)
            first = f
            if first >= sent:
                _raw(&b, ", ttft;dur=", 11)
                _fixed(&b, (first - sent) * 1000.0, 3)
    if b.bad:
        return _timing_value_py(ctx, now)
    return PyBytes_FromStringAndSize(b.data, b.n)


cpdef bytes cost_value(usd):
    """The ``x-helix-cost-usd`` value: USD, ten decimals."""
    cdef Buf b
    if type(usd) is not float:
        return _cost_value_py(usd)
    b.n = 0
    b.bad = False
    _fixed(&b, <double>usd, 10)
    if b.bad:
        return _cost_value_py(usd)
    return PyBytes_FromStringAndSize(b.data, b.n)


cdef bytes _RID = b"x-request-id"


cdef const char *_HEXDIGITS = b"0123456789abcdef"


cdef inline int _hex(char *out, unsigned long long x) noexcept:
    """``x`` in lower-case hex (no padding) at ``out``; its length (at most 16).  What
    ``snprintf("%llx")`` writes, for a tenth of its instructions."""
    cdef char tmp[16]
    cdef int i = 16
    while True:
        i -= 1
        tmp[i] = _HEXDIGITS[x & 15]
        x >>= 4
        if not x:
            break
    memcpy(out, tmp + i, 16 - i)
    return 16 - i


cdef class RequestIds:
    """See access_py.RequestIds: the same ids, made in a C buffer."""

    cdef public str prefix
    cdef bytes _prefix
    cdef unsigned long long _n

    __name__ = "request_id"  # what the pipeline calls this phase (Pipeline.names)

    def __init__(self, prefix=None):
        if prefix is None:
            prefix = f"{random.getrandbits(32):08x}-"
        self.prefix = prefix
        # A prefix that is not short ASCII (never Helix's own) is formatted as the twin does.
        self._prefix = prefix.encode("ascii") if prefix.isascii() and len(prefix) <= 64 else None
        self._n = 0

    cdef tuple _make(self):
        """(id, its bytes) for the next counter value."""
        cdef char buf[96]
        cdef Py_ssize_t n
        self._n += 1
        if self._prefix is None:
            rid = f"{self.prefix}{self._n:x}"
            return rid, rid.encode("ascii")
        n = len(self._prefix)
        memcpy(buf, <const char *>self._prefix, n)
        n += _hex(buf + n, self._n)
        return PyUnicode_DecodeASCII(buf, n, NULL), PyBytes_FromStringAndSize(buf, n)

    cdef object _sane(self, rid):
        """``rid`` as bytes when it is a usable client id, else None."""
        cdef Py_ssize_t i, n
        cdef const unsigned char *p
        if type(rid) is not str or not PyUnicode_IS_ASCII(rid):
            return None
        n = PyUnicode_GET_LENGTH(rid)
        if n == 0 or n > 128:
            return None
        p = <const unsigned char *>PyUnicode_DATA(rid)
        for i in range(n):
            if p[i] < 0x21 or p[i] > 0x7E:
                return None
        return PyBytes_FromStringAndSize(<const char *>p, n)

    def new(self):
        return self._make()[0]

    def pick(self, headers):
        rid = headers.get("x-request-id")
        if self._sane(rid) is not None:
            return rid
        return self._make()[0]

    def __call__(self, ctx):
        headers = field(&_CTX, ctx, EXCHANGE).request.headers
        rid = (<dict>headers).get("x-request-id") if type(headers) is dict \
            else headers.get("x-request-id")
        value = self._sane(rid)
        if value is None:
            rid, value = self._make()
        set_field(&_CTX, ctx, RID, rid)
        field(&_CTX, ctx, RESPONSE_HEADERS).append((_RID, value))


cdef class AccessLine:
    """See access_py.AccessLine: the same lines.  The recorder, its stamp and (for a
    ``LineWriter`` whose timer is armed) the append to the held lines are one C call; the
    three Python frames they were cost ≈ 3,000 instructions a request.  Same lines:
    tests/fast/test_access_parity.py."""

    cdef public str head
    cdef public object writer
    cdef object _write, _wall, _monotonic, _fmt, _tm, _suffix, _strftime
    cdef list _lines  # the LineWriter's held lines, or None for another writer
    cdef Py_ssize_t _limit
    # The stamp's cache, the twin's ``last``: the millisecond and the second, as C
    # integers in the usual range [0, 9e15) ms, else (``_ms_big``, ``_sec_big``) as the
    # Python ints in ``_ms_o``, ``_sec_o``; then the date text and the whole text.
    cdef long long _ms, _sec
    cdef bint _ms_big, _sec_big
    cdef object _ms_o, _sec_o
    cdef str _date, _text

    __name__ = "log_access"  # what the runner and the status page call this recorder

    def __init__(self, head, writer, fmt, tm, suffix="", wall=time.time,
                 monotonic=time.monotonic):
        self.head = head
        self.writer = writer
        self._write = writer.write
        self._fmt = fmt
        self._tm = tm
        self._suffix = suffix
        self._strftime = time.strftime
        self._wall = wall
        self._monotonic = monotonic
        # A LineWriter keeps one list for its life and has its timer armed exactly while
        # that list holds lines (helix/observe/access.py): then a line that does not fill
        # it is only appended, which is all its write() would do.  Its limit is read now.
        lines = getattr(writer, "lines", None)
        limit = getattr(writer, "limit", None)
        if type(lines) is list and type(limit) is int:
            self._lines = lines
            self._limit = limit
        else:
            self._lines = None
            self._limit = 0
        self._set_ms(-1)  # the twin's start: [-1, -1, "", ""]
        self._set_sec(-1)
        self._date = ""
        self._text = ""

    cdef inline void _set_ms(self, ms):
        if 0 <= ms < 9_000_000_000_000_000:
            self._ms_big = False
            self._ms = ms
        else:
            self._ms_big = True
            self._ms_o = ms

    cdef inline void _set_sec(self, sec):
        if 0 <= sec < 9_000_000_000_000:
            self._sec_big = False
            self._sec = sec
        else:
            self._sec_big = True
            self._sec_o = sec

    cdef str _stamp(self, now):
        """access_py.clock's stamp, step for step: the same cache, updated in the same
        order.  A float of the usual range in C; anything else as the twin computes it."""
        cdef double x
        cdef long long ms, sec, frac
        if type(now) is float:
            x = <double>now * 1000
            if 0.0 <= x < 9.0e15:
                ms = <long long>x  # int() truncates toward zero too
                if not self._ms_big and ms == self._ms:
                    return self._text
                sec = ms // 1000
                frac = ms % 1000
                if self._sec_big or sec != self._sec:
                    self._sec_big = False
                    self._sec = sec
                    self._date = self._strftime(self._fmt, self._tm(sec))
                self._ms_big = False
                self._ms = ms
                self._text = text = f"{self._date}{frac:03d}{self._suffix}"
                return text
        ms_o = int(now * 1000)
        if ms_o == (self._ms_o if self._ms_big else self._ms):
            return self._text
        sec_o, frac_o = divmod(ms_o, 1000)
        if sec_o != (self._sec_o if self._sec_big else self._sec):
            self._set_sec(sec_o)
            self._date = self._strftime(self._fmt, self._tm(sec_o))
        self._set_ms(ms_o)
        self._text = text = f"{self._date}{frac_o:03d}{self._suffix}"
        return text

    def __call__(self, ctx):
        cdef Py_ssize_t n
        stamp = self._stamp(self._wall())
        line = text_line(stamp, self.head, ctx, self._monotonic())
        lines = self._lines
        if lines is not None:
            n = len(lines)
            if 0 < n < self._limit - 1:
                lines.append(line)
                return
        self._write(line)


# -- the request's context, made (helix/pipeline/runner.py) --------------------------------
#
# ``RequestContext.__init__`` (helix/pipeline/context.py) is thirty slot stores, ≈ 90
# bytecodes and a Python frame on every request.  ``ContextFactory(cls).new(exchange, api,
# started)`` makes the same object from a template: at start-up it runs ``cls(A, B, C)``
# once with three marker arguments and reads every slot back, learning which slot holds
# which argument and which holds a constant default (None, a bool, a number, a string) or a
# new empty list.  Per request it allocates the object and stores those by offset.  A class
# whose ``__init__`` does anything else it can see (another default, a value computed from
# an argument, a slot it leaves unset, a ``__dict__``) is made by calling it, as the twin
# (access_py.ContextFactory) does.  It cannot see a constant that would differ on the next
# call (a clock read, a counter): ``RequestContext.__init__`` has none, and
# tests/fast/test_context_parity.py compares every slot with ``__init__``'s.

cdef extern from "Python.h":
    ctypedef object (*allocfunc)(PyTypeObject *, Py_ssize_t)
    ctypedef struct _Alloc "PyTypeObject":
        allocfunc tp_alloc
        void *tp_new
    void *OBJECT_NEW "((void *)PyBaseObject_Type.tp_new)"
    void INCREF "Py_INCREF"(PyObject *)
    PyObject *PyList_New(Py_ssize_t)

cdef enum:
    ARG0 = -1  # kinds: an argument (-1..-3), a constant (0), a new empty list (1)
    CONST = 0
    NEW_LIST = 1


cdef class _Marker:
    pass


cdef class ContextFactory:
    cdef readonly object cls
    cdef readonly bint compiled  # False: cls is called (its __init__ is not plain)
    cdef Py_ssize_t n
    cdef Py_ssize_t offsets[MAX_MEMBERS]
    cdef int kinds[MAX_MEMBERS]
    cdef list _consts  # keeps each constant alive; values[i] borrows from it
    cdef PyObject *values[MAX_MEMBERS]

    def __init__(self, cls):
        self.cls = cls
        self.compiled = False
        self._consts = []
        self.n = 0
        try:
            self._learn(cls)
        except Exception:
            self.compiled = False

    cdef int _learn(self, cls) except -1:
        cdef _Alloc *t = <_Alloc *><PyObject *>cls
        cdef MemberSlots ms
        cdef Py_ssize_t i
        cdef PyObject *v
        if type(cls) is not type or t.tp_new != OBJECT_NEW:
            return 0
        marks = (_Marker(), _Marker(), _Marker())
        template = cls(*marks)
        if not member_slots(cls, &ms):
            return 0
        self.n = ms.n
        for i in range(ms.n):
            self.offsets[i] = ms.offsets[i]
            v = (<PyObject **>((<char *><PyObject *>template) + ms.offsets[i]))[0]
            if v == NULL:
                return 0  # a slot __init__ leaves unset
            value = <object>v
            if value is marks[0] or value is marks[1] or value is marks[2]:
                self.kinds[i] = ARG0 - marks.index(value)
                self.values[i] = NULL
            elif type(value) is list and not value:
                self.kinds[i] = NEW_LIST
                self.values[i] = NULL
            elif value is None or type(value) in (bool, int, float, str, bytes):
                self.kinds[i] = CONST
                self._consts.append(value)
                self.values[i] = v
            else:
                return 0  # another kind of default (a dict, an object): __init__ runs
        self.compiled = True
        return 0

    def new(self, exchange, api, started):
        """``cls(exchange, api, started)``."""
        cdef Py_ssize_t i
        cdef PyObject *v
        cdef PyObject **base
        cdef int kind
        if not self.compiled:
            return self.cls(exchange, api, started)
        obj = (<_Alloc *><PyObject *>self.cls).tp_alloc(<PyTypeObject *><PyObject *>self.cls, 0)
        base = <PyObject **><char *><PyObject *>obj
        for i in range(self.n):
            kind = self.kinds[i]
            if kind == CONST:
                v = self.values[i]
            elif kind == NEW_LIST:
                v = PyList_New(0)
                if v == NULL:
                    raise MemoryError()
                (<PyObject **>((<char *>base) + self.offsets[i]))[0] = v  # owned already
                continue
            elif kind == ARG0:
                v = <PyObject *>exchange
            elif kind == ARG0 - 1:
                v = <PyObject *>api
            else:
                v = <PyObject *>started
            INCREF(v)
            (<PyObject **>((<char *>base) + self.offsets[i]))[0] = v
        return obj
