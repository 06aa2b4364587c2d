# cython: language_level=3
"""A response's price from its usage: the compiled twin of price_py.py.

Hand-written rather than compiled from the .py source: the point is the common case in C
-- token counts that are plain ints within 2**53 (so every conversion to a double is exact
and no difference overflows) and prices that are floats or None -- with the very same
arithmetic, in the same order, as the twin.  Anything else (an int subclass, a float count,
a count beyond 2**53) is priced by the twin.  Same results: tests/fast/test_price_parity.py.
"""

from helix._fast.price_py import price_tokens as _price_tokens_py
from helix._fast.price_py import usage_cost as _usage_cost_py

__all__ = ["price_tokens", "usage_cost"]


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object, int *) except? -1


cdef long long EXACT = 9007199254740992  # 2**53


cdef inline bint _count(object v, long long *out) except -1:
    """``v`` as a C count when it is a plain int within 2**53 (False: the twin prices it)."""
    cdef int overflow = 0
    cdef long long x
    if type(v) is not int:
        return False
    x = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow or x >= EXACT or x <= -EXACT:
        return False
    out[0] = x
    return True


cdef object _price(object info, long long input, long long output, long long cache_read,
                   long long cache_write):
    """price_py.price_tokens on C counts; ``NotImplemented`` when a price is not a float."""
    cdef double input_price, output_price, read_price, write_price, total
    if info is None:
        return None
    p = info.input_per_mtok
    if p is None:
        return None
    if type(p) is not float:
        return NotImplemented
    input_price = p
    if cache_read > input:
        cache_read = input
    if cache_write > input - cache_read:
        cache_write = input - cache_read
    p = info.output_per_mtok
    if p is None:
        if output:
            return None
        output_price = 0.0
    elif type(p) is float:
        output_price = p
    else:
        return NotImplemented
    p = info.cached_input_per_mtok
    if p is None:
        read_price = input_price
    elif type(p) is float:
        read_price = p
    else:
        return NotImplemented
    p = info.cache_write_per_mtok
    if p is None:
        write_price = input_price
    elif type(p) is float:
        write_price = p
    else:
        return NotImplemented
    total = (
        <double>(input - cache_read - cache_write) * input_price
        + <double>cache_read * read_price
        + <double>cache_write * write_price
        + <double>output * output_price
    ) / 1000000.0
    return total if total >= 0 else None


def price_tokens(info, input, output, cache_read=0, cache_write=0, reasoning=0):
    """See price_py.price_tokens."""
    cdef long long i, o, r, w
    if (_count(input, &i) and _count(output, &o) and _count(cache_read, &r)
            and _count(cache_write, &w)):
        result = _price(info, i, o, r, w)
        if result is not NotImplemented:
            return result
    return _price_tokens_py(info, input, output, cache_read, cache_write, reasoning)


cpdef object usage_cost(info, usage):
    """See price_py.usage_cost."""
    cdef long long i, o, r, w
    a = usage.input or 0
    b = usage.output or 0
    c = usage.cache_read or 0
    d = usage.cache_write or 0
    if _count(a, &i) and _count(b, &o) and _count(c, &r) and _count(d, &w):
        result = _price(info, i, o, r, w)
        if result is not NotImplemented:
            return result
    return _price_tokens_py(info, a, b, c, d)
