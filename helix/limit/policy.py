"""What is limited, for whom, and how a decision is shown to the client.

Built once per worker from config; nothing here does I/O.  A *scope* is one
identity that limits apply to (``g`` global, ``t:<team>``, ``u:<user>``,
``k:<key name>``); a *check* is one configured unit of one scope.  Both
stores (``local``, ``redis``) take the same checks and answer with the same
per-check numbers, in seconds-free integer units:

* requests (GCRA): weight 1;
* tokens (budget): the request's estimate, in tokens;
* dollars (budget): the request's estimate, in nano-USD (1e-9 USD), so every
  budget is an integer counter.
"""

from __future__ import annotations

import math

from helix.errors import ErrorKind, HelixError

__all__ = [
    "COST",
    "REQUESTS",
    "TOKENS",
    "UNITS",
    "Check",
    "compile_limits",
    "format_reset",
]

REQUESTS, TOKENS, COST = 0, 1, 2
NANO = 1_000_000_000

# (config field, kind, period in seconds); the index is the unit's id in both stores.
UNITS = (
    ("requests_per_minute", REQUESTS, 60),
    ("requests_per_hour", REQUESTS, 3600),
    ("requests_per_day", REQUESTS, 86400),
    ("tokens_per_minute", TOKENS, 60),
    ("tokens_per_hour", TOKENS, 3600),
    ("tokens_per_day", TOKENS, 86400),
    ("cost_per_hour", COST, 3600),
    ("cost_per_day", COST, 86400),
)
SCOPE_NAMES = {"g": "global", "t": "per_team", "u": "per_user", "k": "per_key"}


class Check:
    """One limit of one scope for one request: ``limit`` of ``UNITS[unit]`` for ``scope``."""

    __slots__ = ("kind", "limit", "limit_b", "period", "period_ns", "scope", "unit")

    def __init__(self, scope: str, unit: int, limit: int) -> None:
        self.scope = scope
        self.unit = unit
        self.limit = limit
        self.kind = UNITS[unit][1]
        self.period = UNITS[unit][2]
        self.period_ns = self.period * NANO
        self.limit_b = b"%d" % limit  # for the x-ratelimit-limit-* header

    def __repr__(self) -> str:
        return f"Check({self.scope!r}, {UNITS[self.unit][0]}, {self.limit})"


def compile_limits(spec) -> tuple[tuple[int, int], ...]:
    """A ``LimitSpec`` -> ``((unit, integer limit), ...)`` for the units it sets."""
    if spec is None:
        return ()
    out = []
    for unit, (field, kind, _) in enumerate(UNITS):
        value = getattr(spec, field)
        if value is None:
            continue
        out.append((unit, round(value * NANO) if kind == COST else int(value)))
    return tuple(out)


RESET_MS = tuple(b"%dms" % i for i in range(1001))  # reset_bytes' sub-second texts


def reset_bytes(seconds: float) -> bytes:
    """:func:`format_reset` as header bytes; sub-second values from a table."""
    if 0 < seconds < 1:
        return RESET_MS[max(math.ceil(seconds * 1000), 1)]
    return format_reset(seconds).encode()


def format_reset(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 1)}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 100) / 100:g}s"
    whole = math.ceil(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m}m{s}s" if h else f"{m}m{s}s"


class Result:
    """A store's answer for a list of checks.

    ``remaining[i]`` and ``reset[i]`` (seconds) describe check ``i`` after the
    decision; ``failed`` is the index of the first refusing check (-1 when all
    passed); ``retry_after`` is in seconds; ``windows[i]`` is the budget window
    a reservation was made in (for :meth:`Store.settle`).
    """

    __slots__ = ("allowed", "failed", "full", "queued", "remaining", "reset", "retry_after",
                 "windows")

    def __init__(self, allowed, failed, retry_after, remaining, reset, windows) -> None:
        self.queued = False  # refused because others wait first (rate_limits.queue)
        self.full = False  # refused, and the queue had no room for it
        self.allowed = allowed
        self.failed = failed
        self.retry_after = retry_after
        self.remaining = remaining
        self.reset = reset
        self.windows = windows


_REQ_HEADERS = (b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests",
                b"x-ratelimit-reset-requests")
_TOK_HEADERS = (b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens",
                b"x-ratelimit-reset-tokens")


def rate_headers(checks: list[Check], result: Result) -> list[tuple[bytes, bytes]]:
    """``x-ratelimit-*`` for the most constrained request limit and token limit."""
    remaining = result.remaining
    if len(checks) == 1 and checks[0].kind == REQUESTS:  # a lone request limit
        return [(_REQ_HEADERS[0], checks[0].limit_b), (_REQ_HEADERS[1], b"%d" % remaining[0]),
                (_REQ_HEADERS[2], reset_bytes(result.reset[0]))]
    req = tok = -1
    for i, c in enumerate(checks):
        if c.kind == REQUESTS:
            if req < 0 or remaining[i] < remaining[req]:
                req = i
        elif c.kind == TOKENS and (tok < 0 or remaining[i] < remaining[tok]):
            tok = i
    out: list[tuple[bytes, bytes]] = []
    for best, names in ((req, _REQ_HEADERS), (tok, _TOK_HEADERS)):
        if best >= 0:
            out.append((names[0], checks[best].limit_b))
            out.append((names[1], b"%d" % remaining[best]))
            out.append((names[2], reset_bytes(result.reset[best])))
    return out


def refusal(check: Check, result: Result, amount: int) -> HelixError:
    """The 429 for a refused check, with ``Retry-After`` (whole seconds) and ``retry-after-ms``."""
    field = UNITS[check.unit][0]
    scope = SCOPE_NAMES[check.scope[0]]
    who = f" for {check.scope[2:]!r}" if len(check.scope) > 2 else ""
    wait = result.retry_after
    headers = [
        (b"retry-after", b"%d" % max(math.ceil(wait), 1)),
        (b"retry-after-ms", b"%d" % max(math.ceil(wait * 1000), 1)),
    ]
    if check.kind == REQUESTS:
        return HelixError(
            ErrorKind.RATE_LIMITED,
            f"Rate limit reached ({scope}{who}): {field} is {check.limit}. "
            f"Please try again in {format_reset(wait)}.",
            headers=headers,
        )
    if check.kind == TOKENS:
        if amount > check.limit:
            return HelixError(
                ErrorKind.RATE_LIMITED,
                f"Request too large ({scope}{who}): it may use up to {amount} tokens, more "
                f"than the {field} limit of {check.limit}. Lower max_tokens or the prompt.",
                headers=headers,
            )
        return HelixError(
            ErrorKind.RATE_LIMITED,
            f"Rate limit reached ({scope}{who}): {field} is {check.limit} and this request "
            f"may use up to {amount}. Please try again in {format_reset(wait)}.",
            headers=headers,
        )
    usd = check.limit / NANO
    return HelixError(
        ErrorKind.BUDGET,
        f"Budget exceeded ({scope}{who}): the {field} budget of ${usd:g} is spent or too "
        f"small for this request (estimated ${amount / NANO:.6f}); it resets in "
        f"{format_reset(result.reset[result.failed])}.",
        headers=headers,
    )
