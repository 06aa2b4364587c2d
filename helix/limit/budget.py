"""Token and dollar budgets: reserve an estimate, settle to the real usage.

Pure arithmetic on integers, time passed in (same unit for every argument).
A budget is ``limit`` units per fixed ``period`` aligned to the epoch (a
``cost_per_day`` budget resets at 00:00 UTC), so "spent" has one meaning
across workers and instances.  The state of one budget is ``(window, used)``
where ``window = now // period``; a state from an older window counts as
empty.

* :func:`reserve` at admission: the request is admitted only if its estimate
  still fits (``used + amount <= limit``), and the estimate is counted at once
  so concurrent requests cannot all squeeze into the last few units.
* :func:`settle` when the response (or the stream) ends: the estimate is
  replaced by the real usage (``actual - estimate`` is added; 0 for a failed
  request = a release).  A response bigger than its estimate can push
  ``used`` past ``limit``: the budget is then spent, and every request is
  refused until the window ends.  If the window has rolled over since the
  reservation, the real usage is charged to the current window.
"""

from __future__ import annotations

__all__ = ["reserve", "settle"]


def reserve(window: int, used: int, now: int, period: int, limit: int, amount: int) -> tuple:
    """Try to reserve ``amount`` from a budget in state ``(window, used)``.

    Returns ``(allowed, window, used, remaining, reset, retry_after)``: the
    current window and the used amount to write back (unchanged when
    refused), the units left, the time until the window ends, and the time
    until a retry (0 when allowed).
    """
    current = now // period
    if window != current:
        used = 0
    reset = (current + 1) * period - now
    if used + amount > limit:
        left = limit - used
        return (False, current, used, left if left > 0 else 0, reset, reset)
    used += amount
    return (True, current, used, limit - used, reset, 0)


def settle(
    window: int, used: int, now: int, period: int, reserved_window: int, estimate: int,
    actual: int,
) -> tuple[int, int]:
    """Replace a reservation of ``estimate`` made in ``reserved_window`` by ``actual``.

    Returns the new ``(window, used)``.  ``actual = 0`` releases the reservation.
    """
    current = now // period
    if window != current:
        window, used = current, 0
    if reserved_window == current:
        used += actual - estimate
    else:
        used += actual
    return window, max(used, 0)
