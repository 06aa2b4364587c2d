"""Pure choice functions: candidates in, one index out; randomness passed in.

Each takes the *allowed* positions (into the model's candidate list) and
returns one of them.  Nothing here touches a clock, shared memory or I/O, so
the tests call them with seeded random numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["cheapest", "p2c", "round_robin", "weighted"]


def p2c(allowed: Sequence[int], keys: Sequence[int], choose: Callable[[int, int], int],
        rnd: Callable[[], float]) -> int:
    """Power of two choices: two distinct random candidates, the cheaper wins.

    ``keys[i]`` is candidate i's row in the latency table; ``choose(ka, kb)``
    returns the cheaper key (``ka`` on a tie).  With two candidates both are
    compared (no randomness needed).
    """
    n = len(allowed)
    if n == 1:
        return allowed[0]
    if n == 2:
        a, b = allowed
    else:
        i = int(rnd() * n)
        j = int(rnd() * (n - 1))
        if j >= i:
            j += 1
        a, b = allowed[i], allowed[j]
    return a if choose(keys[a], keys[b]) == keys[a] else b


def weighted(allowed: Sequence[int], weights: Sequence[float], rnd: Callable[[], float]) -> int:
    """A random candidate with probability proportional to its weight.

    Weight 0 takes traffic only when every allowed candidate weighs 0.
    """
    total = 0.0
    for i in allowed:
        total += weights[i]
    if total <= 0.0:
        return allowed[int(rnd() * len(allowed))]
    x = rnd() * total
    for i in allowed:
        x -= weights[i]
        if x < 0.0:
            return i
    for i in reversed(allowed):  # rounding left x at 0.0: the last positive weight
        if weights[i] > 0.0:
            return i
    return allowed[-1]


def round_robin(allowed: Sequence[int], n: int, ticket: int) -> int:
    """Position ``ticket % n`` of the full list, or the next allowed one after it."""
    start = ticket % n
    best = None
    for i in allowed:
        d = (i - start) % n
        if best is None or d < best[0]:
            best = (d, i)
    assert best is not None
    return best[1]


def cheapest(allowed: Sequence[int], prices: Sequence[float | None]) -> list[int]:
    """The allowed candidates sharing the lowest known price (all of them when none is known).

    Unknown prices (None) rank after every known one.
    """
    low = None
    for i in allowed:
        p = prices[i]
        if p is not None and (low is None or p < low):
            low = p
    if low is None:
        return list(allowed)
    eps = abs(low) * 1e-9
    return [i for i in allowed if prices[i] is not None and prices[i] <= low + eps]
