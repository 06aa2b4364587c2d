"""Passive deployment health: a circuit breaker fed by live traffic only.

No probes are ever sent (they would cost money): every finished attempt is an
event for its deployment, and the state machine below turns events into
states.  The transitions are pure functions of ``(state, event, now)`` so the
unit tests drive them with plain numbers; :class:`HealthTable` keeps the
state in shared memory so every worker sees every worker's verdicts.

States (what ``/status`` shows)::

    healthy    traffic flows
    cooling    a 429 / 529 (until Retry-After or the provider's reset header),
               or a connection failure (a short cooldown); back to healthy by time
    open       too many consecutive failures, or an error rate over the window:
               no traffic for ``cooldown``
    half-open  the cooldown is over: one trial request is let through; its
               success closes the circuit, its failure opens it again

Events: ``SUCCESS`` (the deployment answered, even with a client's 4xx),
``FAILURE`` (5xx, read timeout, broken stream, 401/403), ``CONNECT`` (connect
refused / timed out / TLS), ``RATE_LIMITED`` (429 / 529).

Shared memory (planned by :func:`plan_shm` in the master, before fork):

* ``health`` -- one 64-byte row per deployment (``STATE, UNTIL, FAILS,
  TRIAL_AT, CHANGED_AT, REASON``), read lock-free by every worker on every
  selection, written under one process-shared lock, and only when something
  changes (a failure, the first success after failures, a trial claim).
* ``health_window`` -- per worker slot and deployment, request and error
  counts of the current and previous half-window (single writer, no lock);
  folded only when a failure has to decide whether the error rate trips.
  Counted by ``helix._fast.RequestWindow`` (``helix/_fast/ewma_py.py``, compiled),
  which also answers the common case -- a success on a closed row with no failures
  -- without touching anything shared.
* ``latency`` -- the PeakEWMA table (layout in ``helix/_fast/ewma_py.py``).
* ``rr`` -- one round-robin counter per deployment group (``fetch_add``).
"""

from __future__ import annotations

from typing import NamedTuple

from helix._fast import RequestWindow
from helix.master.shm import process_lock

__all__ = [
    "CONNECT",
    "FAILURE",
    "RATE_LIMITED",
    "STATE_NAMES",
    "SUCCESS",
    "Health",
    "HealthPolicy",
    "HealthTable",
    "effective",
    "plan_shm",
    "transition",
]

# Stored states.
CLOSED = 0
OPEN = 1
HALF_OPEN = 2  # a trial is in flight (claimed at TRIAL_AT)
COOLING = 3
# Effective states (what a reader sees at ``now``).
HEALTHY = 0
E_OPEN = 1
E_HALF_OPEN = 2
E_COOLING = 3
STATE_NAMES = {HEALTHY: "healthy", E_OPEN: "open", E_HALF_OPEN: "half-open", E_COOLING: "cooling"}

# Events.
SUCCESS = 0
FAILURE = 1
CONNECT = 2
RATE_LIMITED = 3

# Why the state last changed.
R_NONE = 0
R_FAILURES = 1
R_ERROR_RATE = 2
R_RATE_LIMITED = 3
R_CONNECT = 4
R_TRIAL_FAILED = 5
REASON_NAMES = {
    R_NONE: None,
    R_FAILURES: "consecutive_failures",
    R_ERROR_RATE: "error_rate",
    R_RATE_LIMITED: "rate_limited",
    R_CONNECT: "connect_error",
    R_TRIAL_FAILED: "trial_failed",
}


class HealthPolicy(NamedTuple):
    """Thresholds (``load_balancing.health`` in config; seconds for durations)."""

    consecutive_failures: int = 5
    error_rate: float = 0.5
    min_requests: int = 20
    window: float = 30.0
    cooldown: float = 30.0
    connect_cooldown: float = 2.0
    rate_limit_cooldown: float = 5.0  # a 429 / 529 without a usable reset header
    max_rate_limit_cooldown: float = 300.0
    trial_timeout: float = 60.0  # a half-open trial that never reports frees the slot


class Health(NamedTuple):
    state: int = CLOSED
    until: float = 0.0
    fails: int = 0
    trial_at: float = 0.0
    changed_at: float = 0.0
    reason: int = R_NONE


def effective(h: Health, now: float, policy: HealthPolicy) -> int:
    """The state a reader sees at ``now`` (cooldowns end by time, not by event)."""
    s = h.state
    if s == CLOSED:
        return HEALTHY
    if s == COOLING:
        return E_COOLING if now < h.until else HEALTHY
    if s == OPEN:
        return E_OPEN if now < h.until else E_HALF_OPEN
    return E_HALF_OPEN


