"""The ``redis`` backend: the same checks decided by Lua scripts, exact across instances.

Each admission is one ``EVALSHA`` of :data:`ADMIT_LUA`: Redis runs it
atomically, with its own clock (``TIME``, microseconds), so any number of
Helix instances share one exact count and their clocks do not matter.  The
script is the Lua twin of ``gcra.admit`` and ``budget.reserve`` (all checks
decided first, written only if all pass); ``tests/limit`` runs the same
scenarios against both backends.

Keys (``{helix:rl}:`` prefix; the scope is ``g``, ``t:<team>``, ``u:<user>``
or ``k:<key>``)::

    {helix:rl}:<scope>:<unit>            GCRA tat (us), PEXPIRE when the bucket is full again
    {helix:rl}:<scope>:<unit>:<window>   budget used in that window, PEXPIRE at its end

The ``{helix:rl}`` hash tag puts every limit key in one Redis Cluster slot: an
admission's script touches the keys of several scopes at once and must run
atomically on one node (a cross-slot script is refused by a cluster).  With
``redis+cluster://`` (or ``rediss+cluster://``) URLs Helix uses redis-py's
``RedisCluster`` (:func:`redis_client`), which follows ``MOVED``/``ASK`` and
fail-overs; the limits then live on the master that owns that slot.

Redis down or slow never hangs a request: every call is bounded by
``rate_limits.redis_timeout``; a failure applies ``failure_policy``
(``fail_open``: admit without limits; ``fail_closed``: 503), counts in
:attr:`RedisStore.errors`, logs at most one line per 10 s, and skips Redis for
:data:`RETRY_INTERVAL` before trying again, so an outage costs one timeout
per interval rather than one per request.  The first success after an outage
logs the recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time

from helix.limit.policy import REQUESTS, Check, Result

__all__ = ["ADMIT_LUA", "SETTLE_LUA", "RedisStore", "is_cluster", "redis_client"]

log = logging.getLogger("helix.limit")

RETRY_INTERVAL = 1.0
MAX_CONNECTIONS = 64
LOG_INTERVAL = 10.0
PREFIX = "{helix:rl}:"
_US = 1_000_000

# KEYS[i]: the check's key (a budget's window is appended here).
# ARGV: n, then per check: kind (0 requests, else budget), period_us, limit, amount.
# Returns {allowed, failed (0-based, -1), retry_us, remaining..., reset_us..., window...}.
ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local failed, retry = -1, 0
local news, rem, rst, win, keys = {}, {}, {}, {}, {}
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local kind, period = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local limit, amount = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local ok, wait
  if kind == 0 then
    local iv = math.max(math.floor(period / limit), 1)
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat < now then tat = now end
    local new = tat + amount * iv
    local ahead = new - now
    keys[i] = KEYS[i]
    win[i] = 0
    if ahead > period then
      local backlog = tat - now
      ok, wait = false, ahead - period
      news[i] = tat
      rem[i] = backlog < period and math.floor((period - backlog) / iv) or 0
      rst[i] = backlog
    else
      ok, wait = true, 0
      news[i] = new
      rem[i] = math.floor((period - ahead) / iv)
      rst[i] = ahead
    end
  else
    local w = math.floor(now / period)
    local key = KEYS[i] .. ':' .. w
    local used = tonumber(redis.call('GET', key) or '0')
    local reset = (w + 1) * period - now
    keys[i] = key
    win[i] = w
    rst[i] = reset
    if used + amount > limit then
      ok, wait = false, reset
      rem[i] = math.max(limit - used, 0)
    else
      ok, wait = true, 0
      rem[i] = limit - used - amount
    end
    news[i] = amount
  end
  if not ok and (failed < 0 or wait > retry) then failed, retry = i - 1, wait end
end
if failed < 0 then
  for i = 1, n do
    local b = 1 + (i - 1) * 4
    if tonumber(ARGV[b + 1]) == 0 then
      local ttl = math.floor((news[i] - now) / 1000) + 1000
      redis.call('SET', keys[i], string.format('%.0f', news[i]), 'PX', ttl)
    else
      redis.call('INCRBY', keys[i], string.format('%.0f', news[i]))
      redis.call('PEXPIRE', keys[i], math.floor(rst[i] / 1000) + 1000)
    end
  end
end
local out = {failed < 0 and 1 or 0, failed, retry}
for i = 1, n do out[#out + 1] = rem[i] end
for i = 1, n do out[#out + 1] = rst[i] end
for i = 1, n do out[#out + 1] = win[i] end
return out
"""

# KEYS[i]: a budget check's key (without window).
# ARGV: n, then per check: period_us, reserved window, estimate, actual.
SETTLE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local period, rw = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local est, act = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local w = math.floor(now / period)
  local delta = act
  if rw == w then delta = act - est end
  if delta ~= 0 then
    local key = KEYS[i] .. ':' .. w
    local v = redis.call('INCRBY', key, string.format('%.0f', delta))
    if v < 0 then redis.call('SET', key, '0', 'KEEPTTL') end
    redis.call('PEXPIRE', key, math.floor(((w + 1) * period - now) / 1000) + 1000)
  end
