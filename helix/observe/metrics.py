"""Prometheus metrics aggregated in shared memory: one view over every worker.

Why not prometheus-client's multiprocess mode: it writes a file-backed mmap
through a lock per observation and reads one file per worker and family at
scrape time, with a directory to create and clean.  Here each worker owns a
block of rows in the master's anonymous ``MAP_SHARED`` mapping (allocated
before fork by :func:`plan_shm`) and adds to them with plain 8-byte stores
(single writer per row, so no lock).  ``GET /metrics`` folds every block,
live or dead, into one exposition.  ``tests/observe/bench_recorder.py``
measures both.

Layout (per worker slot ``w`` -- ``WorkerContext.index``)::

    obs_meta   [w]                 rows in use:  req, aux          ('Q')
    obs_rkeys  [w*S + r]           label key of request row r      ('B', 1 len byte + utf-8)
    obs_req    [w*S + r, REQ_COLS] request counters and histograms ('d')
    obs_akeys  [w*A + r]           label key of aux row r
    obs_aux    [w*A + r]           one value (counter or gauge)    ('d')

A row's key is written before the row count that publishes it, so a scrape
never reads a half-written key.  Rows are never freed: a worker that takes
over a dead worker's slot adopts its rows and keeps counting, so counters
stay monotonic across a worker restart (and a retired worker's rows are
still summed).  Gauges (aux rows of gauge families) are zeroed on adoption
and only read from live workers.

Request rows are keyed ``(endpoint, model, provider, status)`` (model = the
deployment's model id, provider = the provider's config name); histograms are
exposed with the status folded away.  Families that mirror OpenTelemetry's
GenAI semantic conventions keep their names and bucket advice, with the
``helix_`` prefix and the unit as suffix:

    gen_ai.server.request.duration     -> helix_gen_ai_server_request_duration_seconds
    gen_ai.server.time_to_first_token  -> helix_gen_ai_server_time_to_first_token_seconds
    gen_ai.client.operation.duration   -> helix_gen_ai_client_operation_duration_seconds
    gen_ai.client.token.usage          -> helix_gen_ai_client_token_usage_tokens{token_type}

When a row block is full, further label sets share one overflow row
(``model="other"``) so a client cannot grow shared memory.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from helix.master.shm import RESTARTS_TABLE

log = logging.getLogger("helix.observe")

META = "obs_meta"
RKEYS = "obs_rkeys"
REQ = "obs_req"
AKEYS = "obs_akeys"
AUX = "obs_aux"
# Written by the master: unexpected worker exits, by worker number.
RESTARTS = RESTARTS_TABLE

KEY_BYTES = 256  # 1 length byte + up to 255 bytes of key
AUX_ROWS = 256
SEP = "\x1f"
OVERFLOW = "other"

# OpenTelemetry GenAI semantic-convention bucket advice.
DURATION_BOUNDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                   40.96, 81.92)
TTFT_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
               5.0, 7.5, 10.0)
TOKEN_BOUNDS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                16777216, 67108864)

# Request row columns.  A histogram is [sum, bucket_0 .. bucket_n, +Inf bucket] (non-cumulative;
# its count is the sum of its buckets).
C_REQUESTS = 0
C_COST = 1
C_DUR = 2
C_UP = C_DUR + len(DURATION_BOUNDS) + 2
C_TTFT = C_UP + len(DURATION_BOUNDS) + 2
C_TOK_IN = C_TTFT + len(TTFT_BOUNDS) + 2
C_TOK_OUT = C_TOK_IN + len(TOKEN_BOUNDS) + 2
REQ_COLS = C_TOK_OUT + len(TOKEN_BOUNDS) + 2

HISTOGRAMS = (
    # (name, help, first column, bounds, extra labels)
    ("helix_gen_ai_server_request_duration_seconds",
     "Time from request received to response complete (gen_ai.server.request.duration).",
     C_DUR, DURATION_BOUNDS, ""),
    ("helix_gen_ai_client_operation_duration_seconds",
     "Upstream duration: request sent to the provider until its answer is relayed "
     "(gen_ai.client.operation.duration).",
     C_UP, DURATION_BOUNDS, ""),
    ("helix_gen_ai_server_time_to_first_token_seconds",
     "Time from request received to the first streamed chunk relayed "
     "(gen_ai.server.time_to_first_token).",
     C_TTFT, TTFT_BOUNDS, ""),
    ("helix_gen_ai_client_token_usage_tokens",
     "Tokens per request by type (gen_ai.client.token.usage).",
     C_TOK_IN, TOKEN_BOUNDS, 'token_type="input"'),
    ("helix_gen_ai_client_token_usage_tokens",
     "Tokens per request by type (gen_ai.client.token.usage).",
     C_TOK_OUT, TOKEN_BOUNDS, 'token_type="output"'),
)

# Aux families: name -> (type, help, label names).  Gauges are per live worker, folded by
# ``fold`` ("sum" or "min").
AUX_FAMILIES: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "helix_cache_lookups_total": (
        "counter", "Response cache lookups by result (hit or miss).", ("result",), "sum"),
    "helix_ratelimit_rejected_requests_total": (
        "counter", "Requests refused by a rate limit, by limit scope.", ("scope",), "sum"),
    "helix_ratelimit_queued_requests_total": (
        "counter", "Requests over a limit that waited in the rate-limit queue "
        "(rate_limits.queue), by priority.", ("priority",), "sum"),
    "helix_ratelimit_backend_errors_total": (
        "counter", "Rate-limit backend (Redis) calls that failed or timed out; the "
        "failure_policy decided those requests.", (), "sum"),
    "helix_resilience_retries_total": (
        "counter", "Upstream attempts retried, by provider and model.",
        ("provider", "model"), "sum"),
    "helix_resilience_hedges_total": (
        "counter", "Hedged attempts started (resilience.hedge), by the deployment they went to.",
        ("provider", "model"), "sum"),
    "helix_resilience_first_token_timeouts_total": (
        "counter", "Attempts abandoned at their first-token deadline "
        "(resilience.first_token_timeout).", ("provider", "model"), "sum"),
    "helix_resilience_fallbacks_total": (
        "counter", "Requests that fell back to another model.", ("from_model", "to_model"),
        "sum"),
    "helix_deployment_healthy": (
        "gauge", "1 if every live worker considers the deployment healthy, else 0.",
        ("provider", "model"), "min"),
    "helix_deployment_in_flight_requests": (
        "gauge", "Requests in flight to a deployment.", ("provider", "model"), "sum"),
    "helix_deployment_latency_ewma_seconds": (
        "gauge", "PeakEWMA latency of a deployment (time to first token for streams).",
        ("provider", "model"), "sum"),
    "helix_prompt_cache_read_tokens_total": (
        "counter", "Prompt tokens the provider read from its prompt cache, by deployment.",
        ("provider", "model"), "sum"),
    "helix_prompt_cache_write_tokens_total": (
        "counter", "Prompt tokens the provider wrote to its prompt cache, by deployment.",
        ("provider", "model"), "sum"),
    "helix_tracing_requests_exported_total": (
        "counter", "Sampled requests whose spans the OTLP collector accepted.", (), "sum"),
    "helix_tracing_requests_dropped_total": (
        "counter", "Sampled requests whose spans were dropped (queue full, or export failed "
        "after retries).", (), "sum"),
    "helix_helicone_records_exported_total": (
        "counter", "Request logs accepted by Helicone.", (), "sum"),
    "helix_helicone_records_dropped_total": (
        "counter", "Request logs dropped (queue full, or export failed after retries).",
        (), "sum"),
}


def plan_shm(layout, config, capacity: int) -> None:
    """Arbiter hook: reserve the metric tables before the fork (only when metrics are on)."""
    mcfg = config.observability.metrics
    if mcfg is None or not mcfg.enabled:
        return
    rows = max(int(mcfg.max_series), 2)
    layout.alloc(META, rows=capacity, cols=2, dtype="Q")
    layout.alloc(RKEYS, rows=capacity * rows, cols=KEY_BYTES, dtype="B")
    layout.alloc(REQ, rows=capacity * rows, cols=REQ_COLS, dtype="d")
    layout.alloc(AKEYS, rows=capacity * AUX_ROWS, cols=KEY_BYTES, dtype="B")
    layout.alloc(AUX, rows=capacity * AUX_ROWS, cols=1, dtype="d")


def _encode_key(parts) -> bytes:
    raw = SEP.join(str(p) for p in parts).encode("utf-8", "replace")
    if len(raw) > KEY_BYTES - 1:
        raw = raw[: KEY_BYTES - 1]
    return raw


class _Block:
    """One worker's rows of a keyed table: label tuple -> flat index of the row's first cell."""

    __slots__ = ("_parse", "cols", "data", "index", "keys", "meta", "meta_col", "overflow",
                 "per_worker", "row0", "used")

    def __init__(self, keys, data, meta, meta_col: int, slot: int, per_worker: int,
                 parse: Callable[[list[str]], tuple], overflow: tuple) -> None:
        self.keys = keys.view
        self.data = data.view
        self.cols = data.cols
        self.meta = meta.view
        self.meta_col = slot * meta.cols + meta_col
        self.per_worker = per_worker
        self.row0 = slot * per_worker
        self.index: dict[tuple, int] = {}
        self._parse = parse
        self.overflow = overflow
        self.used = 0
        self._adopt()

    def _adopt(self) -> None:
        used = min(int(self.meta[self.meta_col]), self.per_worker)
        for r in range(used):
            key = read_key(self.keys, self.row0 + r)
            try:
                parsed = self._parse(key.split(SEP))
            except (ValueError, IndexError):
                continue
            self.index[parsed] = (self.row0 + r) * self.cols
        self.used = used

    def row(self, key: tuple) -> int:
        """Flat index of ``key``'s row, claiming a new row the first time."""
        i = self.index.get(key)
        if i is not None:
            return i
        if self.used >= self.per_worker - 1 and key != self.overflow:
            i = self.row(self.overflow)
            self.index[key] = i
            return i
        r = self.row0 + self.used
        raw = _encode_key(key)
        base = r * KEY_BYTES
        self.keys[base + 1 : base + 1 + len(raw)] = raw
        self.keys[base] = len(raw)
        start = r * self.cols
        for c in range(self.cols):
            self.data[start + c] = 0.0
        self.used += 1
        self.meta[self.meta_col] = self.used  # publish
        self.index[key] = start
        return start


