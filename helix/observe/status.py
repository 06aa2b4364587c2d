"""``GET /status`` (JSON) and the access guard shared with ``GET /metrics``.

Nothing here runs per proxied request: the document is built when asked for,
from the shared-memory tables (workers, restarts, metrics) and the worker's
own exporters.  Features that are not built or not configured say so
(``"state": "not configured"``) instead of being absent.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time

import msgspec

from helix import __version__
from helix.errors import ErrorKind, HelixError

_encode = msgspec.json.Encoder().encode
_JSON = [(b"content-type", b"application/json")]


def _peer(exchange):
    """The client's address (IPv4-mapped IPv6 unwrapped), or None."""
    client = exchange.request.client
    if not client:
        return None
    try:
        addr = ipaddress.ip_address(str(client[0]).split("%", 1)[0])
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr


def exposure(admin, keys) -> str:
    """One line for the start-up log: who may read /status, /ui and /metrics."""
    if admin.api_key or admin.allow_from:
        who = []
        if admin.api_key:
            who.append("the admin key (observability.admin.api_key)")
        if admin.allow_from:
            who.append(f"clients in {', '.join(admin.allow_from)}")
        return "/status, /ui and /metrics: served to " + " or ".join(who)
    if keys:
        return ("/status, /ui and /metrics: served to loopback clients and to requests with a "
                "gateway key (set observability.admin to choose otherwise)")
    return ("/status, /ui and /metrics: open to anyone who can connect (no gateway keys and no "
            "observability.admin section)")


def make_guard(admin, keys=None):
    """``guard(exchange)``: raise unless the request may read /metrics, /status and /ui.

    With ``observability.admin`` set: its bearer key (compared in constant time) or an
    address in ``allow_from``.  Without it but with gateway keys (``keys``, a
    :class:`~helix.limit.keys.KeyTable`): a valid gateway key or a loopback peer, so a
    gateway whose ``/v1/*`` is protected does not expose its upstreams to anyone.  With
    neither, ``None``: open (and the start-up log says so).
    """
    key = admin.api_key
    nets = [ipaddress.ip_network(n, strict=False) for n in admin.allow_from]
    if not key and not nets:
        if not keys:
            return None
        verify = keys.verify

        def gateway_guard(exchange) -> None:
            addr = _peer(exchange)
            if addr is not None and addr.is_loopback:
                return
            authorization = exchange.request.headers.get("authorization")
            if verify(authorization) is not None:
                return
            raise HelixError(ErrorKind.AUTH, "This endpoint needs a gateway key "
                             "(Authorization: Bearer <key>) or a loopback client; set "
                             "observability.admin to choose who may read it.")

        return gateway_guard
    import hmac

    expected = f"Bearer {key}".encode() if key else None

    def guard(exchange) -> None:
        if expected is not None:
            got = exchange.request.headers.get("authorization")
            if got is not None and hmac.compare_digest(
                    got.encode("utf-8", "surrogateescape"), expected):
                return
        if nets:
            addr = _peer(exchange)
            if addr is not None and any(addr in n for n in nets):
                return
        if expected is not None:
            raise HelixError(ErrorKind.AUTH, "This endpoint needs the admin key "
                             "(Authorization: Bearer <observability.admin.api_key>).")
        raise HelixError(ErrorKind.PERMISSION, "This endpoint is not served to your address.")

    return guard


def _proc_start(pid: int) -> float | None:
    """Wall-clock start time of a process (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


HISTORY_INTERVAL = 10.0  # seconds between samples of the per-model totals
HISTORY_POINTS = 30  # 5 minutes


def prices_as_of() -> str | None:
    """The price table's date (``helix/data/models.json``: ``prices_as_of`` or ``as_of``)."""
    import json
    from importlib import resources

    try:
        doc = json.loads(resources.files("helix.data").joinpath("models.json").read_bytes())
    except (OSError, ValueError):
        return None
    for key in ("as_of", "prices_as_of"):
        if isinstance(doc.get(key), str):
            return doc[key]
    return None


