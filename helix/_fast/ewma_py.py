"""Shared PeakEWMA latency table: the balancer's hot read/update path.

Single source: this file runs as plain Python, and the build compiles the very
same file with Cython as ``helix._fast.ewma_c`` (``ewma_c.py`` is a link to
it, ``ewma_c.pxd`` adds C types), so the two cannot drift.

Layout (a flat float64 view of a shared-memory region): one *block* per worker
slot, and in each block one cell of ``COLS`` doubles per deployment::

    cell(row, dep) = row * stride + dep * COLS      stride = ndeps*COLS rounded up to 8
    col 0  value     PeakEWMA latency (seconds) as of ``stamp``
    col 1  stamp     time of the sample that produced ``value`` (0: never sampled)
    col 2  inflight  requests this worker has in flight to the deployment

Each worker writes only its own block (single writer, no locks, no atomics).
A reader folds the blocks: the EWMA is the *newest* block's value (a writer
folds before it writes, so the newest block always holds the estimate as if
one cell were updated by every worker in turn); in-flight is the sum.

PeakEWMA (time constant ``tau``): a sample above the estimate replaces it at
once; a lower one is blended in with weight ``1 - exp(-dt/tau)``, dt the time
since the previous sample.  Read at ``now``, the estimate is decayed by
``exp(-(now - stamp)/tau)``, so an idle deployment's cost drifts down and it
is tried again.  Never-sampled deployments read 0 (explored first).
"""

from math import exp

COLS = 4
VALUE = 0
STAMP = 1
INFLIGHT = 2


def stride_for(ndeps):
    """Doubles per worker block (a whole number of 64-byte lines)."""
    return (ndeps * COLS + 7) // 8 * 8


class LatencyTable:
    def __init__(self, view, rows, ndeps, tau, floor):
        self.view = view
        self.rows = rows
        self.ndeps = ndeps
        self.stride = stride_for(ndeps)
        self.tau = tau
        self.floor = floor

    def _newest(self, dep):
        # Offset of the most recently stamped cell for ``dep`` (-1: none).
        view = self.view
        best = -1
        best_t = 0.0
        off = dep * COLS
        for _i in range(self.rows):
            t = view[off + STAMP]
            if t > best_t:
                best_t = t
                best = off
            off += self.stride
        return best

    def estimate(self, dep, now):
        """The folded PeakEWMA latency in seconds, decayed to ``now`` (0 if never sampled)."""
        off = self._newest(dep)
        if off < 0:
            return 0.0
        view = self.view
        t = view[off + STAMP]
        v = view[off + VALUE]
        if now > t:
            v = v * exp((t - now) / self.tau)
        return v

    def inflight(self, dep):
        view = self.view
        total = 0.0
        off = dep * COLS + INFLIGHT
        for _i in range(self.rows):
            total += view[off]
            off += self.stride
        return total

    def cost(self, dep, now):
        """(estimate + floor) * (in-flight + 1): what power-of-two-choices compares."""
        view = self.view
        best_t = 0.0
        v = 0.0
        total = 0.0
        off = dep * COLS
        for _i in range(self.rows):
            t = view[off + STAMP]
            if t > best_t:
                best_t = t
                v = view[off + VALUE]
            total += view[off + INFLIGHT]
            off += self.stride
        if best_t > 0.0 and now > best_t:
            v = v * exp((best_t - now) / self.tau)
        if total < 0.0:  # a worker slot reset mid-request
            total = 0.0
        return (v + self.floor) * (total + 1.0)

    def choose(self, a, b, now):
        """Of deployments ``a`` and ``b``, the one with the lower cost (``a`` on a tie)."""
        if self.cost(b, now) < self.cost(a, now):
            return b
        return a

    def observe(self, row, dep, now, sample):
        """Fold the newest estimate, apply one PeakEWMA step, write it to ``row``'s cell."""
        view = self.view
        off = self._newest(dep)
        if off < 0:
            v = sample
        else:
            t = view[off + STAMP]
            v = view[off + VALUE]
            if sample <= v:
                w = exp((t - now) / self.tau) if now > t else 1.0
                v = v * w + sample * (1.0 - w)
            else:
                v = sample
        mine = row * self.stride + dep * COLS
        # Value first, then stamp: a reader that picks this cell by its new
        # stamp already sees the new value.
        view[mine + VALUE] = v
        view[mine + STAMP] = now if now > 0.0 else 1e-9
        return v

    def add(self, row, dep, delta):
        """Change ``row``'s in-flight count for ``dep`` by ``delta`` (single writer)."""
        off = row * self.stride + dep * COLS + INFLIGHT
        self.view[off] = self.view[off] + delta

    def clear_row(self, row):
        """Forget a worker block (a new worker taking over a slot)."""
        view = self.view
        base = row * self.stride
        for i in range(self.stride):
            view[base + i] = 0.0