def available(h: Health, now: float, policy: HealthPolicy) -> int:
    """0: send traffic; 1: available only as the half-open trial (claim it); 2: not available."""
    s = h.state
    if s == CLOSED:
        return 0
    if s == COOLING:
        return 0 if now >= h.until else 2
    if s == OPEN:
        return 1 if now >= h.until else 2
    # HALF_OPEN: the trial slot is taken until it reports or times out.
    return 1 if now - h.trial_at >= policy.trial_timeout else 2


def claim(h: Health, now: float, policy: HealthPolicy) -> Health | None:
    """Take the half-open trial slot; None when it is not free."""
    if available(h, now, policy) != 1:
        return None
    return h._replace(state=HALF_OPEN, trial_at=now, changed_at=now)


def transition(
    h: Health,
    event: int,
    now: float,
    policy: HealthPolicy,
    *,
    retry_after: float | None = None,
    rate_tripped: bool = False,
) -> Health:
    """The state after ``event`` at ``now``.

    ``retry_after``: seconds from the provider's Retry-After / reset header
    (RATE_LIMITED).  ``rate_tripped``: the caller folded the window and the
    error rate is over the threshold (FAILURE / CONNECT).
    """
    if event == SUCCESS:
        if h.state == CLOSED and h.fails == 0:
            return h
        if h.state == OPEN and now < h.until:
            # A request sent before the circuit opened: it does not close it.
            return h
        if h.state == COOLING and now < h.until:
            return h._replace(fails=0)
        return Health(CLOSED, 0.0, 0, 0.0, now, R_NONE)
    if event == RATE_LIMITED:
        wait = policy.rate_limit_cooldown if retry_after is None else retry_after
        wait = min(max(wait, 0.0), policy.max_rate_limit_cooldown)
        until = now + wait
        if h.state == OPEN and h.until >= until:
            return h
        return Health(COOLING, until, h.fails, 0.0, now, R_RATE_LIMITED)
    # FAILURE or CONNECT
    fails = h.fails + 1
    if h.state == HALF_OPEN or (h.state == OPEN and now >= h.until):
        return Health(OPEN, now + policy.cooldown, fails, 0.0, now, R_TRIAL_FAILED)
    if h.state == OPEN:
        return h._replace(fails=fails)
    if fails >= policy.consecutive_failures:
        return Health(OPEN, now + policy.cooldown, fails, 0.0, now, R_FAILURES)
    if rate_tripped:
        return Health(OPEN, now + policy.cooldown, fails, 0.0, now, R_ERROR_RATE)
    if event == CONNECT:
        until = max(now + policy.connect_cooldown, h.until if h.state == COOLING else 0.0)
        return Health(COOLING, until, fails, 0.0, now, R_CONNECT)
    return h._replace(fails=fails)


# --- shared memory ------------------------------------------------------------------------

HEALTH_TABLE = "health"
WINDOW_TABLE = "health_window"
LATENCY_TABLE = "latency"
RR_TABLE = "rr"
# The same constants are in helix/_fast/ewma_py.py (RequestWindow);
# tests/fast/test_window_parity.py holds them equal.
H_COLS = 8  # STATE, UNTIL, FAILS, TRIAL_AT, CHANGED_AT, REASON, pad, pad
W_COLS = 8  # BUCKET, REQ, ERR, PREV_REQ, PREV_ERR, pad...
B_BUCKET, B_REQ, B_ERR, B_PREV_REQ, B_PREV_ERR = range(5)

# Made in the master by plan_shm (before fork), inherited by every worker.
_LOCK = None


def deployment_capacity(config) -> int:
    """Rows reserved per table: the configured deployments, with room for reloads."""
    n = sum(len(p.models) for p in config.providers)
    return max(64, 2 * n)


def plan_shm(layout, config, capacity: int) -> None:
    """Reserve the balancer's tables before fork (called through ``helix/tables.py``)."""
    from helix._fast.ewma_py import stride_for

    global _LOCK
    ndeps = deployment_capacity(config)
    layout.alloc(HEALTH_TABLE, rows=ndeps, cols=H_COLS, dtype="d")
    layout.alloc(WINDOW_TABLE, rows=capacity * ndeps, cols=W_COLS, dtype="d")
    layout.alloc(LATENCY_TABLE, rows=capacity, cols=stride_for(ndeps), dtype="d")
    layout.alloc(RR_TABLE, rows=ndeps, cols=1, dtype="Q")
    _LOCK = process_lock()


