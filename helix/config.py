"""Helix configuration: msgspec Structs, ``${VAR}`` interpolation, env-only mode.

The YAML schema of the user's README is the public contract: its keys
(``providers``, ``load_balancing``, ``rate_limits``, ``caching``,
``resilience``, ``observability``) are all here and are never renamed.  Helix
adds keys (``server``, ``upstream``, ``base_url`` ...) where it needs them.

Loading is strict: unknown keys are errors (a typo must not silently disable
a limit), and every error names the key path, the bad value and what was
expected.  A section whose feature is not built in this version is parsed and
then *rejected* by :func:`check_supported` -- accepted-and-ignored config is a
lie to the operator.

Nothing in this module runs on the request path.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

import msgspec

__all__ = [
    "Config",
    "ConfigError",
    "Duration",
    "ModelEntry",
    "ModelOverride",
    "ProviderConfig",
    "ServerConfig",
    "UpstreamConfig",
    "load",
    "load_env",
    "load_file",
    "mask_secrets",
    "to_builtins",
]


class ConfigError(Exception):
    """A config problem; the message names the key path and what was expected."""


# --- durations ("100ms", "5s", 3600) ---------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class Duration(float):
    """Seconds; YAML may say ``3600``, ``2.5``, ``"100ms"``, ``"5s"``, ``"1h"``."""

    @classmethod
    def parse(cls, value: Any) -> Duration:
        if isinstance(value, bool):
            raise ValueError("expected a duration such as 30, '100ms', '5s' or '1h'")
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError("a duration cannot be negative")
            return cls(value)
        if isinstance(value, str):
            m = _DURATION_RE.match(value)
            if m:
                return cls(float(m.group(1)) * _UNIT[m.group(2)])
        raise ValueError("expected a duration such as 30, '100ms', '5s' or '1h'")


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Duration:
        return Duration.parse(obj)
    raise TypeError(f"no decoder for {type_!r}")  # Duration is the only custom type


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Duration):
        return float(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


_STRUCT = {"kw_only": True, "frozen": True, "forbid_unknown_fields": True}


# --- sections ---------------------------------------------------------------------------


class ServerConfig(msgspec.Struct, **_STRUCT):
    """Where and how Helix listens (added by Helix; not in the original README)."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 0  # 0 = one per CPU
    backlog: int = 2048
    graceful_timeout: Duration = Duration(30.0)
    heartbeat_timeout: Duration = Duration(30.0)
    max_body_bytes: int = 32 * 1024 * 1024
    # Request body bytes one worker holds at once (sized for 2 workers in a 128 Mi pod):
    # a body that would go beyond it is a 503 with Retry-After.  Default: 48 MiB, or
    # max_body_bytes when that is larger (see buffered_body_limit).
    max_buffered_body_bytes: int | None = None
    # Per worker; beyond it idle keep-alives are closed first.  A worker serves 10,000
    # concurrent streams (bench/RESULTS.md), so the cap sits above that.
    max_connections: int = 16384
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: Duration = Duration(10.0)
    body_timeout: Duration = Duration(60.0)
    keepalive_timeout: Duration = Duration(75.0)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per CPU), got {self.workers}")
        if self.max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be positive")
        if (
            self.max_buffered_body_bytes is not None
            and self.max_buffered_body_bytes < self.max_body_bytes
        ):
            raise ValueError(
                f"max_buffered_body_bytes ({self.max_buffered_body_bytes}) must be at least "
                f"max_body_bytes ({self.max_body_bytes})"
            )
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")

    @property
    def buffered_body_limit(self) -> int:
        if self.max_buffered_body_bytes is not None:
            return self.max_buffered_body_bytes
        return max(48 * 1024 * 1024, self.max_body_bytes)


class UpstreamConfig(msgspec.Struct, **_STRUCT):
    """Connection pool and timeouts toward providers (Helix addition)."""

    connect_timeout: Duration = Duration(10.0)
    first_byte_timeout: Duration = Duration(600.0)
    read_timeout: Duration = Duration(300.0)
    # Total budget of a non-stream request (and of a stream's response head); a provider's
    # `timeout` overrides it.  Streams: `read_timeout` between chunks, plus `stream_timeout`.
    request_timeout: Duration | None = Duration(600.0)
    stream_timeout: Duration | None = None
    # A non-stream answer larger than this is a 502 (upstream_response_too_large).
    max_response_bytes: int = 32 * 1024 * 1024
    # Streams hold their connection for the whole answer: 1,000 concurrent
    # streams to one provider need 1,000 connections, not a queue.
    max_connections_per_origin: int = 2048
    # Connections kept open between requests.  A gateway's load is many requests in flight
    # at once: every connection that had to be closed because the idle list was full is a
    # new connect (and TLS handshake) a moment later.  None: as many as
    # max_connections_per_origin, so nothing below that churns; idle_timeout trims them.
    max_idle_per_origin: int | None = None
    idle_timeout: Duration = Duration(60.0)
    pool_timeout: Duration = Duration(30.0)

    def __post_init__(self) -> None:
        if self.max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")


