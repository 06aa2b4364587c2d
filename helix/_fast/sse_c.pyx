# cython: language_level=3, boundscheck=False, wraparound=False
"""Incremental Server-Sent Events parser: the compiled twin of sse_py.py.

Hand-written rather than compiled from the .py source (as it was until 2026-12): compiled
unchanged, each line still cost two ``bytearray.find`` method calls, a slice, a ``bytes``
copy of the line and a slice of it per field, about 4,200 instructions a line, a third of
a streamed request's instructions.  Here the line ends are found with glibc's vectorised
``memchr`` straight in the buffer, the field name is compared in place and only a ``data:``
value becomes a ``bytes`` object.  A chunk that arrives while nothing is buffered (the usual
case: upstream chunks end at an event boundary) is parsed in place, without a copy into the
buffer; only an unfinished line is kept.  The buffered tail is known to hold no line end, so a
line delivered a byte at a time is searched once, not once per byte.

Same rules and results as the twin (WHATWG event-stream: lines end with CRLF, LF or CR;
``feed`` returns ``(event, data)`` tuples, ``event`` a ``str`` or ``None``, ``data`` the
``data:`` lines joined by ``\\n``).  Parity: tests/fast/test_sse_parity.py.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcmp

__all__ = ["SSEParser", "ScanRelay"]

cdef bytes _NL = b"\n"


cdef class SSEParser:
    cdef bytearray _buf  # an unfinished line, never holding a line end
    cdef list _data  # the current event's data: values
    cdef object _event  # its event: name (str) or None
    cdef bint _pending_cr  # the last byte seen was a CR ending a line: a LF next is its pair

    def __cinit__(self):
        self._buf = bytearray()
        self._data = []
        self._event = None
        self._pending_cr = False

    cpdef list feed(self, data):
        cdef list events = []
        cdef const char *p
        cdef Py_ssize_t n, pos = 0, start
        cdef bint direct = type(data) is bytes and PyByteArray_GET_SIZE(self._buf) == 0
        if direct:
            p = PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
            start = 0
        else:
            start = PyByteArray_GET_SIZE(self._buf)  # searched already: no line end there
            self._buf += data
            p = PyByteArray_AS_STRING(self._buf)
            n = PyByteArray_GET_SIZE(self._buf)
        if self._pending_cr and n > 0:
            # A CR ended the previous feed (so nothing was buffered): a LF right after it
            # belongs to it.
            self._pending_cr = False
            if p[0] == b"\n":
                pos = 1
                start = 1
        pos = self._lines(p, n, pos, start, events)
        if direct:
            if pos < n:
                self._buf += (<bytes>data)[pos:]
        elif pos:
            del self._buf[:pos]
        return events

    cdef Py_ssize_t _lines(self, const char *p, Py_ssize_t n, Py_ssize_t pos,
                           Py_ssize_t start, list events) except -1:
        """Handle every whole line in ``p[pos:n]`` (no line end before ``start``); return
        where the unfinished rest begins."""
        cdef const char *lf
        cdef const char *cr
        cdef Py_ssize_t end, nxt, limit
        while start < n:
            lf = <const char *>memchr(p + start, 10, n - start)
            limit = (lf - p) if lf != NULL else n
            cr = <const char *>memchr(p + start, 13, limit - start)
            if cr != NULL:
                end = cr - p
                nxt = end + 1
                if nxt < n:
                    if p[nxt] == b"\n":
                        nxt += 1
                else:
                    self._pending_cr = True
            elif lf != NULL:
                end = limit
                nxt = end + 1
            else:
                break
            self._line(p + pos, end - pos, events)
            pos = nxt
            start = nxt
        return pos

    cdef int _line(self, const char *s, Py_ssize_t n, list events) except -1:
        cdef const char *colon
        cdef const char *v
        cdef Py_ssize_t flen, vlen
        cdef object payload
        if n == 0:
            if PyList_GET_SIZE(self._data):
                if PyList_GET_SIZE(self._data) == 1:  # b"\n".join of one: the item itself
                    payload = <object>PyList_GET_ITEM(self._data, 0)
                else:
                    payload = _NL.join(self._data)
                events.append((self._event, payload))
                self._data = []
            self._event = None
            return 0
        if s[0] == b":":  # comment / keep-alive
            return 0
        colon = <const char *>memchr(s, 58, n)
        if colon == NULL:
            flen = n
            v = s + n
            vlen = 0
        else:
            flen = colon - s
            v = colon + 1
            vlen = n - flen - 1
            if vlen > 0 and v[0] == b" ":
                v += 1
                vlen -= 1
        if flen == 4 and memcmp(s, b"data", 4) == 0:
            self._data.append(PyBytes_FromStringAndSize(v, vlen))
        elif flen == 5 and memcmp(s, b"event", 5) == 0:
            self._event = PyUnicode_DecodeUTF8(v, vlen, "replace")
        return 0

    cpdef list close(self):
        """End of stream: an unterminated last event is dropped, as the spec says."""
        del self._buf[:]
        self._data = []
        self._event = None
        return []

    @property
    def buffered(self):
        return PyByteArray_GET_SIZE(self._buf)


cdef extern from *:
    """
    #include <string.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif

    /* Where key k (m >= 1 bytes) first occurs in h (n bytes): its offset, or -1.  A key's
       usual haystack is a JSON event of a few hundred bytes holding it nowhere; glibc's
       memmem costs about 2.5 instructions a byte there, and sets up a shift table per
       call.  This tests 16 starting offsets at a time (SSE2): the bytes at the key's two
       anchor positions a < b (the first and the last of its bytes that are not JSON
       punctuation, helix_anchors) must both match before a whole compare is tried, and
       the candidates of a block are tried in order, so the first occurrence is found. */
    static Py_ssize_t helix_find(const char *h, Py_ssize_t n, const char *k, Py_ssize_t m,
                                 Py_ssize_t a, Py_ssize_t b)
    {
        Py_ssize_t i = 0, last = n - m;
        const char *p;
        if (last < 0) return -1;
        if (m == 1) {
            p = (const char *)memchr(h, k[0], (size_t)n);
            return p ? p - h : -1;
        }
    #if defined(__SSE2__)
        {
            const __m128i fa = _mm_set1_epi8(k[a]), fb = _mm_set1_epi8(k[b]);
            for (; i + 15 <= last; i += 16) {
                /* h[i+a .. i+a+15] and h[i+b .. i+b+15] lie in h: i+15+b <= last+b < n */
                __m128i x = _mm_loadu_si128((const __m128i *)(h + i + a));
                __m128i y = _mm_loadu_si128((const __m128i *)(h + i + b));
                unsigned int mask = (unsigned int)_mm_movemask_epi8(
                    _mm_and_si128(_mm_cmpeq_epi8(x, fa), _mm_cmpeq_epi8(y, fb)));
                while (mask) {
                    Py_ssize_t j = i + __builtin_ctz(mask);
                    if (memcmp(h + j, k, (size_t)m) == 0) return j;
                    mask &= mask - 1;
                }
            }
        }
    #endif
        for (; i <= last; i++) {
            if (h[i + a] == k[a] && h[i + b] == k[b] && memcmp(h + i, k, (size_t)m) == 0)
                return i;
        }
        return -1;
    }

    /* A key's anchors for helix_find: the first and the last of its bytes that are not
       JSON punctuation (quotes, colons, commas, brackets, braces, spaces: every event has
       many), or its first and last bytes when it has fewer than two others. */
    static void helix_anchors(const char *k, Py_ssize_t m, Py_ssize_t *a, Py_ssize_t *b)
    {
        Py_ssize_t i, first = -1, lastpos = -1;
        for (i = 0; i < m; i++) {
            if (strchr("\\":,{}[] ", k[i]) == NULL || k[i] == 0) {
                if (first < 0) first = i;
                lastpos = i;
            }
        }
        if (first < 0 || first == lastpos) {
            first = 0;
            lastpos = m - 1;
        }
        *a = first;
        *b = lastpos;
    }
    """
    Py_ssize_t helix_find(const char *h, Py_ssize_t n, const char *k, Py_ssize_t m,
                          Py_ssize_t a, Py_ssize_t b)
    void helix_anchors(const char *k, Py_ssize_t m, Py_ssize_t *a, Py_ssize_t *b)


def find(haystack, key):
    """``haystack.find(key)`` for two ``bytes`` (key non-empty), by ScanRelay's search: for
    the parity tests (tests/fast/test_sse_parity.py)."""
    cdef Py_ssize_t a, b
    cdef bytes h = haystack, k = key
    if not k:
        raise ValueError("empty key")
    helix_anchors(PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k), &a, &b)
    return helix_find(PyBytes_AS_STRING(h), PyBytes_GET_SIZE(h),
                      PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k), a, b)


cdef enum:
    _MAX_KEYS = 4  # a relay's keys (ScanRelay): the Anthropic one has 3


cdef class ScanRelay:
    """The scan of a relay that passes a provider's SSE bytes on unchanged: the bytes go out
    as they came; an event whose data holds one of ``keys`` (or whose ``event:`` name is in
    ``names``) is handed to ``self.see(event, data)``, which a subclass defines.  The loop over
    the events and the key search are C here (a stream's usual event matches nothing: no
    Python frame for it).  Twin: ``sse_py.ScanRelay``."""

    cdef SSEParser _parser
    cdef tuple _keys
    cdef object _names
    cdef Py_ssize_t _a[_MAX_KEYS]  # each key's anchors for helix_find
    cdef Py_ssize_t _b[_MAX_KEYS]

    def __init__(self, keys, names=None):
        cdef Py_ssize_t k
        cdef bytes key
        self._parser = SSEParser()
        self._keys = tuple(keys)
        if len(self._keys) > _MAX_KEYS:
            raise ValueError(f"at most {_MAX_KEYS} keys")
        for k in range(len(self._keys)):
            if type(self._keys[k]) is not bytes or not self._keys[k]:
                raise TypeError("keys are non-empty bytes")
            key = self._keys[k]
            helix_anchors(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), &self._a[k],
                          &self._b[k])
        self._names = frozenset(names) if names else None

    def feed(self, data):
        cdef list events = self._parser.feed(data)
        cdef Py_ssize_t i, k, nkeys = len(self._keys)
        cdef tuple ev
        cdef bytes payload, key
        for i in range(PyList_GET_SIZE(events)):
            ev = <tuple>PyList_GET_ITEM(events, i)
            payload = <bytes>ev[1]
            for k in range(nkeys):
                key = <bytes>self._keys[k]
                if helix_find(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload),
                              PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                              self._a[k], self._b[k]) >= 0:
                    self.see(ev[0], payload)
                    break
            else:
                if self._names is not None and ev[0] in self._names:
                    self.see(ev[0], payload)
        return data

    def close(self):
        self._parser.close()
        return b""

    def see(self, event, data):
        pass
