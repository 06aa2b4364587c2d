"""GCRA (the generic cell rate algorithm): request limits without window edges.

Pure arithmetic on integers, time passed in (any unit, the same for every
argument: the local store uses nanoseconds of ``time.time_ns()``, the Redis
script microseconds of Redis's ``TIME``).  The whole state of one limit is one
number, the *theoretical arrival time* ``tat``: the instant at which the
bucket would be full again.

``limit`` requests per ``period`` means: a burst of ``limit`` when idle, then
one every ``interval = period // limit``.  A request of weight ``n`` is
admitted when, after adding it, the bucket is not more than one period ahead
of ``now``.  Unlike fixed windows there is no edge where two windows' worth
of requests can pass back to back.

``interval`` is rounded down, so for very large limits (more than about
``sqrt(period)``, ~245,000 a minute with nanoseconds) one extra request per
period may pass; never fewer than the limit.
"""

from __future__ import annotations

__all__ = ["admit", "interval", "release"]


def interval(period: int, limit: int) -> int:
    """The emission interval: time one request occupies in the bucket (>= 1)."""
    return max(period // limit, 1)


def admit(tat: int, now: int, period: int, limit: int, n: int = 1) -> tuple:
    """Try to take ``n`` requests from a ``limit`` per ``period`` bucket whose state is ``tat``.

    Returns ``(allowed, new_tat, remaining, reset, retry_after)``: the state to
    write back (unchanged when refused), the requests that would still pass now,
    the time until the bucket is full again, and the time until this request
    could pass (0 when allowed).  A plain tuple: this runs on every request.
    """
    t = period // limit or 1
    if tat < now:
        tat = now
    new = tat + n * t
    ahead = new - now
    if ahead > period:
        backlog = tat - now
        remaining = (period - backlog) // t if backlog < period else 0
        return (False, tat, remaining if remaining > 0 else 0, backlog, ahead - period)
    return (True, new, (period - ahead) // t, ahead, 0)


def release(tat: int, period: int, limit: int, n: int = 1) -> int:
    """Give ``n`` admitted requests back (an admission undone); the new ``tat``."""
    return tat - n * interval(period, limit)
