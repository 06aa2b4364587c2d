"""Which deployment serves this attempt: strategy + passive health, decided synchronously.

``Balancer.select`` is called by the route phase (first attempt) and by the
attempt loop (retries); it returns a ``Deployment`` (or None when nothing is
available and panic routing is off), never awaits.  ``begin``/``end`` bracket
each attempt: in-flight counts, the latency sample (TTFT for streams, the
whole answer otherwise) and the health event.

Strategies (``load_balancing.strategy``, per model in ``load_balancing.models``):

* ``latency_based`` (default) -- power of two choices on PeakEWMA x (in-flight + 1)
* ``weighted`` -- random, proportional to ``weights`` (by provider or ``provider/model``)
* ``cost_based`` -- cheapest by registry price for this request; ``fallback``
  (default ``latency_based``) chooses among equally cheap ones
* ``round_robin`` -- one sequence shared by every worker

Selection skips deployments that are open or cooling; a deployment whose
cooldown is over gets exactly one half-open trial.  When every candidate is
unavailable and the caller allows it (no fallback model left), the strategy
runs over all of them ("panic"), so a blip never turns into a total outage.

:func:`snapshot` is what ``GET /status`` shows for each deployment.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from helix._fast import AttemptBook, LatencyTable
from helix.routing import affinity, strategies
from helix.routing import health as hmod
from helix.routing.affinity import deployment_salt

__all__ = ["Balancer", "active", "snapshot"]

LATENCY_FLOOR = 0.001  # seconds added to every estimate so in-flight always counts
# Prompt-cache affinity compares latency estimates with this added to each, so that a few
# milliseconds of jitter between equally fast deployments never moves a prefix.
AFFINITY_FLOOR = 0.025
DEFAULT_OUTPUT_TOKENS = 256  # cost_based: when the request sets no max_tokens

_ACTIVE: Balancer | None = None


def active() -> Balancer | None:
    """This worker's balancer (None before the app is built)."""
    return _ACTIVE


def snapshot(now: float | None = None) -> list[dict]:
    """Per-deployment state for ``GET /status`` (empty before the app is built).

    Each item: ``deployment`` ("provider/model"), ``provider``, ``model``,
    ``model_id``, ``index``, ``strategy``, ``state`` (healthy / cooling / open /
    half-open), ``reason``, ``latency_ms`` (PeakEWMA, None if never sampled),
    ``in_flight`` (all workers), ``error_rate`` / ``window_requests`` /
    ``window_errors`` (last ``health.window``, all workers),
    ``consecutive_failures`` and ``cooldown_left_s``.
    """
    bal = _ACTIVE
    return [] if bal is None else bal.snapshot(now)


class _Group:
    """Per model name: its strategy and what the strategy needs, built once."""

    __slots__ = ("affinity", "fallback", "keys", "prices", "rr_row", "salts", "strategy",
                 "tolerance", "weights")

    def __init__(self, strategy, fallback, keys, weights, prices, rr_row) -> None:
        self.strategy = strategy
        self.fallback = fallback
        self.keys = keys
        self.weights = weights
        self.prices = prices
        self.rr_row = rr_row
        self.affinity = False  # prompt-cache affinity (routing/affinity.py)
        self.salts: list[int] = []
        self.tolerance = 1.0


def _strategy_for(config, model: str):
    lb = config.load_balancing
    if lb is None:
        return "latency_based", None, {}
    per = lb.models.get(model)
    if per is not None:
        weights = {**lb.weights, **per.weights}
        return per.strategy or lb.strategy, per.fallback or lb.fallback, weights
    return lb.strategy, lb.fallback, lb.weights


