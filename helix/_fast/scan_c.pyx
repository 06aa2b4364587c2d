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
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcmp

import msgspec

from helix._fast.scan_py import MAX_DEPTH
from helix._fast.scan_py import brackets as _brackets_py
from helix._fast.scan_py import depth_exceeds as _depth_exceeds_py
from helix._fast.scan_py import exact_depth_exceeds as _exact

__all__ = ["brackets", "chunk_text", "depth_exceeds", "event_text"]


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



# -- chunk_text: the usual OpenAI stream chunk, read without decoding it ----------------------
#
# A translated stream (an Anthropic or Responses client in front of an OpenAI-compatible
# provider) decodes every chat.completion.chunk into msgspec Structs (about 4,400
# instructions a chunk) to learn, nearly every time, one thing: choice 0 brought more text.
# ``chunk_text(payload)`` answers that in one pass: the text when the payload is exactly such
# a chunk, None for anything else -- then the reader decodes it as before, so what a chunk
# means (and what a malformed one raises) is decided by the Struct decoder alone.  Strict:
# ``choices`` once, one choice whose keys are only ``index`` (the number 0), ``delta``,
# ``logprobs`` and ``finish_reason`` (both null), a delta whose ``content`` is a non-empty
# string and whose other keys are null, no ``usage`` or ``error`` other than null, every
# other value well-formed JSON (skipped), nothing after the object.  No compiled build: no
# shortcut (helix/providers/openai.py).  Tests: tests/fast/test_chunk_text.py.

cdef object _decode_str = msgspec.json.Decoder(str).decode