class ModelEntry(msgspec.Struct, **_STRUCT):
    """A model a provider serves: the public ``name`` and the provider's own ``id``.

    ``models: [gpt-4o]`` is shorthand for ``{name: gpt-4o, id: gpt-4o}``; for
    Azure the ``id`` is the deployment name.
    """

    name: str
    id: str | None = None
    type: Literal["chat", "embedding"] | None = None


class ProviderConfig(msgspec.Struct, **_STRUCT):
    name: str
    type: str
    api_key: str | None = None
    models: list[str | ModelEntry] = []
    base_url: str | None = None
    region: str | None = None
    api_version: str | None = None  # Azure OpenAI
    headers: dict[str, str] = {}  # extra headers sent upstream (e.g. OpenRouter's HTTP-Referer)
    organization: str | None = None  # OpenAI-Organization
    timeout: Duration | None = None  # total per-request budget for this provider
    tls_verify: bool = True
    # Anthropic
    anthropic_version: str | None = None  # anthropic-version header (default 2023-06-01)
    # AWS Bedrock (credentials fall back to the standard AWS_* environment variables)
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    # Google Vertex AI (service account: a file path or the JSON itself)
    project: str | None = None
    location: str | None = None
    credentials_file: str | None = None
    credentials_json: str | None = None
    token_url: str | None = None  # OAuth2 token endpoint override (default: the key's token_uri)

    def model_entries(self) -> list[ModelEntry]:
        return [ModelEntry(name=m) if isinstance(m, str) else m for m in self.models]


# The sections below are the README's contract.  They are fully parsed and
# validated now; check_supported() refuses the ones not built in this version.


class HealthConfig(msgspec.Struct, **_STRUCT):
    """Passive health thresholds (Helix addition; see helix/routing/health.py)."""

    consecutive_failures: int = 5
    error_rate: float = 0.5  # open when errors >= error_rate * requests over the window ...
    min_requests: int = 20  # ... and at least this many requests were seen in it
    window: Duration = Duration(30.0)
    cooldown: Duration = Duration(30.0)  # open -> half-open
    connect_cooldown: Duration = Duration(2.0)
    rate_limit_cooldown: Duration = Duration(5.0)  # 429/529 without a reset header
    max_rate_limit_cooldown: Duration = Duration(300.0)
    trial_timeout: Duration = Duration(60.0)


class ModelBalancingConfig(msgspec.Struct, **_STRUCT):
    """Per-model override of the strategy (``load_balancing.models.<name>``)."""

    strategy: Literal["latency_based", "weighted", "cost_based", "round_robin"] | None = None
    fallback: Literal["latency_based", "weighted", "round_robin"] | None = None
    weights: dict[str, float] = {}
    prompt_cache_affinity: bool | None = None  # None: the global setting


class LoadBalancingConfig(msgspec.Struct, **_STRUCT):
    strategy: Literal["latency_based", "weighted", "cost_based", "round_robin"] = "latency_based"
    fallback: Literal["latency_based", "weighted", "round_robin"] | None = None
    weights: dict[str, float] = {}
    # Helix additions.
    models: dict[str, ModelBalancingConfig] = {}
    ewma_decay: Duration = Duration(10.0)  # PeakEWMA time constant
    health: HealthConfig | None = None
    # Requests sharing a prompt prefix go to the same deployment (rendezvous hashing) while
    # it is healthy and its expected latency is at most affinity_tolerance x the best's.
    prompt_cache_affinity: bool = False
    affinity_tolerance: float = 1.5


class LimitSpec(msgspec.Struct, **_STRUCT):
    requests_per_minute: int | None = None
    requests_per_hour: int | None = None
    requests_per_day: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_hour: int | None = None
    tokens_per_day: int | None = None
    cost_per_hour: float | None = None
    cost_per_day: float | None = None