class History:
    """Requests, errors and tokens per model over the last minutes, for the status page.

    Every :data:`HISTORY_INTERVAL` seconds each worker folds the shared request counters
    (all workers, a few microseconds per series) into per-model totals and keeps the last
    :data:`HISTORY_POINTS` samples; a reader takes differences.  So any worker answering
    ``/status`` has the whole gateway's history, and nothing runs per request.  Only the
    configured models are named (``known``); ids clients invented are summed as ``other``.
    ``since``: when the shared counters were zero (the master's start).  When that is within
    the page's window the history starts there, not at this worker's first sample, so a
    worker that started late still shows the requests served before it.  An older ``since``
    is ignored: one bar since the start would turn "the last minutes" into a lifetime average.
    """

    def __init__(self, metrics, known: set[str], since: float | None = None) -> None:
        from collections import deque

        self.metrics = metrics
        self.known = known
        self.samples: deque = deque(maxlen=HISTORY_POINTS + 1)
        if since is not None and time.time() - since <= HISTORY_POINTS * HISTORY_INTERVAL:
            self.samples.append((since, {}))
        self._handle = None

    def totals(self) -> dict[str, list[float]]:
        from helix.observe import metrics as m

        out: dict[str, list[float]] = {}
        for (_endpoint, model, _provider, status), v in self.metrics.fold_requests().items():
            name = model if model in self.known else "other"
            t = out.setdefault(name, [0.0, 0.0, 0.0])
            t[0] += v[m.C_REQUESTS]
            if status >= 500 or status == 0 or status == 429:
                t[1] += v[m.C_REQUESTS]
            t[2] += v[m.C_TOK_IN] + v[m.C_TOK_OUT]
        return out

    def sample(self) -> None:
        self.samples.append((time.time(), self.totals()))

    def start(self, loop) -> None:
        def tick() -> None:
            self.sample()
            self._handle = loop.call_later(HISTORY_INTERVAL, tick)

        tick()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def document(self) -> dict:
        from itertools import pairwise

        points = [*self.samples, (time.time(), self.totals())]
        out = []
        for (t0, a), (t1, b) in pairwise(points):
            models = {}
            for name, tb in b.items():
                ta = a.get(name, [0.0, 0.0, 0.0])
                d = [max(0.0, x - y) for x, y in zip(tb, ta, strict=True)]
                if any(d):
                    models[name] = {"requests": int(d[0]), "errors": int(d[1]),
                                    "tokens": int(d[2])}
            out.append({"t": round(t1, 3), "seconds": round(t1 - t0, 3), "models": models})
        return {"interval_s": HISTORY_INTERVAL, "points": out}


