# cython: language_level=3, boundscheck=False, wraparound=False
"""A response head's bytes from its parts: the compiled twin of head_py.py.

Hand-written rather than compiled from the .py source: the point is one
``PyBytes`` allocation filled with ``memcpy`` (sizes summed first), instead of a
formatted ``bytes`` per header line, a join, and two scans for CR/LF; the guard
here is a ``memchr`` per name and value.  Anything that is not a list of
``(bytes, bytes)`` pairs (a bytearray value, a tuple of headers, an int
``content_length`` subclass...) goes to the Python twin, which accepts every
buffer ``%b`` does.  Same bytes, same errors: tests/fast/test_head_parity.py.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr, memcmp, memcpy
from libc.time cimport time_t, tm


cdef extern from "<time.h>" nogil:
    tm *gmtime_r(const time_t *timep, tm *result)

from helix._fast.head_py import crlf as _crlf_py
from helix._fast.head_py import date_line as _date_line_py
from helix._fast.head_py import frame_chunk as _frame_chunk_py
from helix._fast.head_py import head as _head_py
from helix._fast.head_py import http11_line as _http11_line_py
from helix._fast.head_py import length_line as _length_line_py
from helix._fast.head_py import split_target as _split_target_py
from helix._fast.head_py import pick_headers as _pick_headers_py

__all__ = ["crlf", "date_line", "frame_chunk", "head", "http11_line", "length_line",
           "pick_headers", "split_target"]

cdef bytes _CLOSE = b"connection: close\r\n"
cdef bytes _KEEP = b"connection: keep-alive\r\n"
cdef bytes _CHUNKED = b"transfer-encoding: chunked\r\n"
cdef bytes _CL = b"content-length: "
# A length written in C as decimal digits up to this (20 digits fit 2**64 - 1); anything
# larger goes to the twin's ``%d``.
_DIGITS_MAX = 10**19


cdef inline int _decimal(char *buf, unsigned long long v) noexcept:
    # ``v``'s decimal digits into ``buf`` (at least 20 chars), least significant first;
    # returns how many.
    cdef int k = 0
    while True:
        buf[k] = 48 + <char>(v % 10)
        k += 1
        v //= 10
        if v == 0:
            return k


cdef inline char *_put_decimal(char *out, const char *buf, int k) noexcept:
    while k:
        k -= 1
        out[0] = buf[k]
        out += 1
    return out


cdef inline bint _reserved(const char *p, Py_ssize_t n):
    # RESERVED in head_py.py, as exact byte comparisons (what frozenset membership is).
    if n == 14:
        return memcmp(p, b"content-length", 14) == 0
    if n == 17:
        return memcmp(p, b"transfer-encoding", 17) == 0
    if n == 10:
        return memcmp(p, b"connection", 10) == 0 or memcmp(p, b"keep-alive", 10) == 0
    if n == 4:
        return memcmp(p, b"date", 4) == 0
    return False


cdef inline bint _crlf(const char *p, Py_ssize_t n):
    return memchr(p, 13, n) != NULL or memchr(p, 10, n) != NULL


cdef inline char *_put(char *out, bytes b):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(out, PyBytes_AS_STRING(b), n)
    return out + n


cdef Py_ssize_t _lines_size(list hs) except -3:
    """Bytes of the header lines; -1: not all ``(bytes, bytes)`` tuples (the twin's case);
    -2: a CR/LF (reported once every pair was seen: the twin's order of errors)."""
    cdef Py_ssize_t i, total = 0
    cdef object item, name, value
    cdef bint bad = False
    for i in range(len(hs)):
        item = hs[i]
        if type(item) is not tuple or len(<tuple>item) != 2:
            return -1
        name = (<tuple>item)[0]
        value = (<tuple>item)[1]
        if type(name) is not bytes or type(value) is not bytes:
            return -1
        if _reserved(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name)):
            continue
        if (_crlf(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
                or _crlf(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))):
            bad = True
        total += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
    return -2 if bad else total


def head(bytes status_line, bytes date_line, headers, content_length, bint chunked,
         bint close, bint keep_alive_10, server):
    cdef Py_ssize_t lines = -1
    if (type(headers) is list
            and (server is None or type(server) is bytes)
            and (content_length is None
                 or (type(content_length) is int and 0 <= content_length < _DIGITS_MAX))):
        lines = _lines_size(<list>headers)
    if lines == -1:
        return _head_py(status_line, date_line, headers, content_length, chunked, close,
                        keep_alive_10, server)
    if lines == -2:
        raise ValueError("CR/LF in response header")
    cdef list hs = <list>headers
    cdef Py_ssize_t i, count = len(hs)
    cdef Py_ssize_t total = PyBytes_GET_SIZE(status_line) + PyBytes_GET_SIZE(date_line) + 2 + lines
    cdef object item, name, value
    cdef char cl_digits[20]
    cdef int cl_k = -1  # -1: no content-length line
    cdef char *out
    cdef bytes result
    if server is not None:
        total += 8 + PyBytes_GET_SIZE(server) + 2  # "server: " ... CRLF
    if content_length is not None:
        cl_k = _decimal(cl_digits, <unsigned long long>content_length)
        total += PyBytes_GET_SIZE(_CL) + cl_k + 2
    elif chunked:
        total += PyBytes_GET_SIZE(_CHUNKED)
    if close:
        total += PyBytes_GET_SIZE(_CLOSE)
    elif keep_alive_10:
        total += PyBytes_GET_SIZE(_KEEP)

    result = PyBytes_FromStringAndSize(NULL, total)
    out = PyBytes_AS_STRING(result)
    out = _put(out, status_line)
    out = _put(out, date_line)
    if server is not None:
        memcpy(out, b"server: ", 8)
        out = _put(out + 8, <bytes>server)
        out[0] = 13
        out[1] = 10
        out += 2
    for i in range(count):
        item = hs[i]
        name = (<tuple>item)[0]
        if _reserved(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name)):
            continue
        value = (<tuple>item)[1]
        out = _put(out, <bytes>name)
        out[0] = 58  # ':'
        out[1] = 32
        out = _put(out + 2, <bytes>value)
        out[0] = 13
        out[1] = 10
        out += 2
    if cl_k >= 0:
        out = _put_decimal(_put(out, _CL), cl_digits, cl_k)
        out[0] = 13
        out[1] = 10
        out += 2
    elif chunked:
        out = _put(out, _CHUNKED)
    if close:
        out = _put(out, _CLOSE)
    elif keep_alive_10:
        out = _put(out, _KEEP)
    out[0] = 13
    out[1] = 10
    return result