class Balancer:
    def __init__(self, registry, config, *, shm=None, row: int = 0,
                 rng: random.Random | None = None, clock=time.monotonic, models=None) -> None:
        from helix.routing.models import Registry

        self.registry = registry
        self.clock = clock
        self._rnd = (rng or random.Random()).random
        lb = config.load_balancing
        policy = health_policy(config)
        tau = float(lb.ewma_decay) if lb is not None else 10.0
        self.row = row
        self._shm = shm
        if shm is not None and hmod.HEALTH_TABLE in shm:
            ht = shm.table(hmod.HEALTH_TABLE)
            ndeps = ht.rows
            lat = shm.table(hmod.LATENCY_TABLE)
            win = shm.table(hmod.WINDOW_TABLE)
            self._rr = shm.table(hmod.RR_TABLE)
            rows = lat.rows
            self.health = hmod.HealthTable(ht.view, win.view, ndeps, rows, row, policy,
                                           hmod._LOCK)
            self.latency = LatencyTable(lat.view, rows, ndeps, tau, LATENCY_FLOOR)
        else:
            # One process, private tables (tests, tools): same code, nothing shared.
            from helix._fast.ewma_py import stride_for

            ndeps = hmod.deployment_capacity(config)
            rows = 1
            self.row = row = 0
            hview = memoryview(bytearray(8 * ndeps * hmod.H_COLS)).cast("d")
            wview = memoryview(bytearray(8 * ndeps * hmod.W_COLS)).cast("d")
            lview = memoryview(bytearray(8 * stride_for(ndeps))).cast("d")
            self._rr = None
            self._rr_local = [0] * ndeps
            self.health = hmod.HealthTable(hview, wview, ndeps, rows, row, policy)
            self.latency = LatencyTable(lview, rows, ndeps, tau, LATENCY_FLOOR)
        self.ndeps = ndeps
        book = AttemptBook(self.latency, self.health.counts, self.health.change, self.row, ndeps)
        self.begin = book.begin
        self.end = book.end
        # A worker taking over a slot starts from clean per-worker rows.
        self.latency.clear_row(row)
        self.health.clear_row()
        prices = models if models is not None else Registry.from_config(config)
        self.groups: dict[int, _Group] = {}
        for name, cands in registry.by_name.items():
            self.groups[id(cands)] = self._group(config, name, cands, prices)
        # Any model with prompt-cache affinity: the route phase then asks for prefix keys.
        self.affinity = any(g.affinity for g in self.groups.values())
        self._cost = self.latency.cost
        self._choose = self.latency.choose
        self._available = self.health.available

    def _group(self, config, name, cands, prices) -> _Group:
        strategy, fallback, wmap = _strategy_for(config, name)
        keys = [d.index if 0 <= d.index < self.ndeps else -1 for d in cands]
        weights = [
            float(wmap.get(f"{d.provider}/{d.model}", wmap.get(d.provider, 1.0))) for d in cands
        ]
        price_list = []
        for d in cands:
            info = prices.lookup(d.model_id, d.provider_type)
            if info is None or info.input_per_mtok is None or info.output_per_mtok is None:
                price_list.append(None)
            else:
                price_list.append((info.input_per_mtok, info.output_per_mtok))
        rr_row = keys[0] if keys and keys[0] >= 0 else -1
        if strategy == "cost_based" and fallback is None:
            fallback = "latency_based"
        group = _Group(strategy, fallback, keys, weights, price_list, rr_row)
        lb = config.load_balancing
        if lb is not None and len(cands) > 1:
            per = lb.models.get(name)
            on = per.prompt_cache_affinity if per is not None else None
            group.affinity = lb.prompt_cache_affinity if on is None else on
            group.tolerance = float(lb.affinity_tolerance)
            group.salts = [deployment_salt(f"{d.provider}/{d.model}") for d in cands]
        return group

    def affine(self, cands) -> bool:
        """Whether requests for this candidate list are routed by their prompt prefix."""
        group = self.groups.get(id(cands))
        return group is not None and group.affinity

    # --- selection ------------------------------------------------------------------------

    def select(self, cands, now: float, view=None, tried=None, panic: bool = True, key=None):
        """The deployment for the next attempt, or None (nothing available, no panic).

        ``key``: the request's prompt-prefix key (``Api.prefix_key``) when its model has
        prompt-cache affinity, else None."""
        n = len(cands)
        if n == 1 and not tried:
            d = cands[0]
            i = d.index
            if i < 0 or i >= self.ndeps:
                return d
            ok = self._available(i, now)
            if ok == 0 or (ok == 1 and self.health.claim(i, now)) or panic:
                return d
            return None
        group = self.groups.get(id(cands))
        allowed = []
        trial = -1
        for pos in range(n):
            d = cands[pos]
            if tried and d in tried:
                continue
            i = d.index
            ok = 0 if i < 0 or i >= self.ndeps else self._available(i, now)
            if ok == 0:
                allowed.append(pos)
            elif ok == 1 and trial < 0:
                trial = pos
        if trial >= 0 and self.health.claim(cands[trial].index, now):
            return cands[trial]
        if not allowed and tried:
            # Every untried one is out: a healthy one already tried beats none.
            for pos in range(n):
                i = cands[pos].index
                if i < 0 or i >= self.ndeps or self._available(i, now) == 0:
                    allowed.append(pos)
        if not allowed:
            if not panic:
                return None
            allowed = [p for p in range(n) if not tried or cands[p] not in tried] or list(range(n))
        if len(allowed) == 1:
            return cands[allowed[0]]
        if group is None:
            return cands[allowed[int(self._rnd() * len(allowed))]]
        if key and group.affinity:
            return cands[self._affine(group, allowed, now, view, key)]
        return cands[self._pick(group, group.strategy, allowed, n, now, view)]

    def _affine(self, group: _Group, allowed, now: float, view, key: int) -> int:
        """Prompt-cache affinity: the first deployment in the key's rendezvous order whose
        latency estimate is within ``tolerance`` x the best allowed one's (each estimate
        plus :data:`AFFINITY_FLOOR`; a deployment never sampled counts as the floor)."""
        if group.strategy == "cost_based":
            est_in, est_out = _estimate_tokens(view)
            prices = [None if p is None else p[0] * est_in + p[1] * est_out
                      for p in group.prices]
            allowed = strategies.cheapest(allowed, prices)
            if len(allowed) == 1:
                return allowed[0]
        keys = group.keys
        estimate = self.latency.estimate
        lat = {p: (estimate(keys[p], now) if keys[p] >= 0 else 0.0) + AFFINITY_FLOOR
               for p in allowed}
        bound = min(lat.values()) * group.tolerance
        weighted = group.weights if group.strategy == "weighted" else None
        order = affinity.rank(key, allowed, group.salts, weighted)
        for p in order:
            if lat[p] <= bound:
                return p
        return order[0]

    def _pick(self, group: _Group, strategy: str, allowed, n: int, now: float, view) -> int:
        if strategy == "latency_based":
            keys = group.keys
            if -1 in (keys[p] for p in allowed):
                untracked = [p for p in allowed if keys[p] < 0]
                return untracked[int(self._rnd() * len(untracked))]
            return strategies.p2c(allowed, keys, lambda a, b: self._choose(a, b, now), self._rnd)
        if strategy == "weighted":
            return strategies.weighted(allowed, group.weights, self._rnd)
        if strategy == "round_robin":
            return strategies.round_robin(allowed, n, self._ticket(group.rr_row))
        # cost_based
        est_in, est_out = _estimate_tokens(view)
        prices = [
            None if p is None else p[0] * est_in + p[1] * est_out for p in group.prices
        ]
        tier = strategies.cheapest(allowed, prices)
        if len(tier) == 1:
            return tier[0]
        return self._pick(group, group.fallback or "latency_based", tier, n, now, view)

    def _ticket(self, row: int) -> int:
        if row < 0:
            return int(self._rnd() * 1_000_000)
        if self._rr is not None:
            return self._shm.fetch_add(self._rr, row, 1)
        t = self._rr_local[row]
        self._rr_local[row] = t + 1
        return t

    # --- attempt bookkeeping ------------------------------------------------------------------

    # ``begin(dep)`` and ``end(dep, event, now, sample=None, retry_after=None)`` are the
    # AttemptBook's (helix/_fast/ewma_py.py, compiled), bound in __init__: in-flight up;
    # in-flight down, the latency sample, the health event (the shared row only when it
    # may change).

    def end_lost(self, dep, now: float, elapsed: float) -> None:
        """Close an attempt cancelled because another won the race (a hedge): in-flight back
        down, no health verdict, and ``elapsed`` as a latency sample only if it is above the
        current estimate (it is a lower bound of this attempt's time to first token: it
        may raise the estimate, never lower it)."""
        i = dep.index
        if i < 0 or i >= self.ndeps:
            return
        self.latency.add(self.row, i, -1.0)
        if elapsed > self.latency.estimate(i, now):
            self.latency.observe(self.row, i, now, elapsed)

    # --- /status ------------------------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> list[dict]:
        now = self.clock() if now is None else now
        strategy_of = {}
        for cands in self.registry.by_name.values():
            g = self.groups.get(id(cands))
            for d in cands:
                strategy_of[d.index] = g.strategy if g is not None else None
        out = []
        for d in self.registry.all_deployments():
            i = d.index
            if not 0 <= i < self.ndeps:
                continue
            est = self.latency.estimate(i, now)
            item = {
                "deployment": f"{d.provider}/{d.model}",
                "provider": d.provider,
                "model": d.model,
                "model_id": d.model_id,
                "index": i,
                "strategy": strategy_of.get(i),
                "latency_ms": round(est * 1000.0, 3) if est > 0.0 else None,
                "in_flight": int(self.latency.inflight(i)),
            }
            item.update(self.health.status(i, now))
            out.append(item)
        return out


