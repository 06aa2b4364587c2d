"""cache: look the answer up after ``route`` (the key needs the resolved model); store it after.

``make_cache_lookup(cache, endpoint)`` is the phase; it is in a pipeline only
when ``caching`` is configured and has a rule for that endpoint.  Per request
it decides synchronously (headers, key) and only then does I/O:

* ``Helicone-Cache-Enabled: true|false`` turns caching on or off for this
  request (``caching.enabled`` is the default); ``Cache-Control: no-store``
  bypasses it, ``no-cache`` skips the lookup but stores the answer,
  ``max-age=N`` accepts only answers at most N seconds old.
* A hit answers here (``Helicone-Cache: HIT``, ``Age``), a stream request as
  SSE and a non-stream one as JSON whichever way the answer was stored.
* A miss adds ``Helicone-Cache: MISS`` and sets ``ctx.capture``, which
  ``forward`` fills with the stream it relays (a JSON answer is
  ``ctx.response_body``); the recorder :func:`cache_store`
  (always run, never failing) turns a complete 2xx answer into an entry,
  hands it to single-flight followers and writes it off the response path.

Every answered or missed lookup carries ``x-helix-cache-key`` (the storage
key: a hash, usable with ``POST /admin/cache/purge``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

import msgspec

from helix.cache import MAX_BUCKET, Cache
from helix.cache.key import model_identity, namespace, storage_key
from helix.cache.store import JSON, SSE, Answer, Entry, merged, pick
from helix.errors import ErrorKind, HelixError
from helix.pipeline.context import RequestContext
from helix.schema.usage import Usage

_JSON_TYPE = (b"content-type", b"application/json")
_SSE_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")
_HIT = (b"helicone-cache", b"HIT")
_MISS = (b"helicone-cache", b"MISS")


def tenant_of(ctx: RequestContext) -> str:
    """Whose cache this request reads: the credential the client presented in its API's way
    (``Authorization: Bearer`` or ``x-api-key``) -- with gateway keys configured, that is
    its Helix key -- hashed, never kept raw, and ``Helicone-User-Id``, both when given.
    The same key sent by an OpenAI and an Anthropic client is one tenant."""
    headers = ctx.exchange.request.headers
    token = ctx.api.credential(headers)
    parts = []
    if token:
        parts.append("k:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32])
    user = headers.get("helicone-user-id")
    if user:
        parts.append("u:" + user)
    return "|".join(parts)


class CacheControl:
    __slots__ = ("max_age", "no_cache", "no_store")

    def __init__(self, value: str | None) -> None:
        self.no_cache = self.no_store = False
        self.max_age: float | None = None
        if not value:
            return
        for part in value.lower().split(","):
            name, _, arg = part.strip().partition("=")
            if name == "no-store":
                self.no_store = True
            elif name == "no-cache":
                self.no_cache = True
            elif name == "max-age":
                try:
                    self.max_age = max(0.0, float(arg.strip().strip('"')))
                except ValueError:
                    raise HelixError(
                        ErrorKind.INVALID_REQUEST,
                        f"Invalid Cache-Control max-age {arg!r}: expected seconds.",
                    ) from None


def _bucket(value: str | None) -> int:
    if value is None:
        return 1
    try:
        n = int(value.strip())
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_BUCKET:
        raise HelixError(
            ErrorKind.INVALID_REQUEST,
            f"Invalid Helicone-Cache-Bucket-Max-Size {value!r}: expected an integer from 1 to "
            f"{MAX_BUCKET}.",
        )
    return n


class Pending:
    """A miss on its way upstream: ``forward`` appends the stream it relays (``ctx.capture``)."""

    __slots__ = ("bucket", "cache", "chunks", "flight", "key", "previous", "ttl")

    def __init__(self, cache: Cache, key: str, ttl: float, bucket: int) -> None:
        self.cache = cache
        self.key = key
        self.ttl = ttl
        self.bucket = bucket
        self.chunks: list[bytes] = []
        self.flight = None
        self.previous: Entry | None = None

    def append(self, data: bytes) -> None:
        self.chunks.append(data)


def serve(ctx: RequestContext, answer: Answer, now: float, key: str) -> None:
    """Answer the client from ``answer`` (a hit or a single-flight leader's answer), as a
    stream or as JSON whichever way it was stored (the client's API replays it)."""
    api = ctx.api
    age = max(0, int(now - answer.stored_at))
    extra = [_HIT, (b"age", b"%d" % age), (b"x-helix-cache-key", key.encode())]
    extra.extend(ctx.response_headers)
    exchange = ctx.exchange
    data = api.cache_replay(ctx, answer.kind == SSE, answer.body)
    if api.streams and ctx.view.stream:
        ctx.status = 200
        ctx.first_chunk_at = time.monotonic()
        exchange.start_stream(200, [_SSE_TYPE, *extra], data)
        ctx.committed = True
        exchange.end_stream()
    else:
        ctx.status = 200
        exchange.respond(200, [_JSON_TYPE, *extra], data)
        ctx.committed = True
    ctx.usage = _usage(answer.usage)
    ctx.cost = 0.0
    ctx.cache = "hit"


def make_cache_lookup(cache: Cache, endpoint: str):
    """The lookup phase for the client API named ``endpoint``."""
    rule = cache.rules[endpoint]
    default_on = cache.enabled
    shared = cache.shared
    memory = cache.memory
    store = cache.store
    flights = cache.flights
    flight_timeout = cache.flight_timeout
    stats = cache.stats
    include = rule.include
    ttl = rule.ttl

    async def cache_lookup(ctx: RequestContext) -> bool:
        request = ctx.exchange.request
        headers = request.headers
        on = headers.get("helicone-cache-enabled")
        if not (default_on if on is None else on.strip().lower() == "true"):
            return False
        cc = CacheControl(headers.get("cache-control"))
        if cc.no_store:
            return False
        bucket = _bucket(headers.get("helicone-cache-bucket-max-size"))
        key = storage_key(
            endpoint, request.body, model_identity(ctx.candidates),
            None if shared else tenant_of(ctx), include, headers.get("helicone-cache-seed"),
        )
        pending = Pending(cache, key, ttl, bucket)
        # From here the recorder owns the request's flight: whatever happens (an error, a
        # cancelled client), cache_store finishes it.
        ctx.capture = pending
        if not cc.no_cache:
            if flights is not None:
                fut, leader = flights.join(key)
                if leader:
                    pending.flight = fut
                else:
                    answer = await flights.wait(fut, flight_timeout)
                    if answer is not None:
                        ctx.capture = None
                        stats.hits += 1
                        serve(ctx, answer, time.time(), key)
                        return True
            if memory is not None:
                entry = memory.get_now(key)
            else:
                entry = await store.get(key)
            now = time.time()
            answer = pick(entry, now, bucket, cc.max_age)
            if answer is not None:
                ctx.capture = None
                if pending.flight is not None:
                    flights.finish(key, pending.flight, answer)
                stats.hits += 1
                serve(ctx, answer, now, key)
                return True
            pending.previous = entry
        stats.misses += 1
        ctx.cache = "miss"
        ctx.response_headers.append(_MISS)
        ctx.response_headers.append((b"x-helix-cache-key", key.encode()))
        return False

    return cache_lookup


def cache_store(ctx: RequestContext) -> None:
    """Recorder: store a complete 2xx answer; always finish this request's flight."""
    pending = ctx.capture
    if not isinstance(pending, Pending):
        return
    ctx.capture = None
    cache = pending.cache
    answer = None
    try:
        # A stream arrives through ctx.capture (Pending.append), a JSON answer as
        # ctx.response_body (set by forward for every non-stream answer).
        body = b"".join(pending.chunks) if pending.chunks else ctx.response_body
        if ctx.error is None and 200 <= ctx.status < 300 and ctx.exchange.finished and body:
            kind = JSON if body.lstrip()[:1] == b"{" else SSE
            if kind == SSE and not ctx.api.cache_complete(body):
                return  # a stream that did not finish is not an answer
            if len(body) > cache.max_entry_bytes:
                cache.stats.too_large += 1
                return
            now = time.time()
            answer = Answer(kind, body, now, now + pending.ttl, _plain(ctx.usage))
            entry = merged(pending.previous, answer, pending.bucket, now)
            if entry.size > cache.max_entry_bytes:
                entry = Entry([answer])
            cache.save(pending.key, entry, pending.ttl)
    finally:
        if pending.flight is not None:
            cache.flights.finish(pending.key, pending.flight, answer)


def _plain(usage: Usage | None) -> dict | None:
    return None if usage is None else msgspec.to_builtins(usage)


def _usage(stored) -> Usage | None:
    if not isinstance(stored, dict):
        return None
    try:
        return msgspec.convert(stored, Usage)
    except msgspec.ValidationError:
        return None




_KEY_RE = re.compile(r"^(_|s[0-9a-f]{32})/[0-9a-f]{64}$")
_purge_decoder = msgspec.json.Decoder(dict)


def make_purge(cache: Cache):
    """``POST /admin/cache/purge`` with ``Authorization: Bearer <caching.admin_api_key>`` and
    a JSON body: ``{"key": "<x-helix-cache-key>"}``, ``{"seed": "<Helicone-Cache-Seed>"}``
    or ``{"all": true}``.  Answers ``{"purged": n, "backend": ...}``."""
    expected = f"Bearer {cache.admin_key}".encode()

    async def purge(exchange) -> None:
        request = exchange.request
        given = request.headers.get("authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            raise HelixError(
                ErrorKind.AUTH,
                "The cache admin endpoint needs Authorization: Bearer <caching.admin_api_key>.",
            )
        try:
            body = _purge_decoder.decode(request.body or b"{}")
        except (msgspec.DecodeError, msgspec.ValidationError):
            body = None
        if not isinstance(body, dict) or len(body) != 1:
            body = None
        if body is not None and "key" in body and isinstance(body["key"], str):
            if not _KEY_RE.match(body["key"]):
                raise HelixError(
                    ErrorKind.INVALID_REQUEST,
                    "'key' must be an x-helix-cache-key value (<namespace>/<64 hex digits>).",
                    param="key",
                )
            scope, n = "key", await cache.purge(key=body["key"])
        elif body is not None and "seed" in body and isinstance(body["seed"], str) and body["seed"]:
            scope, n = "seed", await cache.purge(prefix=namespace(body["seed"]) + "/")
        elif body is not None and body.get("all") is True:
            scope, n = "all", await cache.purge(prefix="")
        else:
            raise HelixError(
                ErrorKind.INVALID_REQUEST,
                'Expected one of {"key": "..."}, {"seed": "..."} or {"all": true}.',
            )
        out = {"purged": n, "scope": scope, "backend": cache.backend_name,
               # the memory backend is per worker: only the worker that answered purged
               "per_worker": cache.memory is not None}
        exchange.respond(200, [_JSON_TYPE], msgspec.json.encode(out))

    return purge


def with_lookup(phases: list, lookup) -> list:
    """A copy of ``phases`` with ``lookup`` right after ``route`` (the key needs the resolved
    model), or else right before ``forward``."""
    names = [getattr(p, "__name__", "") for p in phases]
    if "route" in names:
        at = names.index("route") + 1
    elif "forward" in names:
        at = names.index("forward")
    else:
        raise ValueError("the cache lookup needs a route or a forward phase")
    return [*phases[:at], lookup, *phases[at:]]


def build(config, pool):
    """The per-worker :class:`Cache` for ``config.caching``; the app adds
    :func:`make_cache_lookup` to each pipeline whose API has a rule, and the
    :func:`cache_store` recorder."""
    return Cache(config.caching, pool)
