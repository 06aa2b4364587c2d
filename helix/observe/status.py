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


def make_guard(admin):
    """``guard(exchange)``: raise unless the request may read /metrics and /status."""
    key = admin.api_key
    nets = [ipaddress.ip_network(n, strict=False) for n in admin.allow_from]
    if not key and not nets:
        return None
    expected = f"Bearer {key}" if key else None

    def guard(exchange) -> None:
        req = exchange.request
        if expected is not None and req.headers.get("authorization") == expected:
            return
        if nets and req.client:
            try:
                addr = ipaddress.ip_address(req.client[0].split("%", 1)[0])
            except ValueError:
                addr = None
            if addr is not None:
                if addr.version == 6 and addr.ipv4_mapped is not None:
                    addr = addr.ipv4_mapped
                if any(addr in n for n in nets):
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

    def document(self) -> dict:
        from helix._fast import IMPLEMENTATION, describe

        now = time.time()
        return {
            "status": "ok",
            "version": __version__,
            "python": sys.version.split()[0],
            "extensions": {"in_use": IMPLEMENTATION == "compiled", "detail": describe()},
            "prices_as_of": __import__("helix.routing.models").routing.models.prices_as_of(),
            "uptime_s": round(now - self.master_started, 3),
            "served_by": self._self(now),
            "workers": self._workers(now),
            "deployments": self._deployments(),
            "cache": self._component("cache", self.config.caching),
            "rate_limits": self._component("rate_limits", self.config.rate_limits),
            "observability": self._observability(),
        }

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
        for dep in self.registry.all_deployments():
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
