"""A response's price from its usage: the pure-Python twin of price_c.pyx.

``helix/routing/models.py`` owns the price table and :func:`helix.routing.models.cost`
(which takes OpenAI's usage dict too); this is the arithmetic, and the every-answer case of
a :class:`~helix.schema.usage.Usage` struct, which the compiled twin does in C.
"""

from __future__ import annotations

__all__ = ["price_tokens", "usage_cost"]


def price_tokens(info, input, output, cache_read=0, cache_write=0, reasoning=0):
    """USD for one response's tokens; None when a needed price is unknown.

    ``input`` and ``output`` are totals as OpenAI reports them: ``input`` includes
    the ``cache_read`` and ``cache_write`` tokens, ``output`` includes the
    ``reasoning`` tokens (billed as output by every provider, so they need no
    price of their own).  Uncached input is priced at the input price, cache reads
    at the cached price, cache writes at the cache-write price (each the input
    price when the model has none).
    """
    if info is None:
        return None
    input_price = info.input_per_mtok
    if input_price is None:
        return None
    if cache_read > input:
        cache_read = input
    if cache_write > input - cache_read:
        cache_write = input - cache_read
    output_price = info.output_per_mtok
    if output_price is None:
        if output:
            return None
        output_price = 0.0
    read_price = info.cached_input_per_mtok
    if read_price is None:
        read_price = input_price
    write_price = info.cache_write_per_mtok
    if write_price is None:
        write_price = input_price
    total = (
        (input - cache_read - cache_write) * input_price
        + cache_read * read_price
        + cache_write * write_price
        + output * output_price
    ) / 1_000_000
    return total if total >= 0 else None


def usage_cost(info, usage):
    """USD for a ``Usage`` struct's tokens at ``info``'s prices; None when unknown."""
    return price_tokens(info, usage.input or 0, usage.output or 0, usage.cache_read or 0,
                        usage.cache_write or 0)