class Status:
    def __init__(self, config, worker, registry, metrics, exporters: dict,
                 features: dict) -> None:
        self.config = config
        self.worker = worker
        self.registry = registry
        self.metrics = metrics
        self.exporters = exporters
        self.features = features
        self.started = time.time()
        master = getattr(worker, "master_pid", None)
        self.master_started = (_proc_start(master) if master else None) or self.started
        # Other features report their backend here: name -> () -> dict.
        self.components: dict = {}
        # Per-deployment health and latency from the balancer's shared tables.
        self.deployment_state = None
        known = {d.model_id for d in self._all() if d.index >= 0}
        self.history = (History(metrics, known, self.master_started) if metrics is not None
                        else None)
        self._prices_as_of: str | bool | None = False  # read on the first document()

    def start(self, loop) -> None:
        if self.history is not None:
            self.history.start(loop)

    def stop(self) -> None:
        if self.history is not None:
            self.history.stop()

    def document(self) -> dict:
        from helix._fast import IMPLEMENTATION, describe

        now = time.time()
        return {
            "status": "ok",
            "version": __version__,
            "python": sys.version.split()[0],
            "extensions": {"in_use": IMPLEMENTATION == "compiled", "detail": describe()},
            "uptime_s": round(now - self.master_started, 3),
            "served_by": self._self(now),
            "workers": self._workers(now),
            "deployments": self._deployments(),
            # provider/<unlisted id> deployments are client input: only their number is shown.
            # provider/<unlisted id>: client input, so counted, never listed (registry LRU)
            "dynamic_deployments": self.registry.dynamic_count if self.registry is not None else 0,
            "cache": self._cache(),
            "rate_limits": self._rate_limits(),
            "observability": self._observability(),
            "traffic": self.history.document() if self.history is not None
            else {"state": "needs observability.metrics.enabled"},
            "prices_as_of": self._prices(),
        }

    def _prices(self) -> str | None:
        if self._prices_as_of is False:
            self._prices_as_of = prices_as_of()
        return self._prices_as_of

    def _aux(self) -> dict:
        return self.metrics.fold_aux() if self.metrics is not None else {}

    def _cache(self) -> dict:
        out = self._component("cache", self.config.caching)
        if self.config.caching is not None and self.metrics is not None:
            aux = self._aux()
            hits = int(aux.get(("helix_cache_lookups_total", "hit"), 0))
            misses = int(aux.get(("helix_cache_lookups_total", "miss"), 0))
            out["all_workers"] = {"hits": hits, "misses": misses,
                                  "hit_rate": round(hits / (hits + misses), 4)
                                  if hits + misses else None}
        return out

    def _rate_limits(self) -> dict:
        rl = self.config.rate_limits
        out = self._component("rate_limits", rl)
        if rl is None:
            return out
        from helix.config import LimitSpec

        def spec(s) -> dict | None:
            if s is None:
                return None
            return {f: getattr(s, f) for f in LimitSpec.__struct_fields__
                    if getattr(s, f) is not None}

        aux = self._aux()
        scopes = {}
        for name, attr in (("global", "global_"), ("per_team", "per_team"),
                           ("per_user", "per_user"), ("per_key", "per_key")):
            limits = spec(getattr(rl, attr))
            rejected = aux.get(("helix_ratelimit_rejected_requests_total", name))
            if limits or rejected:
                scopes[name] = {"limits": limits or {},
                                "rejected": int(rejected or 0) if self.metrics else None}
        keys = self.config.auth.keys if self.config.auth is not None else []
        own = sum(1 for k in keys if k.limits is not None)
        if own:
            entry = scopes.setdefault("per_key", {"limits": {}, "rejected": None})
            entry["keys_with_own_limits"] = own
        out["scopes"] = scopes
        return out

    def _all(self) -> list:
        return self.registry.all_deployments() if self.registry is not None else []

    def _self(self, now: float) -> dict:
        w = self.worker
        if w is None:
            return {"pid": os.getpid(), "uptime_s": round(now - self.started, 3)}
        return {"pid": w.pid, "slot": w.index, "number": w.number, "generation": w.generation,
                "uptime_s": round(now - self.started, 3)}

    def _workers(self, now: float) -> dict:
        from helix.master.shm import STATE_NAMES

        w = self.worker
        if w is None:
            return {"configured": self.config.server.workers, "live": [], "restarts_total": 0}
        shm = w.shm
        from helix.observe.metrics import RESTARTS

        restarts = shm.table(RESTARTS).view.tolist() if RESTARTS in shm else []
        mono = time.monotonic_ns()
        live = []
        for row in shm.workers.snapshot():
            live.append({
                "slot": row["slot"],
                "pid": row["pid"],
                "generation": row["generation"],
                "state": STATE_NAMES.get(row["state"], str(row["state"])),
                "uptime_s": round(now - row["started_at"] / 1e9, 3),
                "heartbeat_age_s": round(max(0, mono - row["heartbeat"]) / 1e9, 3),
                "requests_total": row["requests_total"],
                "in_flight": row["in_flight"],
                "connections": row["connections"],
            })
        return {
            "configured": self.config.server.workers or os.cpu_count(),
            "live": live,
            "restarts_total": int(sum(restarts)),
            "restarts_by_worker_number": {
                str(i): int(n) for i, n in enumerate(restarts) if n
            },
        }

    def _deployments(self) -> list[dict]:
        stats: dict[tuple[str, str], dict] = {}
        if self.metrics is not None:
            from helix.observe import metrics as m

            for (_endpoint, model, provider, status), v in self.metrics.fold_requests().items():
                s = stats.setdefault((provider, model), {"requests": 0.0, "errors": 0.0,
                                                         "up_sum": 0.0, "up_n": 0.0,
                                                         "ttft_sum": 0.0, "ttft_n": 0.0})
                s["requests"] += v[m.C_REQUESTS]
                if status >= 500 or status == 0:
                    s["errors"] += v[m.C_REQUESTS]
                n_up = len(m.DURATION_BOUNDS) + 1
                s["up_sum"] += v[m.C_UP]
                s["up_n"] += sum(v[m.C_UP + 1 : m.C_UP + 1 + n_up])
                n_tt = len(m.TTFT_BOUNDS) + 1
                s["ttft_sum"] += v[m.C_TTFT]
                s["ttft_n"] += sum(v[m.C_TTFT + 1 : m.C_TTFT + 1 + n_tt])
        state = {}
        if self.deployment_state is not None:
            state = {s["index"]: s for s in self.deployment_state()}
        out = []
        for dep in self._all():
            if dep.index < 0:  # made on the fly for provider/<unlisted id>: client input
                continue
            entry = {
                "provider": dep.provider,
                "type": dep.provider_type,
                "model": dep.model,
                "model_id": dep.model_id,
                "host": f"{dep.origin.host}:{dep.origin.port}",
                "health": "not configured",
            }
            s = state.get(dep.index)
            if s is not None:
                entry["health"] = {
                    k: s.get(k)
                    for k in ("state", "reason", "strategy", "latency_ms", "in_flight",
                              "error_rate", "window_requests", "consecutive_failures",
                              "cooldown_left_s")
                }
            s = stats.get((dep.provider, dep.model_id))
            if self.metrics is None:
                entry["latency"] = "metrics disabled"
            elif s is None:
                entry["latency"] = {"requests": 0}
            else:
                entry["latency"] = {
                    "requests": int(s["requests"]),
                    "server_errors": int(s["errors"]),
                    "upstream_mean_ms": round(s["up_sum"] / s["up_n"] * 1000, 3)
                    if s["up_n"] else None,
                    "ttft_mean_ms": round(s["ttft_sum"] / s["ttft_n"] * 1000, 3)
                    if s["ttft_n"] else None,
                }
            out.append(entry)
        return out

    def _component(self, name: str, section) -> dict:
        fn = self.components.get(name)
        if fn is not None:
            return fn()
        if section is None:
            return {"state": "not configured"}
        return {"state": "configured", "backend": getattr(section, "backend", None)}

    def _observability(self) -> dict:
        cfg = self.config.observability
        out: dict = {
            "metrics": {"enabled": self.metrics is not None,
                        "endpoint": cfg.metrics.prometheus_endpoint if cfg.metrics else None},
            "access_log": self.features.get("access_log", False),
            "request_id": self.features.get("request_id", False),
            "log_format": cfg.logging.format,
        }
        for name in ("tracing", "helicone"):
            exp = self.exporters.get(name)
            if exp is None:
                out[name] = {"state": "not configured"}
            else:
                out[name] = {"state": "enabled", "url": exp.url, **exp.state()}
        return out

    async def handle(self, exchange) -> None:
        exchange.respond(200, list(_JSON), _encode(self.document()))