cdef enum:
    _MAX_NEST = 64


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* The index of the first byte at or after i that ends a run of plain string bytes --
       a quote, a backslash or a control byte (< 0x20) -- or n.  Eight bytes a step on a
       little-endian machine: a word's zero-byte test (x - 0x01..) & ~x & 0x80.. flags no
       byte below the first real match, so the lowest flag is that match; byte by byte
       elsewhere and for the tail. */
    static inline Py_ssize_t helix_plain_run(const unsigned char *p, Py_ssize_t i,
                                             Py_ssize_t n) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
        const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
        const uint64_t quote = 0x2222222222222222ULL, slash = 0x5C5C5C5C5C5C5C5CULL;
        while (i + 8 <= n) {
            uint64_t v, q, b, t;
            memcpy(&v, p + i, 8);
            q = v ^ quote;
            b = v ^ slash;
            t = ((q - ones) & ~q) | ((b - ones) & ~b) | ((v - 0x2020202020202020ULL) & ~v);
            t &= high;
            if (t)
                return i + (__builtin_ctzll(t) >> 3);
            i += 8;
        }
    #endif
        while (i < n && p[i] != 34 && p[i] != 92 && p[i] >= 32)
            i++;
        return i;
    }
    """
    Py_ssize_t helix_plain_run(const unsigned char *p, Py_ssize_t i, Py_ssize_t n) noexcept


cdef inline Py_ssize_t _ws(const unsigned char *p, Py_ssize_t i, Py_ssize_t n):
    while i < n and (p[i] == 32 or p[i] == 10 or p[i] == 13 or p[i] == 9):
        i += 1
    return i


cdef int _hex4(const unsigned char *p, Py_ssize_t i, Py_ssize_t n):
    """The value of the 4 hex digits at ``p[i]``, -1 if they are not."""
    cdef int v = 0, k
    cdef unsigned char c
    if i + 4 > n:
        return -1
    for k in range(4):
        c = p[i + k]
        if 48 <= c <= 57:
            v = v * 16 + c - 48
        elif 65 <= c <= 70:
            v = v * 16 + c - 55
        elif 97 <= c <= 102:
            v = v * 16 + c - 87
        else:
            return -1
    return v


cdef Py_ssize_t _string(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, bint *escaped):
    """``p[i]`` is a quote: the index after the closing quote, -1 if not a valid string (as
    msgspec reads one: its escapes, a UTF-16 surrogate only in a pair, no control byte)."""
    cdef unsigned char c
    cdef int v
    i += 1
    while i < n:
        i = helix_plain_run(p, i, n)  # past the plain bytes, eight at a time
        if i >= n:
            return -1
        c = p[i]
        if c == 34:  # "
            return i + 1
        if c == 92:  # backslash
            escaped[0] = True
            i += 1
            if i >= n:
                return -1
            c = p[i]
            if c == 117:  # u: a \u escape, four hex digits
                v = _hex4(p, i + 1, n)
                if v < 0 or 0xDC00 <= v <= 0xDFFF:
                    return -1
                i += 5
                if 0xD800 <= v <= 0xDBFF:  # a high surrogate: a low one must follow
                    if i + 1 >= n or p[i] != 92 or p[i + 1] != 117:
                        return -1
                    v = _hex4(p, i + 2, n)
                    if not 0xDC00 <= v <= 0xDFFF:
                        return -1
                    i += 6
                continue
            if c not in b'"\\/bfnrt':
                return -1
            i += 1
            continue
        if c < 32:
            return -1
        i += 1
    return -1


cdef Py_ssize_t _digits(const unsigned char *p, Py_ssize_t i, Py_ssize_t n):
    cdef Py_ssize_t start = i
    while i < n and 48 <= p[i] <= 57:
        i += 1
    return i if i > start else -1


cdef Py_ssize_t _number(const unsigned char *p, Py_ssize_t i, Py_ssize_t n):
    if i < n and p[i] == 45:  # -
        i += 1
    if i >= n:
        return -1
    if p[i] == 48:  # 0
        i += 1
    else:
        i = _digits(p, i, n)
        if i < 0:
            return -1
    if i < n and p[i] == 46:  # .
        i = _digits(p, i + 1, n)
        if i < 0:
            return -1
    if i < n and (p[i] == 101 or p[i] == 69):  # e E
        i += 1
        if i < n and (p[i] == 43 or p[i] == 45):
            i += 1
        i = _digits(p, i, n)
    return i


cdef inline bint _word(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, const char *w,
                       Py_ssize_t k):
    return i + k <= n and memcmp(p + i, w, k) == 0


cdef Py_ssize_t _value(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, int depth):
    """Skip one JSON value at ``p[i]`` (no leading space): the index after it, -1 if invalid."""
    cdef unsigned char c
    cdef bint esc = False
    if i >= n:
        return -1
    c = p[i]
    if c == 34:
        return _string(p, i, n, &esc)
    if c == 123 or c == 91:  # { [
        if depth >= _MAX_NEST:
            return -1
        i = _ws(p, i + 1, n)
        if i < n and p[i] == c + 2:  # {} []
            return i + 1
        while True:
            if c == 123:
                if i >= n or p[i] != 34:
                    return -1
                i = _string(p, i, n, &esc)
                if i < 0:
                    return -1
                i = _ws(p, i, n)
                if i >= n or p[i] != 58:  # :
                    return -1
                i = _ws(p, i + 1, n)
            i = _value(p, i, n, depth + 1)
            if i < 0:
                return -1
            i = _ws(p, i, n)
            if i >= n:
                return -1
            if p[i] == 44:  # ,
                i = _ws(p, i + 1, n)
                continue
            if p[i] == c + 2:
                return i + 1
            return -1
    if c == 116:
        return i + 4 if _word(p, i, n, "true", 4) else -1
    if c == 102:
        return i + 5 if _word(p, i, n, "false", 5) else -1
    if c == 110:
        return i + 4 if _word(p, i, n, "null", 4) else -1
    if c == 45 or 48 <= c <= 57:
        return _number(p, i, n)
    return -1


cdef inline bint _key(const unsigned char *p, Py_ssize_t a, Py_ssize_t b, const char *name,
                      Py_ssize_t k):
    # p[a:b] is a key's string with its quotes, known to hold no escape
    return b - a - 2 == k and memcmp(p + a + 1, name, k) == 0


cdef inline bint _null(const unsigned char *p, Py_ssize_t i, Py_ssize_t n):
    return _word(p, i, n, "null", 4)


cdef Py_ssize_t _member(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, Py_ssize_t *a,
                        Py_ssize_t *b):
    """At an object member (``"key": value``): its key with its quotes is ``p[a:b]``; the
    index of its value, or -1 when it is not there or its key holds an escape."""
    cdef bint esc = False
    if i >= n or p[i] != 34:
        return -1
    a[0] = i
    b[0] = _string(p, i, n, &esc)
    if b[0] < 0 or esc:
        return -1
    i = _ws(p, b[0], n)
    if i >= n or p[i] != 58:  # :
        return -1
    return _ws(p, i + 1, n)


cdef int _after(const unsigned char *p, Py_ssize_t *i, Py_ssize_t n):
    """After a member's value: 1 and ``i`` at the next member (a comma), 0 and ``i`` past the
    object's end, -1 for anything else."""
    cdef Py_ssize_t j = _ws(p, i[0], n)
    if j < n and p[j] == 44:  # ,
        i[0] = _ws(p, j + 1, n)
        return 1
    if j < n and p[j] == 125:  # }
        i[0] = j + 1
        return 0
    return -1


cdef object _text_of(object payload, const unsigned char *p, Py_ssize_t ta, Py_ssize_t tb,
                     bint escaped):
    """The string ``p[ta:tb]`` (quotes included, known valid) as ``str``; None if empty or
    not UTF-8 (the decoder then decides)."""
    if tb - ta <= 2:
        return None
    if escaped:
        try:
            return _decode_str(payload[ta:tb]) or None
        except msgspec.DecodeError:
            return None
    try:
        return PyUnicode_DecodeUTF8(<const char *>p + ta + 1, tb - ta - 2, NULL)
    except UnicodeDecodeError:
        return None


