"""Response caching: config checks and the per-worker :class:`Cache` the phase uses.

Modules: ``key`` (pure canonicalization), ``store`` (entry format, the
guarded remote-backend wrapper, counters), ``memory`` / ``redis`` / ``s3``
(backends), ``singleflight``, ``replay`` (JSON <-> SSE).  The request-path
code is ``helix/phases/cache.py``.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from helix.cache.memory import MemoryBackend
from helix.cache.singleflight import SingleFlight
from helix.cache.store import Entry, Stats, Store

__all__ = ["Cache", "Rule", "check_config", "endpoint_of", "s3_credentials"]

# Helicone-Cache-Bucket-Max-Size is refused above this (an entry holds that many answers).
MAX_BUCKET = 20
DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024
DEFAULT_REDIS_TIMEOUT = 0.25
DEFAULT_S3_TIMEOUT = 2.0
_S3_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*/?$")


class Rule(NamedTuple):
    endpoint: str  # the client API's name: "chat", "embeddings", "messages", ...
    ttl: float
    include: tuple[str, ...] | None  # None: the whole body minus key.DEFAULT_EXCLUDE


def _cacheable() -> dict[str, str]:
    """Path (without /v1) -> the name of the client API served there, for every API whose
    answers can be cached."""
    from helix.api import APIS

    return {p.strip("/").removeprefix("v1/"): api.name
            for api in APIS if api.cacheable for p in api.paths}


def endpoint_of(path: str) -> str | None:
    """A rule's path -> the endpoint it names: ``//chat/completions``, ``/v1/chat/completions``
    and ``chat/completions`` all name ``chat``; None for a path Helix does not cache."""
    p = path.strip().strip("/")
    while "//" in p:
        p = p.replace("//", "/")
    if p.startswith("v1/"):
        p = p[3:]
    return _cacheable().get(p)


def s3_credentials(cfg, env: dict[str, str]):
    from helix.providers.sigv4 import Credentials

    if cfg.s3_access_key_id and cfg.s3_secret_access_key:
        return Credentials(cfg.s3_access_key_id, cfg.s3_secret_access_key,
                           cfg.s3_session_token or None)
    akid, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if akid and secret:
        return Credentials(akid, secret, env.get("AWS_SESSION_TOKEN") or None)
    return None


def rules_of(cfg) -> dict[str, Rule]:
    """endpoint -> rule; no ``rules``: every cacheable endpoint, with ``ttl`` and the default
    key."""
    if not cfg.rules:
        return {e: Rule(e, float(cfg.ttl), None) for e in sorted(set(_cacheable().values()))}
    out: dict[str, Rule] = {}
    for r in cfg.rules:
        endpoint = endpoint_of(r.path)
        if endpoint is None or endpoint in out:
            continue  # refused by check_config
        ttl = float(r.ttl) if r.ttl is not None else float(cfg.ttl)
        include = tuple(r.cache_key_include) if r.cache_key_include is not None else None
        out[endpoint] = Rule(endpoint, ttl, include)
    return out


def check_config(cfg, env: dict[str, str] | None = None) -> None:
    """Refuse caching config Helix would not honour, naming the key (raises ConfigError)."""
    from helix.config import ConfigError

    env = dict(os.environ) if env is None else env
    seen: dict[str, int] = {}
    for i, r in enumerate(cfg.rules):
        where = f"caching.rules[{i}]"
        endpoint = endpoint_of(r.path)
        if endpoint is None:
            paths = ", ".join(sorted("/v1/" + p for p in _cacheable()))
            raise ConfigError(f"{where}.path: Helix caches {paths} only, got {r.path!r}")
        if endpoint in seen:
            raise ConfigError(
                f"{where}.path: {r.path!r} names the same endpoint as caching.rules"
                f"[{seen[endpoint]}]"
            )
        seen[endpoint] = i
        if r.ttl is not None and r.ttl <= 0:
            raise ConfigError(f"{where}.ttl: must be > 0, got {float(r.ttl)}")
        if r.cache_key_include is not None:
            if not r.cache_key_include:
                raise ConfigError(f"{where}.cache_key_include: must name at least one field")
            for name in r.cache_key_include:
                if not isinstance(name, str) or not name or "." in name:
                    raise ConfigError(
                        f"{where}.cache_key_include: top-level request field names only, "
                        f"got {name!r}"
                    )
    if cfg.ttl <= 0:
        raise ConfigError(f"caching.ttl: must be > 0, got {float(cfg.ttl)}")
    for key in ("max_entry_bytes", "memory_max_bytes"):
        value = getattr(cfg, key)
        if value is not None and value <= 0:
            raise ConfigError(f"caching.{key}: must be a positive number of bytes")
    for key in ("redis_timeout", "s3_timeout", "single_flight_timeout"):
        value = getattr(cfg, key)
        if value is not None and value <= 0:
            raise ConfigError(f"caching.{key}: must be > 0")
    if cfg.admin_api_key is not None and len(cfg.admin_api_key) < 16:
        raise ConfigError("caching.admin_api_key: must be at least 16 characters")
    redis_keys = ("redis_url", "redis_timeout", "redis_prefix")
    s3_keys = ("s3_bucket", "s3_region", "s3_endpoint", "s3_prefix", "s3_access_key_id",
               "s3_secret_access_key", "s3_session_token", "s3_timeout", "s3_addressing_style",
               "s3_tls_verify")
    if cfg.backend != "memory" and cfg.memory_max_bytes is not None:
        raise ConfigError(
            f"caching.memory_max_bytes: only used with backend: memory (backend is "
            f"{cfg.backend!r})"
        )
    if cfg.backend != "redis":
        for key in redis_keys:
            if getattr(cfg, key) is not None:
                raise ConfigError(
                    f"caching.{key}: only used with backend: redis (backend is {cfg.backend!r})"
                )
    if cfg.backend != "s3":
        for key in s3_keys:
            if getattr(cfg, key) is not None:
                raise ConfigError(
                    f"caching.{key}: only used with backend: s3 (backend is {cfg.backend!r})"
                )
    if cfg.backend == "redis":
        if not cfg.redis_url:
            raise ConfigError("caching.redis_url: required with backend: redis")
        if not re.match(r"^(redis|rediss|unix|redis\+cluster|rediss\+cluster)://",
                        cfg.redis_url):
            raise ConfigError(
                "caching.redis_url: expected redis://, rediss://, unix:// or (Redis "
                "Cluster) redis+cluster:// / rediss+cluster:// "
                f"(got {cfg.redis_url.split(':', 1)[0]}:...)"
            )
    if cfg.backend == "s3":
        if not cfg.s3_bucket:
            raise ConfigError("caching.s3_bucket: required with backend: s3")
        if not re.match(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$", cfg.s3_bucket):
            raise ConfigError(f"caching.s3_bucket: not a valid bucket name: {cfg.s3_bucket!r}")
        if not cfg.s3_endpoint and not cfg.s3_region:
            raise ConfigError("caching.s3_region: required with backend: s3 (or s3_endpoint)")
        if cfg.s3_endpoint and not re.match(r"^https?://[^/]+", cfg.s3_endpoint):
            raise ConfigError(
                f"caching.s3_endpoint: expected an http(s) URL, got {cfg.s3_endpoint!r}"
            )
        if cfg.s3_prefix is not None and not _S3_PREFIX.match(cfg.s3_prefix):
            raise ConfigError(
                "caching.s3_prefix: letters, digits, '_', '.', '-' and single '/' separators "
                f"only, got {cfg.s3_prefix!r}"
            )
        if bool(cfg.s3_access_key_id) != bool(cfg.s3_secret_access_key):
            raise ConfigError(
                "caching.s3_access_key_id and caching.s3_secret_access_key: give both or neither"
            )
        if s3_credentials(cfg, env) is None:
            raise ConfigError(
                "caching: backend s3 needs credentials: set caching.s3_access_key_id and "
                "caching.s3_secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )


def s3_timeout(cfg) -> float:
    return float(cfg.s3_timeout or DEFAULT_S3_TIMEOUT)


def _s3_backend(cfg, pool):
    from helix.cache.s3 import S3Backend

    region = cfg.s3_region or "us-east-1"
    endpoint = cfg.s3_endpoint or f"https://s3.{region}.amazonaws.com"
    style = cfg.s3_addressing_style or ("path" if cfg.s3_endpoint else "virtual")
    prefix = cfg.s3_prefix or "helix-cache/"
    if not prefix.endswith("/"):
        prefix += "/"
    return S3Backend(
        pool, endpoint=endpoint, bucket=cfg.s3_bucket, region=region, style=style,
        prefix=prefix, credentials=s3_credentials(cfg, dict(os.environ)),
        timeout=s3_timeout(cfg), verify_tls=cfg.s3_tls_verify is not False,
    )


class Cache:
    """Everything one worker's cache phase needs, built once from config."""

    def __init__(self, cfg, pool=None) -> None:
        self.cfg = cfg
        self.enabled = cfg.enabled
        self.rules = rules_of(cfg)
        self.stats = Stats()
        self.max_entry_bytes = cfg.max_entry_bytes
        self.shared = cfg.shared_across_tenants
        self.flights = SingleFlight() if cfg.single_flight else None
        self.flight_timeout = float(cfg.single_flight_timeout)
        self.admin_key = cfg.admin_api_key
        self.memory: MemoryBackend | None = None
        self.store: Store | None = None
        if cfg.backend == "memory":
            limit = cfg.memory_max_bytes or DEFAULT_MEMORY_BYTES
            self.memory = MemoryBackend(limit, self.stats)
            self.backend_name = "memory"
        elif cfg.backend == "redis":
            from helix.cache.redis import RedisBackend

            timeout = float(cfg.redis_timeout or DEFAULT_REDIS_TIMEOUT)
            backend = RedisBackend(cfg.redis_url, timeout, cfg.redis_prefix or "helix:cache:")
            self.store = Store(backend, timeout, self.stats)
            self.backend_name = "redis"
        else:
            self.store = Store(_s3_backend(cfg, pool), s3_timeout(cfg), self.stats)
            self.backend_name = "s3"

    def state(self) -> dict:
        """For GET /status: the backend and this worker's counters (memory is per worker)."""
        out = {"state": "enabled" if self.enabled else "configured, off by default",
               "backend": self.backend_name, "scope": "per worker" if self.memory else "shared",
               "endpoints": sorted(self.rules), "this_worker": self.stats.as_dict()}
        if self.memory is not None:
            out["memory_bytes"] = self.memory.bytes
        return out

    def save(self, key: str, entry: Entry, ttl: float) -> None:
        """Store an entry: now for memory, in a background task for a remote backend."""
        if self.memory is not None:
            self.memory.set_now(key, entry, ttl)
        else:
            self.store.set_later(key, entry, ttl)

    async def purge(self, key: str | None = None, prefix: str | None = None) -> int:
        """Delete one key, or every key starting with ``prefix`` ("" = all)."""
        target = self.memory if self.memory is not None else self.store
        if key is not None:
            return await target.delete(key)
        return await target.delete_prefix(prefix or "")

    async def close(self) -> None:
        if self.memory is not None:
            await self.memory.close()
        if self.store is not None:
            await self.store.close()