class QueueConfig(msgspec.Struct, **_STRUCT):
    """``rate_limits.queue``: a request over a limit waits (in priority order) up to
    ``max_wait`` for capacity instead of a bare 429 (Helix addition; helix/limit/queue.py)."""

    max_wait: Duration = Duration(10.0)
    max_depth: int = 1000  # requests waiting at once in one limit scope's queue

    def __post_init__(self) -> None:
        if not 0 < self.max_wait <= 3600:
            raise ValueError("max_wait must be > 0 and at most 1h")
        if not 1 <= self.max_depth <= 1_000_000:
            raise ValueError("max_depth must be within 1..1000000")


class RateLimitsConfig(msgspec.Struct, **_STRUCT):
    backend: Literal["local", "redis"] = "local"
    redis_url: str | None = None
    failure_policy: Literal["fail_open", "fail_closed"] = "fail_open"
    global_: LimitSpec | None = msgspec.field(default=None, name="global")
    per_user: LimitSpec | None = None
    per_team: LimitSpec | None = None
    per_key: LimitSpec | None = None
    # Helix additions: redis call timeout (then failure_policy applies), rows of the local
    # shared table (scopes active within a day), and the completion-token estimate used
    # at admission when a request sets no max_tokens.
    redis_timeout: Duration = Duration(0.05)
    local_capacity: int = 16384
    default_max_tokens: int = 1024
    queue: QueueConfig | None = None  # wait for capacity instead of a bare 429


class GatewayKeyConfig(msgspec.Struct, **_STRUCT):
    """A gateway API key (``key`` itself or its ``sha256`` hex digest), who it is, its limits."""

    key: str | None = None
    sha256: str | None = None
    name: str | None = None
    user: str | None = None
    team: str | None = None
    limits: LimitSpec | None = None
    # Queue priority of this key's requests (rate_limits.queue); a Helix-Priority header
    # may lower it, never raise it.  Unset: the header decides (default normal).
    priority: Literal["high", "normal", "low"] | None = None


class AuthConfig(msgspec.Struct, **_STRUCT):
    keys: list[GatewayKeyConfig] = []


class CacheRule(msgspec.Struct, **_STRUCT):
    path: str
    ttl: Duration | None = None
    cache_key_include: list[str] | None = None


class CachingConfig(msgspec.Struct, **_STRUCT):
    enabled: bool = True
    backend: Literal["memory", "redis", "s3"] = "memory"
    ttl: Duration = Duration(3600.0)
    redis_url: str | None = None
    rules: list[CacheRule] = []
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_endpoint: str | None = None
    s3_prefix: str | None = None
    # Helix additions (helix/cache; checked by helix.cache.check_config).
    max_entry_bytes: int = 1024 * 1024  # larger answers are not stored
    memory_max_bytes: int | None = None  # memory backend bound, per worker (LRU); 256 MiB
    shared_across_tenants: bool = False  # True: one tenant may be served another's answer
    single_flight: bool = True  # concurrent identical misses in a worker: one upstream call
    single_flight_timeout: Duration = Duration(30.0)  # how long followers wait for the leader
    redis_timeout: Duration | None = None  # per Redis call, then a miss; default 250ms
    redis_prefix: str | None = None  # default "helix:cache:"
    s3_timeout: Duration | None = None  # per S3 call, then a miss; default 2s
    s3_addressing_style: Literal["path", "virtual"] | None = None  # default: path with
    # s3_endpoint (MinIO, R2, moto ...), virtual for AWS
    s3_access_key_id: str | None = None  # default: AWS_ACCESS_KEY_ID
    s3_secret_access_key: str | None = None  # default: AWS_SECRET_ACCESS_KEY
    s3_session_token: str | None = None  # default: AWS_SESSION_TOKEN
    s3_tls_verify: bool | None = None  # default True
    admin_api_key: str | None = None  # enables POST /admin/cache/purge (Bearer this key)


def default_state_dir(env: dict[str, str] | None = None) -> str:
    """Where Helix keeps state when ``responses.state_dir`` is unset: $HELIX_STATE_DIR, else
    $XDG_STATE_HOME/helix or ~/.local/state/helix."""
    env = os.environ if env is None else env
    if env.get("HELIX_STATE_DIR"):
        return env["HELIX_STATE_DIR"]
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "helix")