def chunk_text(payload):
    """The text of choice 0 if ``payload`` is a text-only chat.completion.chunk, else None."""
    if type(payload) is not bytes:
        return None
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef Py_ssize_t i, a, b, j, ta = -1, tb = -1
    cdef bint text_esc = False, choices = False, in_choice, in_delta
    cdef int more
    i = _ws(p, 0, n)
    if i >= n or p[i] != 123:
        return None
    i = _ws(p, i + 1, n)
    if i < n and p[i] == 125:
        return None
    while True:  # the chunk's members
        i = _member(p, i, n, &a, &b)
        if i < 0:
            return None
        if _key(p, a, b, "choices", 7):
            if choices or i >= n or p[i] != 91:
                return None
            choices = True
            i = _ws(p, i + 1, n)
            if i >= n or p[i] != 123:
                return None
            i = _ws(p, i + 1, n)
            in_choice = False
            while True:  # the choice's members
                i = _member(p, i, n, &a, &b)
                if i < 0:
                    return None
                if _key(p, a, b, "index", 5):
                    if i >= n or p[i] != 48:
                        return None
                    j = _number(p, i, n)
                    if j != i + 1:  # exactly 0
                        return None
                    i = j
                elif _key(p, a, b, "logprobs", 8) or _key(p, a, b, "finish_reason", 13):
                    if not _null(p, i, n):
                        return None
                    i += 4
                elif _key(p, a, b, "delta", 5):
                    if in_choice or i >= n or p[i] != 123:
                        return None
                    in_choice = True
                    i = _ws(p, i + 1, n)
                    in_delta = False
                    while True:  # the delta's members
                        i = _member(p, i, n, &a, &b)
                        if i < 0:
                            return None
                        if _key(p, a, b, "content", 7):
                            if in_delta or i >= n or p[i] != 34:
                                return None
                            in_delta = True
                            ta = i
                            text_esc = False
                            i = _string(p, i, n, &text_esc)
                            if i < 0:
                                return None
                            tb = i
                        elif _null(p, i, n):
                            i += 4
                        else:
                            return None
                        more = _after(p, &i, n)
                        if more < 0:
                            return None
                        if not more:
                            break
                    if not in_delta:
                        return None
                else:
                    return None
                more = _after(p, &i, n)
                if more < 0:
                    return None
                if not more:
                    i = _ws(p, i, n)
                    break
            if not in_choice or i >= n or p[i] != 93:  # one choice, with a delta
                return None
            i += 1
        elif _key(p, a, b, "usage", 5) or _key(p, a, b, "error", 5):
            if not _null(p, i, n):
                return None
            i += 4
        else:
            i = _value(p, i, n, 1)
            if i < 0:
                return None
        more = _after(p, &i, n)
        if more < 0:
            return None
        if not more:
            break
    if _ws(p, i, n) != n or not choices:  # trailing bytes, no choices
        return None
    return _text_of(payload, p, ta, tb, text_esc)



def event_text(payload):
    """The text of an Anthropic ``content_block_delta`` event whose delta is a ``text_delta``,
    read in one pass (no Structs), else None: exactly the keys ``type``, ``index`` (an
    integer) and ``delta`` once each, the delta exactly ``type`` and a non-empty ``text``.
    A chat client's stream from Claude is mostly these (helix/providers/anthropic/stream.py)."""
    if type(payload) is not bytes:
        return None
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef Py_ssize_t i, j, a, b, ta = -1, tb = -1
    cdef bint text_esc = False
    cdef int seen = 0, inner, more
    i = _ws(p, 0, n)
    if i >= n or p[i] != 123:
        return None
    i = _ws(p, i + 1, n)
    while True:  # the event's members
        i = _member(p, i, n, &a, &b)
        if i < 0:
            return None
        if _key(p, a, b, "type", 4):
            if seen & 1 or not _word(p, i, n, '"content_block_delta"', 21):
                return None
            seen |= 1
            i += 21
        elif _key(p, a, b, "index", 5):
            if seen & 2:
                return None
            seen |= 2
            j = i + 1 if i < n and p[i] == 45 else i
            j = _digits(p, j, n)
            if j < 0 or (p[i] == 48 and j > i + 1) or (p[i] == 45 and (p[i + 1] == 48)):
                return None  # an integer as JSON writes it (no leading zero, no -0)
            i = j
        elif _key(p, a, b, "delta", 5):
            if seen & 4 or i >= n or p[i] != 123:
                return None
            seen |= 4
            inner = 0
            i = _ws(p, i + 1, n)
            while True:  # the delta's members
                i = _member(p, i, n, &a, &b)
                if i < 0:
                    return None
                if _key(p, a, b, "type", 4):
                    if inner & 1 or not _word(p, i, n, '"text_delta"', 12):
                        return None
                    inner |= 1
                    i += 12
                elif _key(p, a, b, "text", 4):
                    if inner & 2 or i >= n or p[i] != 34:
                        return None
                    inner |= 2
                    ta = i
                    i = _string(p, i, n, &text_esc)
                    if i < 0:
                        return None
                    tb = i
                else:
                    return None
                more = _after(p, &i, n)
                if more < 0:
                    return None
                if not more:
                    break
            if inner != 3:
                return None
        else:
            return None
        more = _after(p, &i, n)
        if more < 0:
            return None
        if not more:
            break
    if _ws(p, i, n) != n or seen != 7:
        return None
    return _text_of(payload, p, ta, tb, text_esc)