def read_key(keys, row: int) -> str:
    base = row * KEY_BYTES
    n = keys[base]
    return bytes(keys[base + 1 : base + 1 + n]).decode("utf-8", "replace")


def _parse_req(parts: list[str]) -> tuple:
    endpoint, model, provider, status = parts
    return (endpoint, model, provider, int(status))


def _parse_aux(parts: list[str]) -> tuple:
    return tuple(parts)


class Metrics:
    """The worker's recorder and the scrape-side fold.

    ``Metrics.attach(worker, config)`` returns None when the tables are not in
    shared memory (metrics off, or switched on by a reload: the mapping is
    sized at master start).
    """

    def __init__(self, shm, slot: int, capacity: int, per_worker: int) -> None:
        self.shm = shm
        # Scrape-time providers of gauge values ({(family, *labels): value}) for state
        # another feature already keeps in shared memory (the balancer's health table):
        # read when /metrics is served, never on the request path.
        self.gauges: list[Callable[[], dict[tuple, float]]] = []
        self.slot = slot
        self.capacity = capacity
        self.per_worker = per_worker
        meta = shm.table(META)
        self.req = _Block(shm.table(RKEYS), shm.table(REQ), meta, 0, slot, per_worker,
                          _parse_req, ("", OVERFLOW, OVERFLOW, 0))
        self.aux = _Block(shm.table(AKEYS), shm.table(AUX), meta, 1, slot, AUX_ROWS,
                          _parse_aux, ("helix_overflow",))
        # Gauges of a previous occupant of this slot are stale: it is gone.
        view = self.aux.data
        for key, i in self.aux.index.items():
            spec = AUX_FAMILIES.get(key[0])
            if spec is not None and spec[0] == "gauge":
                view[i] = 0.0

    @classmethod
    def attach(cls, worker, config) -> Metrics | None:
        mcfg = config.observability.metrics
        if mcfg is None or not mcfg.enabled or worker is None:
            return None
        shm = worker.shm
        if REQ not in shm:
            log.warning("metrics were enabled by a reload; restart Helix to allocate them")
            return None
        capacity = shm.table(META).rows
        per_worker = shm.table(REQ).rows // capacity
        return cls(shm, worker.index, capacity, per_worker)

    # -- the request recorder (the hot path) ------------------------------------------

    def recorder(self) -> Callable:
        """The request recorder: ``recorder(ctx)`` adds a finished request to its row
        (helix/_fast/hist_py.py RequestRecorder; compiled in hist_c, one C call)."""
        from helix._fast import RequestRecorder, RowWriter

        writer = RowWriter(self.req.data, REQ_COLS, DURATION_BOUNDS, TTFT_BOUNDS, TOKEN_BOUNDS,
                           C_COST, C_DUR, C_UP, C_TTFT, C_TOK_IN, C_TOK_OUT)
        add = self.add

        def prompt_cache(dep, usage) -> None:
            labels = (dep.provider, dep.model_id)
            if usage.cache_read:
                add("helix_prompt_cache_read_tokens_total", labels, usage.cache_read)
            if usage.cache_write:
                add("helix_prompt_cache_write_tokens_total", labels, usage.cache_write)

        return RequestRecorder(writer, self.req.index, self.req.row, prompt_cache,
                               self.cache_result, time.monotonic)

    # -- the recording API for other features (cheap; call as often as needed) --------

    def add(self, family: str, labels: tuple[str, ...] = (), value: float = 1.0) -> None:
        """Add ``value`` to an aux family's series (counters; gauges take +/- deltas)."""
        i = self.aux.row((family, *labels))
        self.aux.data[i] += value

    def set(self, family: str, labels: tuple[str, ...], value: float) -> None:
        i = self.aux.row((family, *labels))
        self.aux.data[i] = value

    def cache_result(self, hit: bool) -> None:
        self.add("helix_cache_lookups_total", ("hit" if hit else "miss",))

    def rate_limited(self, scope: str) -> None:
        """``scope``: global, per_user, per_team or per_key."""
        self.add("helix_ratelimit_rejected_requests_total", (scope,))

    def retry(self, provider: str, model: str) -> None:
        self.add("helix_resilience_retries_total", (provider, model))

    def fallback(self, from_model: str, to_model: str) -> None:
        self.add("helix_resilience_fallbacks_total", (from_model, to_model))

    def deployment_health(self, provider: str, model: str, healthy: bool) -> None:
        self.set("helix_deployment_healthy", (provider, model), 1.0 if healthy else 0.0)

    def deployment_in_flight(self, provider: str, model: str, delta: int) -> None:
        self.add("helix_deployment_in_flight_requests", (provider, model), float(delta))

    # -- the scrape side ---------------------------------------------------------------

    def live_slots(self) -> set[int]:
        from helix.master.shm import FREE

        slots = self.shm.workers
        return {i for i in range(slots.capacity) if slots.state(i) != FREE}

    def fold_requests(self) -> dict[tuple, list[float]]:
        """Every request row of every worker (live or not), summed by key."""
        return _fold(self.shm.table(META).view, 0, 2, self.shm.table(RKEYS).view,
                     self.shm.table(REQ), self.capacity, self.per_worker, _parse_req)

    def fold_aux(self) -> dict[tuple, float]:
        live = self.live_slots()
        meta = self.shm.table(META).view
        keys = self.shm.table(AKEYS).view
        data = self.shm.table(AUX).view
        out: dict[tuple, float] = {}
        for w in range(self.capacity):
            used = min(int(meta[w * 2 + 1]), AUX_ROWS)
            for r in range(used):
                row = w * AUX_ROWS + r
                key = tuple(read_key(keys, row).split(SEP))
                spec = AUX_FAMILIES.get(key[0])
                if spec is None:
                    continue
                value = data[row]
                if spec[0] == "gauge":
                    if w not in live:
                        continue
                    if spec[3] == "min" and key in out:
                        out[key] = min(out[key], value)
                        continue
                out[key] = out.get(key, 0.0) + value
        return out

    def render(self, extra: Callable[[list[str]], None] | None = None) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of everything in shared memory."""
        lines: list[str] = []
        rows = self.fold_requests()
        _render_requests(lines, rows)
        aux = self.fold_aux()
        for gauges in self.gauges:  # state other features keep in shared memory already
            aux.update(gauges())
        _render_aux(lines, aux)
        _render_workers(lines, self.shm)
        if extra is not None:
            extra(lines)
        lines.append("")
        return "\n".join(lines).encode("utf-8")


def _fold(meta, col, meta_cols, keys, table, capacity, per_worker, parse) -> dict:
    data = table.view
    cols = table.cols
    out: dict[tuple, list[float]] = {}
    for w in range(capacity):
        used = min(int(meta[w * meta_cols + col]), per_worker)
        for r in range(used):
            row = w * per_worker + r
            try:
                key = parse(read_key(keys, row).split(SEP))
            except (ValueError, IndexError):
                continue
            values = data[row * cols : (row + 1) * cols].tolist()
            have = out.get(key)
            if have is None:
                out[key] = values
            else:
                for c in range(cols):
                    have[c] += values[c]
    return out


# -- exposition --------------------------------------------------------------------------


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def num(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def _labels(**kv: str) -> str:
    return ",".join(f'{k}="{escape(str(v))}"' for k, v in kv.items())


def _render_requests(lines: list[str], rows: dict[tuple, list[float]]) -> None:
    lines.append("# HELP helix_http_requests_total Requests answered, by endpoint, model, "
                 "provider and HTTP status.")
    lines.append("# TYPE helix_http_requests_total counter")
    by_series: dict[tuple, list[float]] = {}
    for (endpoint, model, provider, status), values in sorted(rows.items()):
        lbl = _labels(endpoint=endpoint, model=model, provider=provider, status=str(status))
        lines.append(f"helix_http_requests_total{{{lbl}}} {num(values[C_REQUESTS])}")
        key = (endpoint, model, provider)
        have = by_series.get(key)
        if have is None:
            by_series[key] = list(values)
        else:
            for c in range(len(values)):
                have[c] += values[c]
    lines.append("# HELP helix_gen_ai_cost_usd_total Cost of the answered requests in USD "
                 "(from the model table's prices).")
    lines.append("# TYPE helix_gen_ai_cost_usd_total counter")
    for (endpoint, model, provider), values in by_series.items():
        lbl = _labels(endpoint=endpoint, model=model, provider=provider)
        lines.append(f"helix_gen_ai_cost_usd_total{{{lbl}}} {num(values[C_COST])}")
    seen: set[str] = set()
    for name, help_, col, bounds, extra in HISTOGRAMS:
        if name not in seen:
            seen.add(name)
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} histogram")
        for (endpoint, model, provider), values in by_series.items():
            lbl = _labels(endpoint=endpoint, model=model, provider=provider)
            if extra:
                lbl = f"{lbl},{extra}"
            cum = 0.0
            for i, bound in enumerate(bounds):
                cum += values[col + 1 + i]
                lines.append(f'{name}_bucket{{{lbl},le="{num(bound)}"}} {num(cum)}')
            cum += values[col + 1 + len(bounds)]
            lines.append(f'{name}_bucket{{{lbl},le="+Inf"}} {num(cum)}')
            lines.append(f"{name}_sum{{{lbl}}} {num(values[col])}")
            lines.append(f"{name}_count{{{lbl}}} {num(cum)}")


def _render_aux(lines: list[str], values: dict[tuple, float]) -> None:
    for family, (kind, help_, label_names, _) in AUX_FAMILIES.items():
        lines.append(f"# HELP {family} {help_}")
        lines.append(f"# TYPE {family} {kind}")
        series = [(k[1:], v) for k, v in values.items() if k[0] == family]
        if not series and not label_names:
            series = [((), 0.0)]
        for labels, v in sorted(series):
            if len(labels) != len(label_names):
                continue
            lbl = _labels(**dict(zip(label_names, labels, strict=True)))
            lines.append(f"{family}{{{lbl}}} {num(v)}" if lbl else f"{family} {num(v)}")


def _render_workers(lines: list[str], shm) -> None:
    from helix.master.shm import FREE, STATE_NAMES

    snap = shm.workers.snapshot()
    lines.append("# HELP helix_server_requests_in_flight Requests being served now "
                 "(as of each worker's last heartbeat).")
    lines.append("# TYPE helix_server_requests_in_flight gauge")
    lines.append(f"helix_server_requests_in_flight {sum(w['in_flight'] for w in snap)}")
    lines.append("# HELP helix_server_connections Open client connections.")
    lines.append("# TYPE helix_server_connections gauge")
    lines.append(f"helix_server_connections {sum(w['connections'] for w in snap)}")
    lines.append("# HELP helix_worker_processes Worker processes by state.")
    lines.append("# TYPE helix_worker_processes gauge")
    for state, name in STATE_NAMES.items():
        if state != FREE:
            count = sum(1 for w in snap if w["state"] == state)
            lines.append(f'helix_worker_processes{{state="{name}"}} {count}')
    lines.append("# HELP helix_worker_restarts_total Workers respawned after an unexpected exit.")
    lines.append("# TYPE helix_worker_restarts_total counter")
    restarts = shm.table(RESTARTS).view.tolist() if RESTARTS in shm else []
    lines.append(f"helix_worker_restarts_total {sum(restarts)}")