class ResponsesConfig(msgspec.Struct, **_STRUCT):
    """Conversation state for /v1/responses answered by providers without a Responses API
    (Helix addition; helix/api/responses/store.py).  OpenAI and Azure keep their own."""

    store: Literal["sqlite", "redis", "none"] = "sqlite"
    # sqlite: the file every worker of this instance shares; default $HELIX_STATE_DIR, else
    # $XDG_STATE_HOME/helix or ~/.local/state/helix.
    state_dir: str | None = None
    redis_url: str | None = None  # redis: every instance sharing it continues any conversation
    redis_timeout: Duration = Duration(0.5)
    ttl: Duration = Duration(30 * 86400.0)  # stored responses expire after this
    max_bytes: int = 1024 * 1024 * 1024  # sqlite: the oldest go first beyond this

    def __post_init__(self) -> None:
        if self.store == "redis" and not self.redis_url:
            raise ValueError("redis_url is required with store: redis")
        if self.store != "redis" and self.redis_url:
            raise ValueError("redis_url is only used with store: redis")
        if self.ttl <= 0:
            raise ValueError("ttl must be > 0")
        if self.max_bytes < 1024 * 1024:
            raise ValueError("max_bytes must be at least 1 MiB")


class RetriesConfig(msgspec.Struct, **_STRUCT):
    max_attempts: int = 3
    backoff: Literal["exponential", "constant"] = "exponential"
    initial_delay: Duration = Duration(0.1)
    max_delay: Duration = Duration(5.0)


class FallbackRule(msgspec.Struct, **_STRUCT):
    primary: str
    fallback: str | list[str]


class HedgeConfig(msgspec.Struct, **_STRUCT):
    """``resilience.hedge``: when an attempt has no first token after ``after``, start
    another on another deployment (up to ``max`` extra); the first token wins."""

    after: Duration = Duration(0.3)
    max: int = 1  # 0: no hedging (to turn it off for one model)


class ModelResilienceConfig(msgspec.Struct, **_STRUCT):
    """Per-model override (``resilience.models.<name>``); 0 / ``max: 0`` turn a feature off."""

    first_token_timeout: Duration | None = None
    hedge: HedgeConfig | None = None


class ResilienceConfig(msgspec.Struct, **_STRUCT):
    retries: RetriesConfig | None = None
    fallbacks: list[FallbackRule] = []
    # Helix additions: no attempt or backoff starts past this (from the request's arrival).
    deadline: Duration | None = None
    # model -> larger-context model, used when the provider says the prompt is too long.
    context_window_fallbacks: dict[str, str] = {}
    # An attempt whose first chunk (a stream) or response head (JSON) has not arrived in
    # this time is abandoned and retried on another deployment (nothing reached the client).
    first_token_timeout: Duration | None = None
    hedge: HedgeConfig | None = None
    models: dict[str, ModelResilienceConfig] = {}


class HeliconeConfig(msgspec.Struct, **_STRUCT):
    """Export each request/response to Helicone's async logging API (on when api_key is set)."""

    api_key: str | None = None
    base_url: str = "https://api.helicone.ai"
    properties: dict[str, str] = {}
    # Helix additions.
    bodies: bool = True  # include request and (non-stream) response bodies
    max_queue: int = 1000  # records waiting for export; more are dropped (and counted)
    max_queue_bytes: int = 32 * 1024 * 1024  # body bytes waiting for export
    batch_size: int = 50  # records sent per flush (concurrently, over keep-alive connections)
    flush_interval: Duration = Duration(1.0)
    max_retries: int = 3  # per record, with exponential backoff
    timeout: Duration = Duration(10.0)

    def __post_init__(self) -> None:
        if self.max_queue < 1 or self.batch_size < 1 or self.max_retries < 0:
            raise ValueError("max_queue and batch_size must be >= 1, max_retries >= 0")
        if not re.match(r"^https?://[^/]+", self.base_url):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")