def pick_headers(dict kinds, classify, rid, upstream, route, own=frozenset()):
    """See head_py.pick_headers: the same loop over a list of 2-tuples, with the dict
    lookups and appends in C; anything else goes to the twin (from the start: the names
    already classified are remembered the same either way)."""
    cdef list out = []
    if type(upstream) is not list:
        return _pick_headers_py(kinds, classify, rid, upstream, route, own)
    for item in <list>upstream:
        if type(item) is not tuple or len(<tuple>item) != 2:
            return _pick_headers_py(kinds, classify, rid, upstream, route, own)
        k = (<tuple>item)[0]
        kind = kinds.get(k)
        if kind is None:
            kind = classify(k)
        if kind == 1:
            out.append(item)
        elif kind == 2:
            out.append((rid, (<tuple>item)[1]))
            if k in own:
                out.append(item)
    out.extend(route)
    return out


cdef const char *_HEX = b"0123456789abcdef"


cpdef bytes frame_chunk(data, bint end=False):
    """One chunk of a chunked body in one ``PyBytes``: hex length, CRLF, data, CRLF, and with
    ``end`` the terminator ``0\\r\\n\\r\\n``.  Called per streamed chunk (the twin's ``%``
    format is a Python frame and a format parse); anything but ``bytes`` goes to the twin."""
    if type(data) is not bytes:
        return _frame_chunk_py(data, end)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef char digits[16]
    cdef int k = 0
    cdef size_t v = <size_t>n
    while True:
        digits[k] = _HEX[v & 15]
        k += 1
        v >>= 4
        if v == 0:
            break
    cdef Py_ssize_t total = k + 2 + n + 2 + (5 if end else 0)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char *w = PyBytes_AS_STRING(out)
    while k:
        k -= 1
        w[0] = digits[k]
        w += 1
    w[0] = 13
    w[1] = 10
    w += 2
    memcpy(w, PyBytes_AS_STRING(data), n)
    w += n
    w[0] = 13
    w[1] = 10
    if end:
        memcpy(w + 2, b"0\r\n\r\n", 5)
    return out


