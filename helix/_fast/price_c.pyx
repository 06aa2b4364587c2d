# cython: language_level=3
"""A response's price from its usage: the compiled twin of price_py.py.

Hand-written rather than compiled from the .py source: the point is the common case in C
-- token counts that are plain ints within 2**53 (so every conversion to a double is exact
and no difference overflows) and prices that are floats or None -- with the very same
arithmetic, in the same order, as the twin.  Anything else (an int subclass, a float count,
a count beyond 2**53) is priced by the twin.  Same results: tests/fast/test_price_parity.py.
"""

from helix._fast.slots cimport Fields, field, fields_init

from helix._fast.price_py import price_tokens as _price_tokens_py

__all__ = ["price_tokens", "usage_cost"]


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object, int *) except? -1


cdef long long EXACT = 9007199254740992  # 2**53

# The usage's counts and the model's prices, read by offset (helix/_fast/slots.pxd).
cdef Fields _USAGE, _INFO
fields_init(&_USAGE, ("input", "output", "cache_read", "cache_write"))
fields_init(&_INFO, ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok",
                     "cache_write_per_mtok"))


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


cdef inline int _rate(object p, double missing, double *out) except -1:
    """A price per million tokens into ``out`` (``missing`` for None); 1 when it is not a
    float (the twin prices it), else 0."""
    if p is None:
        out[0] = missing
    elif type(p) is float:
        out[0] = p
    else:
        return 1
    return 0


cdef object _price(object info, long long input, long long output, long long cache_read,
                   long long cache_write):
    """price_py.price_tokens on C counts; ``NotImplemented`` when a price is not a float."""
    cdef double input_price, output_price, read_price, write_price, total
    if info is None:
        return None
    p = field(&_INFO, info, 0)
    if p is None:
        return None
    if type(p) is not float:
        return NotImplemented
    input_price = p
    if cache_read > input:
        cache_read = input
    if cache_write > input - cache_read:
        cache_write = input - cache_read
    p = field(&_INFO, info, 1)
    if p is None and output:
        return None
    if (_rate(p, 0.0, &output_price)
            or _rate(field(&_INFO, info, 2), input_price, &read_price)
            or _rate(field(&_INFO, info, 3), input_price, &write_price)):
        return NotImplemented
    total = (
        <double>(input - cache_read - cache_write) * input_price
        + <double>cache_read * read_price
        + <double>cache_write * write_price
        + <double>output * output_price
    ) / 1000000.0
    return total if total >= 0 else None


cdef object _priced(info, input, output, cache_read, cache_write, reasoning):
    """The counts priced in C when they are plain ints within 2**53, else by the twin."""
    cdef long long i, o, r, w
    if (_count(input, &i) and _count(output, &o) and _count(cache_read, &r)
            and _count(cache_write, &w)):
        result = _price(info, i, o, r, w)
        if result is not NotImplemented:
            return result
    return _price_tokens_py(info, input, output, cache_read, cache_write, reasoning)


def price_tokens(info, input, output, cache_read=0, cache_write=0, reasoning=0):
    """See price_py.price_tokens."""
    return _priced(info, input, output, cache_read, cache_write, reasoning)


cpdef object usage_cost(info, usage):
    """See price_py.usage_cost."""
    return _priced(info, field(&_USAGE, usage, 0) or 0, field(&_USAGE, usage, 1) or 0,
                   field(&_USAGE, usage, 2) or 0, field(&_USAGE, usage, 3) or 0, 0)