class TracingConfig(msgspec.Struct, **_STRUCT):
    enabled: bool = False
    endpoint: str | None = None  # OTLP/HTTP; default http://127.0.0.1:4318 (+ /v1/traces)
    # Helix additions.
    headers: dict[str, str] = {}  # sent with every export (e.g. an API key of the backend)
    sample_ratio: float = 1.0  # of new traces; a client's traceparent decides for its own
    service_name: str = "helix"
    max_queue: int = 2048  # spans waiting for export; more are dropped (and counted)
    batch_size: int = 512
    flush_interval: Duration = Duration(1.0)
    max_retries: int = 3
    timeout: Duration = Duration(10.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_ratio <= 1.0:
            raise ValueError(f"sample_ratio must be within 0..1, got {self.sample_ratio}")
        if self.max_queue < 1 or self.batch_size < 1 or self.max_retries < 0:
            raise ValueError("max_queue and batch_size must be >= 1, max_retries >= 0")
        if self.endpoint is not None and not re.match(r"^https?://[^/]+", self.endpoint):
            raise ValueError(f"endpoint must be an http(s) URL, got {self.endpoint!r}")


class MetricsConfig(msgspec.Struct, **_STRUCT):
    enabled: bool = False
    prometheus_endpoint: str = "/metrics"
    # Helix addition: label sets (endpoint, model, provider, status) kept per worker; more
    # share one "other" series.  Fixed at master start (shared memory).
    max_series: int = 512

    def __post_init__(self) -> None:
        if not self.prometheus_endpoint.startswith("/"):
            raise ValueError("prometheus_endpoint must be a path starting with '/'")
        if self.max_series < 2:
            raise ValueError("max_series must be >= 2")


class LoggingConfig(msgspec.Struct, **_STRUCT):
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    format: Literal["text", "json"] = "text"
    access_log: bool = False
    # Helix addition: accept the client's X-Request-Id (else generate one) and return it.
    request_id: bool = True


class AdminConfig(msgspec.Struct, **_STRUCT):
    """Who may read /metrics and /status (Helix addition).  Unset: anyone who can connect.

    With ``api_key``, a request must carry ``Authorization: Bearer <api_key>``; with
    ``allow_from`` (addresses or CIDRs), it must come from one of them.  Both: either.
    """

    api_key: str | None = None
    allow_from: list[str] = []

    def __post_init__(self) -> None:
        if not self.allow_from:
            return
        import ipaddress

        for net in self.allow_from:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"allow_from: not an address or CIDR: {net!r}") from None


class ObservabilityConfig(msgspec.Struct, **_STRUCT):
    helicone: HeliconeConfig | None = None
    tracing: TracingConfig | None = None
    metrics: MetricsConfig | None = None
    logging: LoggingConfig = LoggingConfig()
    admin: AdminConfig = AdminConfig()
    # Helix addition: a server-timing header (Helix's own time, the upstream's) on every
    # API response.
    server_timing: bool = True


class ModelOverride(msgspec.Struct, **_STRUCT):
    """A ``models:`` entry: adds to or overrides the packaged model table.

    ``id`` (or an alias of a packaged model) names the model; the fields given
    replace the packaged ones, ``aliases`` and ``provider_ids`` are added to
    them.  With ``provider`` naming another type than the packaged model's,
    the entry prices the model at that provider only.  Prices are USD per
    million tokens.
    """

    id: str
    provider: str | None = None
    mode: Literal["chat", "embedding"] | None = None
    aliases: list[str] = []
    provider_ids: dict[str, str] = {}
    context_window: int | None = None
    max_output: int | None = None
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None  # prompt-cache writes (Anthropic, Bedrock)


class Config(msgspec.Struct, **_STRUCT):
    server: ServerConfig = ServerConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    providers: list[ProviderConfig] = []
    load_balancing: LoadBalancingConfig | None = None
    rate_limits: RateLimitsConfig | None = None
    auth: AuthConfig | None = None  # gateway API keys (Helix addition; HELIX_API_KEYS too)
    caching: CachingConfig | None = None
    resilience: ResilienceConfig | None = None
    observability: ObservabilityConfig = ObservabilityConfig()
    responses: ResponsesConfig = ResponsesConfig()  # Helix addition: /v1/responses state
    # Model table entries merged over the packaged one (helix/data/models.json).
    models: list[ModelOverride] = []
    # Where this config came from ("env" or a file path); set by the loader.
    source: str = "env"


_SECRET_FIELDS = re.compile(
    r"(api[-_]?key|secret|password|token|credentials|authorization|^key$)", re.I
)


# --- interpolation ----------------------------------------------------------------------

_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-(.*?))?\}")