def gauges(balancer: Balancer) -> Callable[[], dict[tuple, float]]:
    """Prometheus gauge values from the shared health and latency tables (read at scrape)."""

    def collect() -> dict[tuple, float]:
        out: dict[tuple, float] = {}
        for s in balancer.snapshot():
            labels = (s["provider"], s["model_id"])
            out[("helix_deployment_healthy", *labels)] = 1.0 if s["state"] == "healthy" else 0.0
            out[("helix_deployment_in_flight_requests", *labels)] = float(s["in_flight"])
            if s["latency_ms"] is not None:
                out[("helix_deployment_latency_ewma_seconds", *labels)] = s["latency_ms"] / 1e3
        return out

    return collect


def _estimate_tokens(view) -> tuple[float, float]:
    """(prompt, completion) token estimates for pricing one request: the view's own
    estimate (``tokens()``), with a default completion when the client set no limit."""
    if view is None:
        return 1000.0, float(DEFAULT_OUTPUT_TOKENS)
    prompt, out = view.tokens()
    return max(float(prompt), 1.0), float(DEFAULT_OUTPUT_TOKENS if out is None else out)


def health_policy(config) -> hmod.HealthPolicy:
    lb = config.load_balancing
    h = lb.health if lb is not None else None
    if h is None:
        return hmod.HealthPolicy()
    return hmod.HealthPolicy(
        consecutive_failures=h.consecutive_failures,
        error_rate=h.error_rate,
        min_requests=h.min_requests,
        window=float(h.window),
        cooldown=float(h.cooldown),
        connect_cooldown=float(h.connect_cooldown),
        rate_limit_cooldown=float(h.rate_limit_cooldown),
        max_rate_limit_cooldown=float(h.max_rate_limit_cooldown),
        trial_timeout=float(h.trial_timeout),
    )