end
return n
"""

_UNIT_NAMES = ("rpm", "rph", "rpd", "tpm", "tph", "tpd", "usdh", "usdd")


def _key(c: Check) -> str:
    return f"{PREFIX}{c.scope}:{_UNIT_NAMES[c.unit]}"


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def redis_client(url: str, timeout: float, *, max_connections: int | None = None):
    """An asyncio redis-py client for ``url``: ``Redis``, or ``RedisCluster`` for
    ``redis+cluster://`` / ``rediss+cluster://`` (one seed node; the client finds the
    others).  Every socket operation is bounded by ``timeout`` and redis-py's own
    retries are off: the caller's failure policy decides what a failure means.
    ``max_connections`` bounds the pool (per node for a cluster); a burst beyond it
    waits up to ``timeout`` for a connection (standalone) or fails (cluster).
    """
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    scheme, sep, rest = url.partition("://")
    common = dict(socket_timeout=timeout, socket_connect_timeout=timeout,
                  health_check_interval=0, retry=Retry(NoBackoff(), 0))
    if sep and scheme.lower() in CLUSTER_SCHEMES:
        from redis.asyncio.cluster import RedisCluster

        kwargs = dict(common)
        if max_connections is not None:
            kwargs["max_connections"] = max_connections
        # A slot move or fail-over is followed (MOVED/ASK, topology refresh) but a dead
        # node is not retried: 1 attempt, then the failure policy.
        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}",
                                     cluster_error_retry_attempts=1, **kwargs)
    import redis.asyncio as aioredis

    if max_connections is None:
        return aioredis.Redis.from_url(url, **common)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout, **common)
    return aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


class RedisDown(Exception):
    """Redis did not answer in time (or at all); the failure policy applies."""


class RedisStore:
    def __init__(self, url: str, timeout: float, clock=time.monotonic) -> None:
        self.timeout = float(timeout)
        # Standalone: a blocking pool (a burst beyond max_connections waits, up to the
        # timeout, for a free connection); no hidden retries: the failure policy decides.
        self.client = redis_client(url, self.timeout, max_connections=MAX_CONNECTIONS)
        self._admit = self.client.register_script(ADMIT_LUA)
        self._settle = self.client.register_script(SETTLE_LUA)
        self.clock = clock
        self.errors = 0  # calls that failed or timed out (the metric)
        self.on_error = None  # set by the gate: counts the failure in the shared metrics
        self._down_until = 0.0
        self._down = False
        self._logged_at = -LOG_INTERVAL

    async def _call(self, script, keys, args):
        now = self.clock()
        if now < self._down_until:
            raise RedisDown("redis was unreachable moments ago")
        try:
            out = await asyncio.wait_for(script(keys=keys, args=args), self.timeout)
        except Exception as exc:  # ConnectionError, TimeoutError, RedisError ...
            self._failed(exc)
            raise RedisDown(str(exc) or type(exc).__name__) from None
        if self._down:
            self._down = False
            log.warning("rate limits: redis is reachable again; limits apply again")
        return out

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self.on_error is not None:
            self.on_error()
        now = self.clock()
        self._down_until = now + RETRY_INTERVAL
        self._down = True
        if now - self._logged_at >= LOG_INTERVAL:
            self._logged_at = now
            log.warning(
                "rate limits: redis failed (%s: %s); %d failure(s) so far; retrying every %gs",
                type(exc).__name__, exc, self.errors, RETRY_INTERVAL,
            )

    async def admit(self, checks: list[Check], amounts: tuple[int, int, int]) -> Result:
        n = len(checks)
        args: list[int] = [n]
        for c in checks:
            args += [0 if c.kind == REQUESTS else 1, c.period * _US, c.limit, amounts[c.kind]]
        out = await self._call(self._admit, [_key(c) for c in checks], args)
        remaining = [int(x) for x in out[3 : 3 + n]]
        reset = [int(x) / _US for x in out[3 + n : 3 + 2 * n]]
        windows = [int(x) for x in out[3 + 2 * n : 3 + 3 * n]]
        return Result(bool(out[0]), int(out[1]), int(out[2]) / _US, remaining, reset, windows)

    async def settle(self, checks: list[Check], windows: list[int],
                     estimates: tuple[int, int, int], actuals: tuple[int, int, int]) -> None:
        keys: list[str] = []
        args: list[int] = [0]
        for c, w in zip(checks, windows, strict=True):
            if c.kind != REQUESTS:
                keys.append(_key(c))
                args += [c.period * _US, w, estimates[c.kind], actuals[c.kind]]
        if keys:
            args[0] = len(keys)
            await self._call(self._settle, keys, args)

    async def close(self) -> None:
        await self.client.aclose()
        pool = getattr(self.client, "connection_pool", None)  # RedisCluster has none
        if pool is not None:
            await pool.disconnect()