def crlf(a, b):
    """See head_py.crlf: four ``memchr`` instead of four ``bytes.find`` method calls (≈ 600
    instructions each: the method's argument parsing, not the search)."""
    if type(a) is not bytes or type(b) is not bytes:
        return _crlf_py(a, b)
    return (_crlf(PyBytes_AS_STRING(a), PyBytes_GET_SIZE(a))
            or _crlf(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)))


def http11_line(data):
    """See head_py.http11_line: a ``memchr`` for the line end and an 11-byte compare."""
    if type(data) is not bytes:
        return _http11_line_py(data)
    cdef const char *p = PyBytes_AS_STRING(data)
    cdef const char *end = <const char *>memchr(p, 10, PyBytes_GET_SIZE(data))  # '\n'
    return end != NULL and end - p >= 10 and memcmp(end - 10, b" HTTP/1.1\r", 10) == 0


def split_target(url):
    """See head_py.split_target: the two searches a ``memchr`` each, the two parts decoded
    in place (no slice copies, no method calls)."""
    if type(url) is not bytes:
        return _split_target_py(url)
    cdef const char *p = PyBytes_AS_STRING(url)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(url)
    cdef const char *hit = <const char *>memchr(p, 35, n)  # '#'
    if hit != NULL:
        n = hit - p
    hit = <const char *>memchr(p, 63, n)  # '?'
    if hit == NULL:
        return PyUnicode_DecodeLatin1(p, n, NULL), ""
    cdef Py_ssize_t q = hit - p
    return (PyUnicode_DecodeLatin1(p, q, NULL),
            PyUnicode_DecodeLatin1(p + q + 1, n - q - 1, NULL))


def length_line(n):
    """A request head's last line and the blank line, ``content-length: <n>``: see
    head_py.length_line (the twin's ``%d`` format is ≈ 700 instructions a request)."""
    if type(n) is not int or not 0 <= n < _DIGITS_MAX:
        return _length_line_py(n)
    cdef char digits[20]
    cdef int k = _decimal(digits, <unsigned long long>n)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(_CL)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size + k + 4)
    cdef char *w = _put_decimal(_put(PyBytes_AS_STRING(out), _CL), digits, k)
    memcpy(w, b"\r\n\r\n", 4)
    return out


cdef const char *_DAYS = b"SunMonTueWedThuFriSat"  # tm_wday: 0 is Sunday in C
cdef const char *_MONTHS = b"JanFebMarAprMayJunJulAugSepOctNovDec"


cdef inline void _digits(char *w, int v, int n) noexcept:
    # ``v`` in ``n`` decimal digits, zero-padded (0 <= v < 10**n).
    while n:
        n -= 1
        w[n] = 48 + v % 10
        v //= 10


def date_line(sec):
    """The ``date:`` line for the integer second ``sec``: see head_py.date_line. Written
    into one ``PyBytes`` from ``gmtime_r``'s fields: the twin's ``time.gmtime`` struct and
    its seven-field ``%`` format cost ≈ 20,000 instructions, paid by the first request of
    every second (at a low request rate, by every request)."""
    if type(sec) is not int or not 0 <= sec < 253402300800:  # years 1970-9999
        return _date_line_py(sec)
    cdef time_t t = <time_t>(<long long>sec)
    cdef tm parts
    if gmtime_r(&t, &parts) is NULL:
        return _date_line_py(sec)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 37)
    cdef char *w = PyBytes_AS_STRING(out)
    # "date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
    memcpy(w, b"date: ", 6)
    memcpy(w + 6, _DAYS + 3 * parts.tm_wday, 3)
    w[9] = 44  # ,
    w[10] = 32
    _digits(w + 11, parts.tm_mday, 2)
    w[13] = 32
    memcpy(w + 14, _MONTHS + 3 * parts.tm_mon, 3)
    w[17] = 32
    _digits(w + 18, parts.tm_year + 1900, 4)
    w[22] = 32
    _digits(w + 23, parts.tm_hour, 2)
    w[25] = 58  # :
    _digits(w + 26, parts.tm_min, 2)
    w[28] = 58
    _digits(w + 29, parts.tm_sec, 2)
    memcpy(w + 31, b" GMT\r\n", 6)
    return out