def _interpolate(node: Any, env: dict[str, str], path: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            val = env.get(name)
            if val is None or (val == "" and ":-" in m.group(0)):
                if default is not None:
                    return default
                raise ConfigError(
                    f"{path.lstrip('.')}: environment variable {name} is not set "
                    f"(write ${{{name}:-default}} to give a default)"
                )
            return val

        out = _VAR_RE.sub(sub, node)
        # A value that was *only* a variable keeps YAML typing ("${PORT}" -> 8080).
        if out != node and _VAR_RE.fullmatch(node.strip()):
            return _yaml_scalar(out)
        return out
    if isinstance(node, dict):
        return {k: _interpolate(v, env, f"{path}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def _yaml_scalar(text: str) -> Any:
    import yaml

    try:
        val = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return val if isinstance(val, int | float | bool) else text


# --- loading ----------------------------------------------------------------------------

_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _value_at(tree: Any, path: str) -> Any:
    node = tree
    for key, idx in _PATH_TOKEN.findall(path):
        try:
            node = node[int(idx)] if idx else node[key]
        except (KeyError, IndexError, TypeError):
            return msgspec.UNSET
    return node


def _explain(err: msgspec.ValidationError, tree: Any) -> str:
    """msgspec says 'Expected `int`, got `str` - at `$.server.port`'; add the bad value."""
    msg = str(err)
    m = re.search(r" - at `\$(.*)`$", msg)
    path = m.group(1) if m else ""
    what = msg[: m.start()] if m else msg
    if what.startswith("Object contains unknown field"):
        key = what.split("`")[1]
        where = f"{path.lstrip('.')}.{key}" if path else key
        return f"{where}: unknown key {key!r} (check its spelling against the config reference)"
    if not m:
        return msg
    value = _value_at(tree, path)
    shown = "" if value is msgspec.UNSET else f" (got {_shown(path, value)})"
    return f"{path.lstrip('.')}: {what}{shown}"


def _shown(path: str, value: Any) -> str:
    """A bad value for an error message: masked when it sits under a secret-bearing key."""
    keys = [k for k, _ in _PATH_TOKEN.findall(path) if k]
    if any(_SECRET_FIELDS.search(k) or k == "headers" for k in keys):
        if isinstance(value, dict | list):
            return repr(mask_secrets(value, "api_key"))
        return repr(_mask(str(value)))
    if isinstance(value, str):
        return repr(_mask_url(value))
    return repr(mask_secrets(value))


def _convert(tree: dict, source: str) -> Config:
    tree = dict(tree)
    tree["source"] = source
    try:
        cfg = msgspec.convert(tree, Config, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, tree)) from None
    _validate(cfg)
    from helix import secrets

    secrets.remember(cfg)  # scrubbed from error bodies and log lines from now on
    return cfg


def load_file(path: str, env: dict[str, str] | None = None) -> Config:
    import yaml

    env = dict(os.environ) if env is None else env
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        # Not str(exc): it quotes the offending line, which may hold a key.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    try:
        tree = _interpolate(raw, env, "")
        tree = _apply_env_overrides(tree, env)
        return _convert(tree, path)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None


def load_env(env: dict[str, str] | None = None) -> Config:
    """Env-only mode: every ``<PROVIDER>_API_KEY`` found configures that provider."""
    from helix.providers import catalog

    env = dict(os.environ) if env is None else env
    providers: list[dict] = []
    for ptype, trigger in catalog.ENV_TRIGGERS.items():
        if not env.get(trigger) or not catalog.is_built(ptype):
            continue
        spec = catalog.spec(ptype)
        if spec.from_env is not None:
            doc = spec.from_env(env)
        elif spec.key_env and env.get(spec.key_env):
            doc = {"name": ptype, "type": ptype, "api_key": env[spec.key_env],
                   "models": list(spec.default_models)}
        else:
            doc = None
        if doc is not None:
            providers.append(doc)
    tree: dict[str, Any] = {"providers": providers}
    if env.get("REDIS_URL"):
        tree["caching"] = {"backend": "redis", "redis_url": env["REDIS_URL"]}
    return _convert(_apply_env_overrides(tree, env), "env")


def env_providers_not_built(env: dict[str, str] | None = None) -> list[str]:
    """Keys in the environment for provider types this version cannot serve yet."""
    from helix.providers import catalog

    env = dict(os.environ) if env is None else env
    return [
        f"{var} ({ptype})"
        for ptype, var in catalog.KEY_ENV_HINTS.items()
        if env.get(var) and not catalog.is_built(ptype)
    ]


def _mapping(tree: dict, name: str) -> dict | None:
    """A copy of section ``name`` to override keys in; None when it is not a mapping (left
    as written, for the validation to refuse with its own message)."""
    section = tree.get(name)
    if section is None:
        return {}
    return dict(section) if isinstance(section, dict) else None


def _apply_env_overrides(tree: dict, env: dict[str, str]) -> dict:
    server = _mapping(tree, "server")
    if server is None:
        return tree
    for var, key, conv in (
        ("HELIX_HOST", "host", str),
        ("HELIX_PORT", "port", int),
        ("HELIX_WORKERS", "workers", int),
    ):
        if env.get(var):
            try:
                server[key] = conv(env[var])
            except ValueError:
                raise ConfigError(f"{var}: expected an integer, got {env[var]!r}") from None
    if server:
        tree = {**tree, "server": server}
    auth = _mapping(tree, "auth") if env.get("HELIX_API_KEYS") else None
    if auth is not None:
        extra = [{"key": k.strip()} for k in env["HELIX_API_KEYS"].split(",") if k.strip()]
        auth["keys"] = [*(auth.get("keys") or []), *extra]
        tree = {**tree, "auth": auth}
    return tree


def load(path: str | None = None, env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ) if env is None else env
    path = path or env.get("HELIX_CONFIG") or None
    return load_file(path, env) if path else load_env(env)


# --- semantic validation ----------------------------------------------------------------


def _validate(cfg: Config) -> None:
    from helix.providers import catalog

    seen: set[str] = set()
    for i, p in enumerate(cfg.providers):
        where = f"providers[{i}]"
        if not p.name or "/" in p.name:
            raise ConfigError(f"{where}.name: must be non-empty and contain no '/', got {p.name!r}")
        if p.name in seen:
            raise ConfigError(f"{where}.name: duplicate provider name {p.name!r}")
        seen.add(p.name)
        if p.type not in catalog.TYPE_MODULES:
            known = ", ".join(catalog.TYPE_MODULES)
            raise ConfigError(
                f"{where}.type: unknown provider type {p.type!r} (expected one of {known})"
            )
        if not catalog.is_built(p.type):
            continue  # refused by check_supported() with its own message
        spec = catalog.spec(p.type)
        if spec.validate is not None:
            spec.validate(p, where)
        if catalog.base_url(spec, p) is None:
            raise ConfigError(f"{where}.base_url: required for type {p.type!r}")
        if p.base_url is not None and not re.match(r"^https?://[^/]+", p.base_url):
            raise ConfigError(
                f"{where}.base_url: expected an http(s) URL, got {_mask_url(p.base_url)!r}"
            )
        if spec.key_required and not p.api_key:
            raise ConfigError(f"{where}.api_key: required for type {p.type!r}")
        names: set[str] = set()
        for j, m in enumerate(p.model_entries()):
            if not m.name:
                raise ConfigError(f"{where}.models[{j}]: empty model name")
            if m.name in names:
                raise ConfigError(f"{where}.models[{j}]: duplicate model {m.name!r}")
            names.add(m.name)
    if cfg.resilience and cfg.resilience.retries and cfg.resilience.retries.max_attempts < 1:
        raise ConfigError("resilience.retries.max_attempts: must be >= 1")
    _validate_models(cfg.models)
    _validate_limits(cfg)


def _validate_limits(cfg: Config) -> None:
    rl, auth = cfg.rate_limits, cfg.auth
    digests: set[str] = set()
    names: set[str] = set()
    for i, k in enumerate(auth.keys if auth else []):
        where = f"auth.keys[{i}]"
        if (k.key is None) == (k.sha256 is None):
            raise ConfigError(f"{where}: give exactly one of 'key' or 'sha256'")
        if k.key is not None:
            if len(k.key) < 8 or k.key != k.key.strip() or " " in k.key:
                raise ConfigError(f"{where}.key: must be at least 8 characters, no spaces")
            import hashlib

            d = hashlib.sha256(k.key.encode()).hexdigest()
        else:
            d = k.sha256.lower()
            if not re.fullmatch(r"[0-9a-f]{64}", d):
                raise ConfigError(
                    f"{where}.sha256: expected 64 hex digits (sha256 of the key), got {k.sha256!r}"
                )
        if d in digests:
            raise ConfigError(f"{where}: duplicate key")
        digests.add(d)
        name = k.name or f"key-{d[:12]}"
        if name in names:
            raise ConfigError(f"{where}.name: duplicate key name {name!r}")
        names.add(name)
    for i, k in enumerate(auth.keys if auth else []):
        if k.priority is not None and (rl is None or rl.queue is None):
            raise ConfigError(
                f"auth.keys[{i}].priority: a key's priority orders the rate-limit queue; "
                f"configure rate_limits.queue (e.g. {{max_wait: 10s}}) or remove it"
            )
    specs = [(f"auth.keys[{i}].limits", k.limits) for i, k in enumerate(auth.keys if auth else [])]
    if rl is not None:
        if rl.backend == "redis" and not rl.redis_url:
            raise ConfigError("rate_limits.redis_url: required with backend: redis")
        if rl.local_capacity < 64:
            raise ConfigError("rate_limits.local_capacity: must be >= 64 rows")
        if rl.default_max_tokens < 0:
            raise ConfigError("rate_limits.default_max_tokens: must be >= 0")
        if not 0 < rl.redis_timeout <= 10:
            raise ConfigError("rate_limits.redis_timeout: must be > 0 and at most 10s")
        if rl.per_key is not None and not (auth and auth.keys):
            raise ConfigError(
                "rate_limits.per_key: needs gateway keys (auth.keys or HELIX_API_KEYS); "
                "without keys there is no key to limit"
            )
        specs += [(f"rate_limits.{n}", getattr(rl, a)) for n, a in (
            ("global", "global_"), ("per_user", "per_user"), ("per_team", "per_team"),
            ("per_key", "per_key"))]
    elif any(k.limits is not None for k in (auth.keys if auth else [])):
        raise ConfigError(
            "auth.keys[].limits: needs a rate_limits section (at least 'rate_limits: {}') "
            "to choose the backend"
        )
    for where, spec in specs:
        for field in LimitSpec.__struct_fields__:
            value = getattr(spec, field) if spec is not None else None
            if value is not None and not 0 < value < float("inf"):
                raise ConfigError(f"{where}.{field}: must be > 0, got {value!r}")


def _validate_models(models: list[ModelOverride]) -> None:
    from helix.providers import catalog

    seen: set[tuple[str | None, str]] = set()
    for i, m in enumerate(models):
        where = f"models[{i}]"
        if not m.id.strip():
            raise ConfigError(f"{where}.id: must be non-empty")
        key = (m.provider, m.id.lower())
        if key in seen:
            raise ConfigError(f"{where}.id: duplicate model {m.id!r} in models")
        seen.add(key)
        for ptype in ([m.provider] if m.provider else []) + list(m.provider_ids):
            if ptype not in catalog.TYPE_MODULES:
                known = ", ".join(catalog.TYPE_MODULES)
                raise ConfigError(
                    f"{where}: unknown provider type {ptype!r} (expected one of {known})"
                )
        for field in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok",
                      "cache_write_per_mtok"):
            value = getattr(m, field)
            if value is not None and not 0 <= value < float("inf"):
                raise ConfigError(
                    f"{where}.{field}: must be a price >= 0 in USD per million tokens, "
                    f"got {value!r}"
                )
        for field in ("context_window", "max_output"):
            value = getattr(m, field)
            if value is not None and value <= 0:
                raise ConfigError(f"{where}.{field}: must be a positive token count, got {value}")


def check_supported(cfg: Config) -> None:
    """Refuse config for features this version does not have yet (never ignore it)."""
    from helix.providers import catalog

    for i, p in enumerate(cfg.providers):
        if not catalog.is_built(p.type):
            raise ConfigError(
                f"providers[{i}].type: provider type {p.type!r} is not available in this version "
                f"of Helix yet (built now: {', '.join(catalog.available_types())})"
            )
    if cfg.caching is not None:
        from helix.cache import check_config

        check_config(cfg.caching)  # refuses the caching keys/values Helix would not honour
    from helix.routing.balancer import check_config as check_balancing
    from helix.routing.resilience import check_config as check_resilience

    check_balancing(cfg)  # refuses load_balancing keys/values Helix would not honour
    check_resilience(cfg)


# --- output -----------------------------------------------------------------------------


def to_builtins(cfg: Config) -> dict:
    return msgspec.to_builtins(cfg, enc_hook=_enc_hook)


def _mask(value: str) -> str:
    if len(value) <= 8:
        return "****"
    return f"{value[:3]}…{value[-4:]}"


_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?:([^/@\s:]*):)?[^/@\s]+@")


def _mask_url(value: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:****@host``; a lone
    ``scheme://token@host`` -> ``scheme://****@host``."""
    if "@" not in value:
        return value
    return _URL_USERINFO.sub(
        lambda m: f"{m.group(1)}{m.group(2) + ':' if m.group(2) is not None else ''}****@", value
    )


def mask_secrets(node: Any, key: str = "") -> Any:
    """A config tree for printing: secret-bearing values masked, URL credentials hidden."""
    if isinstance(node, dict):
        if key == "headers":  # extra upstream headers often carry credentials
            return {k: mask_secrets(v, "api_key" if _header_secret(k) else k)
                    for k, v in node.items()}
        return {k: mask_secrets(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [mask_secrets(v, key) for v in node]
    if _SECRET_FIELDS.search(key) and node is not None and not isinstance(node, bool):
        return _mask(str(node)) if node != "" else node
    if isinstance(node, str) and node:
        return _mask_url(node)
    return node


def _header_secret(name: str) -> bool:
    return re.search(r"(auth|key|token|secret|password|cookie)", name, re.I) is not None
