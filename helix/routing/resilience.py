"""Retry policy as pure functions: what an error means, and how long to wait.

* :func:`classify` -- a ``HelixError`` from one attempt -> (health event,
  retryable, seconds the provider asked us to wait).
* :func:`backoff` -- the delay before retry ``n`` (exponential with jitter
  between ``initial_delay`` and ``max_delay``, or constant); the random number
  is passed in.
* :func:`reset_after` -- Retry-After / retry-after-ms / x-ratelimit-reset-* /
  anthropic-ratelimit-*-reset headers -> seconds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from helix.errors import ErrorKind, HelixError, Retry
from helix.routing.health import CONNECT, FAILURE, RATE_LIMITED, SUCCESS

__all__ = ["FIRST_TOKEN_TIMEOUT", "Policy", "Timing", "backoff", "classify",
           "first_token_error", "is_context_overflow", "reset_after"]

_CONNECT_KINDS = frozenset({ErrorKind.CONNECT_REFUSED, ErrorKind.CONNECT_TIMEOUT, ErrorKind.TLS})
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_GO_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class Timing:
    """A model's first-token deadline and hedging (``resilience`` and ``resilience.models``):
    ``ttft`` seconds (0: none), a hedge after ``after`` seconds, up to ``hedges`` of them."""

    __slots__ = ("after", "hedges", "ttft")

    def __init__(self, ttft: float, after: float, hedges: int) -> None:
        self.ttft = ttft
        self.after = after
        self.hedges = hedges

    def __repr__(self) -> str:
        return f"Timing(ttft={self.ttft}, after={self.after}, hedges={self.hedges})"


def _timing(ttft, hedge) -> Timing | None:
    ttft = float(ttft) if ttft else 0.0
    hedges = hedge.max if hedge is not None else 0
    if not ttft and hedges <= 0:
        return None
    return Timing(ttft, float(hedge.after) if hedges > 0 else 0.0, max(hedges, 0))


class Policy:
    """``resilience`` as the attempt loop uses it (built once from config)."""

    __slots__ = ("backoff", "context_fallbacks", "deadline", "fallbacks", "initial_delay",
                 "max_attempts", "max_delay", "retries", "timing_default", "timings")

    def __init__(self, resilience) -> None:
        r = resilience.retries
        self.retries = r is not None
        self.max_attempts = r.max_attempts if r is not None else 1
        self.backoff = r.backoff if r is not None else "exponential"
        self.initial_delay = float(r.initial_delay) if r is not None else 0.0
        self.max_delay = float(r.max_delay) if r is not None else 0.0
        self.deadline = float(resilience.deadline) if resilience.deadline is not None else None
        self.fallbacks: dict[str, list[str]] = {}
        for rule in resilience.fallbacks:
            chain = [rule.fallback] if isinstance(rule.fallback, str) else list(rule.fallback)
            self.fallbacks[rule.primary] = chain
        self.context_fallbacks: dict[str, str] = dict(resilience.context_window_fallbacks)
        # First-token deadline and hedging per model name (None: plain attempts).
        self.timing_default = _timing(resilience.first_token_timeout, resilience.hedge)
        self.timings: dict[str, Timing | None] = {}
        for name, per in resilience.models.items():
            ttft = per.first_token_timeout
            hedge = per.hedge
            self.timings[name] = _timing(
                resilience.first_token_timeout if ttft is None else ttft,
                resilience.hedge if hedge is None else hedge,
            )

    def timing(self, model: str) -> Timing | None:
        """The first-token deadline and hedging for requests of ``model``."""
        return self.timings.get(model, self.timing_default)


FIRST_TOKEN_TIMEOUT = "first_token_timeout"


def first_token_error(dep, seconds: float) -> HelixError:
    """An attempt abandoned at its first-token deadline (retryable, on another deployment)."""
    return HelixError(
        ErrorKind.READ_TIMEOUT,
        f"{dep.provider}/{dep.model} sent no first token within {seconds:g}s "
        f"(resilience.first_token_timeout).",
        code=FIRST_TOKEN_TIMEOUT,
        retry=Retry.YES,
    )


def backoff(attempt: int, kind: str, initial: float, maximum: float, rnd: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry).

    Exponential: uniform in ``[initial, min(maximum, initial * 2**(attempt-1))]``
    ("equal-range" jitter: never less than ``initial``, spreads retries of many
    clients).  Constant: ``initial``.  ``rnd`` is in [0, 1).
    """
    if kind == "constant" or attempt <= 1:
        return min(initial, maximum) if maximum > 0 else initial
    cap = min(maximum, initial * (2.0 ** (attempt - 1)))
    if cap <= initial:
        return cap
    return initial + (cap - initial) * rnd


def _seconds(value: bytes, now_wall: float | None) -> float | None:
    text = value.decode("latin-1").strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _GO_DURATION.findall(text)
    if parts and "".join(a + u for a, u in parts) == text.replace(" ", ""):
        return sum(float(a) * _GO_UNIT[u] for a, u in parts)
    wall = now_wall if now_wall is not None else datetime.now(UTC).timestamp()
    try:
        from email.utils import parsedate_to_datetime  # rare: Retry-After as an HTTP-date

        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        when = None
    if when is None:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - wall)