# --- the health table's request window ---------------------------------------------------

H_COLS = 8  # helix/routing/health.py: a deployment's shared health row (STATE, ..., FAILS, ...)
W_COLS = 8  # a window cell: BUCKET, REQ, ERR, PREV_REQ, PREV_ERR, pad...
B_BUCKET = 0
B_REQ = 1
B_ERR = 2
B_PREV_REQ = 3
B_PREV_ERR = 4


class RequestWindow:
    """One worker's attempt counts for the error-rate breaker, and the check that lets a
    success on a healthy deployment skip the shared health row (``HealthTable.record``).

    ``window``: the flat float64 window table, one ``W_COLS`` cell per (worker row,
    deployment), counting requests and errors in half-window buckets (the current and the
    previous half: ``HealthTable.window_counts`` folds them).  ``health``: the shared health
    rows (``H_COLS`` per deployment; col 0 the state, 0.0 closed, col 2 the consecutive
    failures).  ``half``: half the breaker's window in seconds (0: one bucket forever).
    """

    def __init__(self, window, health, row, ndeps, half):
        self.window = window
        self.health = health
        self.base = row * ndeps * W_COLS
        self.half = half

    def count(self, dep, now, error):
        """One finished attempt into this worker's bucket for ``dep``."""
        w = self.window
        bucket = 0.0
        if self.half > 0.0:
            k = int(now / self.half)
            bucket = float(k)
        b = self.base + dep * W_COLS
        if w[b + B_BUCKET] != bucket:
            if w[b + B_BUCKET] == bucket - 1.0:
                w[b + B_PREV_REQ] = w[b + B_REQ]
                w[b + B_PREV_ERR] = w[b + B_ERR]
            else:
                w[b + B_PREV_REQ] = 0.0
                w[b + B_PREV_ERR] = 0.0
            w[b + B_REQ] = 0.0
            w[b + B_ERR] = 0.0
            w[b + B_BUCKET] = bucket
        w[b + B_REQ] += 1.0
        if error:
            w[b + B_ERR] += 1.0

    def settled(self, dep, now, success):
        """Count the attempt; True when nothing shared has to change: a success on a
        deployment whose row is closed with no failures counted (the common case)."""
        self.count(dep, now, not success)
        if not success:
            return False
        h = self.health
        b = dep * H_COLS
        return h[b] == 0.0 and h[b + 2] == 0.0


# --- the bookkeeping around each attempt -----------------------------------------------------

SUCCESS = 0  # helix/routing/health.py's SUCCESS event


class AttemptBook:
    """``Balancer.begin`` and ``Balancer.end`` (helix/routing/balancer.py): one worker's
    bookkeeping around each attempt, in one call each.  ``begin``: the deployment's
    in-flight count up.  ``end``: in-flight down, the latency sample (when there is one),
    and the health event (``event`` >= 0; -1: no verdict) counted in ``window``; only when
    the shared health row may change is ``change(dep, event, now, retry_after)`` (the
    ``HealthTable``'s) called.  A deployment outside the tables (index -1, or beyond them) is
    not tracked.
    """

    def __init__(self, latency, window, change, row, ndeps):
        self.latency = latency
        self.window = window
        self.change = change
        self.row = row
        self.ndeps = ndeps

    def begin(self, dep):
        i = dep.index
        if 0 <= i < self.ndeps:
            self.latency.add(self.row, i, 1.0)

    def end(self, dep, event, now, sample=None, retry_after=None):
        """Close an attempt: in-flight back down, the latency sample, the health event."""
        i = dep.index
        if i < 0 or i >= self.ndeps:
            return
        self.latency.add(self.row, i, -1.0)
        if sample is not None:
            self.latency.observe(self.row, i, now, sample)
        if event >= 0 and not self.window.settled(i, now, event == SUCCESS):
            self.change(i, event, now, retry_after)