class HealthTable:
    """Health rows of every deployment, shared by all workers.

    ``view``/``window`` are flat float64 views (shared memory, or private
    buffers for a single process).  ``row`` is this worker's slot.
    """

    __slots__ = ("counts", "lock", "ndeps", "policy", "row", "rows", "view", "window")

    def __init__(self, view, window, ndeps: int, rows: int, row: int, policy: HealthPolicy,
                 lock=None) -> None:
        self.view = view
        self.window = window
        self.ndeps = ndeps
        self.rows = rows
        self.row = row
        self.policy = policy
        self.lock = lock if lock is not None else process_lock()
        # This worker's window counts and the lock-free "healthy stays healthy" check, in C
        # when the accelerators are built (helix/_fast/ewma_py.py).
        self.counts = RequestWindow(window, view, row, ndeps, policy.window / 2.0)

    def clear_row(self) -> None:
        base = self.row * self.ndeps * W_COLS
        for i in range(self.ndeps * W_COLS):
            self.window[base + i] = 0.0

    def read(self, dep: int) -> Health:
        v = self.view
        b = dep * H_COLS
        return Health(int(v[b]), v[b + 1], int(v[b + 2]), v[b + 3], v[b + 4], int(v[b + 5]))

    def _write(self, dep: int, h: Health) -> None:
        v = self.view
        b = dep * H_COLS
        v[b + 1] = h.until
        v[b + 2] = float(h.fails)
        v[b + 3] = h.trial_at
        v[b + 4] = h.changed_at
        v[b + 5] = float(h.reason)
        v[b] = float(h.state)  # last: a lock-free reader sees the new until with it

    def available(self, dep: int, now: float) -> int:
        """Hot path: 0 ok, 1 half-open trial to claim, 2 unavailable."""
        if self.view[dep * H_COLS] == 0.0:
            return 0
        return available(self.read(dep), now, self.policy)

    def claim(self, dep: int, now: float) -> bool:
        if not self.lock.acquire(timeout=0.05):
            return False
        try:
            h = claim(self.read(dep), now, self.policy)
            if h is None:
                return False
            self._write(dep, h)
            return True
        finally:
            self.lock.release()

    def window_counts(self, dep: int, now: float) -> tuple[float, float]:
        """(requests, errors) over the last window, summed over every worker."""
        half = self.policy.window / 2.0
        cur = float(int(now / half)) if half > 0 else 0.0
        w = self.window
        req = err = 0.0
        stride = self.ndeps * W_COLS
        b = dep * W_COLS
        for _ in range(self.rows):
            bucket = w[b + B_BUCKET]
            if bucket == cur:
                req += w[b + B_REQ] + w[b + B_PREV_REQ]
                err += w[b + B_ERR] + w[b + B_PREV_ERR]
            elif bucket == cur - 1.0:
                req += w[b + B_REQ]
                err += w[b + B_ERR]
            b += stride
        return req, err

    def record(self, dep: int, event: int, now: float, retry_after: float | None = None) -> None:
        """One finished attempt.  Lock-free unless the shared row has to change."""
        if not self.counts.settled(dep, now, event == SUCCESS):
            self.change(dep, event, now, retry_after)

    def change(self, dep: int, event: int, now: float, retry_after: float | None = None) -> None:
        """The shared half of :meth:`record`, once ``counts.settled`` (which counted the
        attempt) said the row may change: decide under the lock.  The balancer calls the
        two halves itself, so the common case is one C call."""
        tripped = False
        if event in (FAILURE, CONNECT):
            req, err = self.window_counts(dep, now)
            p = self.policy
            tripped = req >= p.min_requests and err >= p.error_rate * req
        if not self.lock.acquire(timeout=0.05):
            return  # health is advisory: never stall a request on it
        try:
            h = self.read(dep)
            new = transition(h, event, now, self.policy, retry_after=retry_after,
                             rate_tripped=tripped)
            if new != h:
                self._write(dep, new)
        finally:
            self.lock.release()

    def status(self, dep: int, now: float) -> dict:
        h = self.read(dep)
        state = effective(h, now, self.policy)
        left = max(0.0, h.until - now) if state in (E_OPEN, E_COOLING) else 0.0
        req, err = self.window_counts(dep, now)
        return {
            "state": STATE_NAMES[state],
            "reason": REASON_NAMES.get(h.reason) if state != HEALTHY else None,
            "consecutive_failures": h.fails,
            "cooldown_left_s": round(left, 3),
            "window_requests": int(req),
            "window_errors": int(err),
            "error_rate": round(err / req, 4) if req else 0.0,
        }