def reset_after(headers, now_wall: float | None = None) -> float | None:
    """How long the provider asked us to stay away, from its response headers (None: unsaid).

    ``retry-after-ms`` and ``retry-after`` win; otherwise the longest of the
    rate-limit reset headers that are exhausted, or failing that all of them.
    """
    ms = ra = None
    resets: list[float] = []
    for k, v in headers:
        if k == b"retry-after-ms":
            try:
                ms = max(0.0, float(v)) / 1000.0
            except ValueError:
                ms = None
        elif k == b"retry-after":
            ra = _seconds(v, now_wall)
        elif (k.startswith(b"x-ratelimit-reset") or
              (k.startswith(b"anthropic-ratelimit-") and k.endswith(b"-reset"))):
            s = _seconds(v, now_wall)
            if s is not None:
                resets.append(s)
    if ms is not None:
        return ms
    if ra is not None:
        return ra
    return max(resets) if resets else None


def classify(err: HelixError) -> tuple[int, bool, float | None]:
    """(health event, worth retrying, seconds to stay away) for one failed attempt.

    Retried: connect errors, timeouts, 429 and 5xx (what the adapters mark
    ``Retry.YES``), never a client's 4xx.  A 401/403 is not retried but counts
    against the deployment (its key is wrong for everyone).
    """
    status = err.status
    kind = err.kind
    client_4xx = 400 <= status < 500 and status not in (408, 429)
    retryable = err.retry != Retry.NO and not client_4xx
    if status in (429, 529):
        return RATE_LIMITED, retryable, reset_after(err.headers)
    if kind in _CONNECT_KINDS:
        return CONNECT, retryable, None
    if status >= 500 or kind in (ErrorKind.READ_TIMEOUT, ErrorKind.UPSTREAM_PROTOCOL):
        return FAILURE, retryable, None
    if status in (401, 403):
        return FAILURE, False, None
    return SUCCESS, retryable, None


_OVERFLOW_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_OVERFLOW_TEXT = (
    "prompt is too long",
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "input is too long",
)


def is_context_overflow(err: HelixError) -> bool:
    """The provider refused the prompt as longer than the model's context window."""
    if err.status not in (400, 413, 422):
        return False
    if err.code in _OVERFLOW_CODES:
        return True
    text = (err.message or "").lower()
    return any(t in text for t in _OVERFLOW_TEXT)


def check_config(config) -> None:
    """Refuse resilience config naming models no provider serves (config.check_supported)."""
    from helix.config import ConfigError

    res = config.resilience
    if res is None:
        return
    models = {m.name for p in config.providers for m in p.model_entries()}
    providers = {p.name for p in config.providers}

    def known(name: str) -> bool:
        prefix, sep, rest = name.partition("/")
        return name in models or bool(sep and rest and prefix in providers)

    for i, rule in enumerate(res.fallbacks):
        where = f"resilience.fallbacks[{i}]"
        if not known(rule.primary):
            raise ConfigError(f"{where}.primary: no provider serves a model named "
                              f"{rule.primary!r}")
        chain = [rule.fallback] if isinstance(rule.fallback, str) else rule.fallback
        if not chain:
            raise ConfigError(f"{where}.fallback: name at least one fallback model")
        for name in chain:
            if not known(name):
                raise ConfigError(f"{where}.fallback: no provider serves a model named {name!r}")
            if name == rule.primary:
                raise ConfigError(f"{where}.fallback: {name!r} falls back to itself")
    if len({r.primary for r in res.fallbacks}) != len(res.fallbacks):
        raise ConfigError("resilience.fallbacks: a primary model is listed twice")
    for src, dst in res.context_window_fallbacks.items():
        where = f"resilience.context_window_fallbacks.{src}"
        if not known(src) or not known(dst):
            bad = src if not known(src) else dst
            raise ConfigError(f"{where}: no provider serves a model named {bad!r}")
    for where, ttft, hedge in [("resilience", res.first_token_timeout, res.hedge)] + [
            (f"resilience.models.{name}", per.first_token_timeout, per.hedge)
            for name, per in res.models.items()]:
        if where != "resilience" and not known(where.split(".", 2)[2]):
            raise ConfigError(f"{where}: no provider serves a model named "
                              f"{where.split('.', 2)[2]!r}")
        if hedge is not None:
            if not 0 <= hedge.max <= 4:
                raise ConfigError(f"{where}.hedge.max: must be within 0..4 (extra attempts "
                                  f"racing the first), got {hedge.max}")
            if hedge.max > 0 and hedge.after <= 0:
                raise ConfigError(f"{where}.hedge.after: must be > 0")
        if ttft is not None and hedge is not None and ttft and hedge.max > 0 \
                and hedge.after >= ttft:
            raise ConfigError(f"{where}.hedge.after: must be shorter than first_token_timeout "
                              f"({float(hedge.after)} >= {float(ttft)}), or the hedge never "
                              f"starts")
    r = res.retries
    if r is not None and r.initial_delay > r.max_delay:
        raise ConfigError("resilience.retries.initial_delay: must not exceed max_delay "
                          f"({float(r.initial_delay)} > {float(r.max_delay)})")
