"""The admission of a lone request limit on the local shared table: the ``admit`` phase's
common case in one call.

Single source: this file runs as plain Python, and the build compiles the very same
file with Cython as ``helix._fast.gate_c`` (``gate_c.py`` is a link to it, ``gate_c.pxd``
adds C types), so the two cannot drift.

When ``rate_limits`` sets one request limit (``global: {requests_per_minute: N}``) and
nothing else (no per-user, per-team or per-key limits, no token or cost limits, no queue,
the local backend), every request is one GCRA decision on one row of the table
(``helix/limit/local.py``; the arithmetic is ``helix/limit/gcra.py``'s).  The general path
builds the check list, a ``Result`` and the headers through a dozen calls, ≈ 28,000
instructions per request; here the phase is one method that locks the row it remembers,
decides, writes, unlocks and appends the ``x-ratelimit-*`` headers.  A refusal, a row
taken over by another scope (eviction) or a table without the row yet goes back to the
store's own code (``refused`` / ``store._row``): the decision is the same one.
"""

from math import ceil

# helix/limit/local.py's row layout (tests/limit/test_lone_limit.py holds them equal).
COLS = 20
LOCK = 0
HASH = 1
TOUCHED = 2
STATE = 4

_NS = 1_000_000_000
_LIMIT = b"x-ratelimit-limit-requests"
_REMAINING = b"x-ratelimit-remaining-requests"
_RESET = b"x-ratelimit-reset-requests"


class LoneLimit:
    """``admit(ctx)`` for one request limit (``check``) of one scope on a ``LocalStore``.

    ``refused(ctx, remaining, reset_s, retry_s)`` is called (with the headers already
    added) when the limit refuses; it raises the 429.  ``reset_bytes`` formats a reset
    (policy's OpenAI format); ``reset_ms`` is its table for those under a second.
    """

    def __init__(self, store, check, refused, reset_bytes, reset_ms):
        self.store = store
        self.check = check
        self.view = store.view
        self.locks = store.locks
        self.clock = store.clock
        self.scope = check.scope
        self.hash = store._hash(check.scope)
        self.period = check.period_ns
        self.interval = check.period_ns // check.limit or 1
        self.offset = STATE + 2 * check.unit
        self.limit_header = (_LIMIT, check.limit_b)
        self.refused = refused
        self.reset_bytes = reset_bytes
        self.reset_ms = reset_ms
        self.base = -1

    def _lock_row(self, now):
        """Lock the scope's row and return its first cell: the remembered one while it
        still holds the scope, else the store's lookup (which may claim a row)."""
        base = self.base
        if base >= 0:
            self.locks.acquire(base + LOCK)
            if self.view[base + HASH] == self.hash:
                return base
            self.locks.release(base + LOCK)
        r = self.store._row(self.scope, now)
        if r < 0:  # taken over in between: the general lookup retries until it holds
            r = self.store._rows([self.check], now)[self.scope]
        base = r * COLS
        self.base = base
        return base

    def admit(self, ctx):
        now = self.clock()
        base = self._lock_row(now)
        view = self.view
        idx = base + self.offset
        period = self.period
        t = self.interval
        try:
            tat = view[idx]
            if tat < now:
                tat = now
            new = tat + t
            ahead = new - now
            ok = ahead <= period
            if ok:
                view[idx] = new
                view[base + TOUCHED] = now
                left = (period - ahead) // t
                until = ahead
            else:
                backlog = tat - now
                left = (period - backlog) // t if backlog < period else 0
                if left < 0:
                    left = 0
                until = backlog
        finally:
            self.locks.release(base + LOCK)
        reset = until / _NS
        headers = ctx.response_headers
        headers.append(self.limit_header)
        headers.append((_REMAINING, b"%d" % left))
        if 0 < reset < 1:
            headers.append((_RESET, self.reset_ms[ceil(reset * 1000)]))
        else:
            headers.append((_RESET, self.reset_bytes(reset)))
        if not ok:
            self.refused(ctx, left, reset, (ahead - period) / _NS)