def install(balancer: Balancer) -> Balancer:
    """Make ``balancer`` the one :func:`snapshot` reports (one per worker)."""
    global _ACTIVE
    _ACTIVE = balancer
    return balancer


def check_config(config) -> None:
    """Refuse balancing config that names things that do not exist (config.check_supported)."""
    from helix.config import ConfigError

    lb = config.load_balancing
    if lb is None:
        return
    providers = {p.name for p in config.providers}
    deployments = {f"{p.name}/{m.name}" for p in config.providers for m in p.model_entries()}
    models = {m.name for p in config.providers for m in p.model_entries()}
    sections = [("load_balancing", lb.strategy, lb.fallback, lb.weights)]
    for name, per in lb.models.items():
        if name not in models:
            raise ConfigError(
                f"load_balancing.models.{name}: no provider lists a model named {name!r}"
            )
        sections.append((f"load_balancing.models.{name}", per.strategy or lb.strategy,
                         per.fallback, per.weights))
    for where, strategy, fallback, weights in sections:
        if fallback is not None and strategy != "cost_based":
            raise ConfigError(
                f"{where}.fallback: only strategy cost_based uses a fallback strategy "
                f"(it picks among equally cheap deployments); remove it or set "
                f"strategy: cost_based"
            )
        for key, w in weights.items():
            if key not in providers and key not in deployments:
                raise ConfigError(
                    f"{where}.weights.{key}: not a configured provider name or "
                    f"'provider/model' deployment"
                )
            if not 0 <= w < float("inf"):
                raise ConfigError(f"{where}.weights.{key}: must be a number >= 0, got {w!r}")
    used = [s for _, s, _, _ in sections]
    for where, strategy, _, weights in sections:
        global_used = where == "load_balancing" and "weighted" in used
        if weights and strategy != "weighted" and not global_used:
            raise ConfigError(
                f"{where}.weights: weights are used only by strategy weighted; remove them or "
                f"set strategy: weighted"
            )
    h = lb.health
    if h is not None:
        if h.consecutive_failures < 1:
            raise ConfigError("load_balancing.health.consecutive_failures: must be >= 1")
        if not 0.0 < h.error_rate <= 1.0:
            raise ConfigError("load_balancing.health.error_rate: must be in (0, 1], "
                              f"got {h.error_rate!r}")
        if h.min_requests < 1:
            raise ConfigError("load_balancing.health.min_requests: must be >= 1")
        if h.window <= 0:
            raise ConfigError("load_balancing.health.window: must be > 0")
    if lb.ewma_decay <= 0:
        raise ConfigError("load_balancing.ewma_decay: must be > 0")
    if not 1.0 <= lb.affinity_tolerance < float("inf"):
        raise ConfigError("load_balancing.affinity_tolerance: must be a number >= 1 (how many "
                          "times slower than the best deployment the prompt's own may be), "
                          f"got {lb.affinity_tolerance!r}")
