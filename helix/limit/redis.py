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
_DECIDE = """
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
"""
_WRITE = """
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
"""
ADMIT_LUA = _DECIDE + _WRITE + "return out\n"

# rate_limits.queue (helix/limit/queue.py).  KEYS[n+i]: the queue of check i's scope (a
# sorted set, every score 0, ordered by member: "<prio><round %010d><seq %016d>|<deadline ms
# %013d>|<id>"), whose hash KEYS[n+i]..':m' keeps the next seq, per priority the round last
# served ('c<prio>') and per priority and user the round last given ('u<prio>:<user>').
# ARGV after the checks: prio, member (the waiter's place, '' for a newcomer), qidx (1-based
# check index of that place, 0: none), user, max_wait_ms, id, depth.
# Appends {queued, full, member, qidx} to the reply.
_QUEUE = """
local qb = 2 + n * 4
local prio, mine, mq = tonumber(ARGV[qb]), ARGV[qb + 1], tonumber(ARGV[qb + 2])
local user, wait_ms, wid = ARGV[qb + 3], tonumber(ARGV[qb + 4]), ARGV[qb + 5]
local depth = tonumber(ARGV[qb + 6])
local now_ms = math.floor(now / 1000)
local queued, full = 0, 0
if failed < 0 then
  if mine ~= '' then
    if redis.call('ZRANGE', KEYS[n + mq], 0, 0)[1] ~= mine and
        redis.call('ZSCORE', KEYS[n + mq], mine) then
      failed, retry, queued = mq - 1, 0, 1
    end
  else
    local upper = '(' .. tostring(prio + 1)
    for i = 1, n do
      if redis.call('ZLEXCOUNT', KEYS[n + i], '-', upper) > 0 then
        failed, retry, queued = i - 1, 0, 1
        break
      end
    end
  end
end
local member = mine
if failed < 0 then
  if mine ~= '' then
    local q = KEYS[n + mq]
    redis.call('ZREM', q, mine)
    local p, r = string.sub(mine, 1, 1), tonumber(string.sub(mine, 2, 11))
    if r > tonumber(redis.call('HGET', q .. ':m', 'c' .. p) or '0') then
      redis.call('HSET', q .. ':m', 'c' .. p, r)
    end
    member, mq = '', 0
  end
else
  local fq = KEYS[n + failed + 1]
  if mine == '' or fq ~= KEYS[n + mq] then
    if mine ~= '' then redis.call('ZREM', KEYS[n + mq], mine) end
    member, mq = '', 0
    if redis.call('ZCARD', fq) >= depth then
      full = 1
    else
      local meta = fq .. ':m'
      local cur = tonumber(redis.call('HGET', meta, 'c' .. prio) or '0')
      local last = tonumber(redis.call('HGET', meta, 'u' .. prio .. ':' .. user) or '-1')
      local round = math.max(cur, last + 1)
      local seq = redis.call('HINCRBY', meta, 'seq', 1)
      member = string.format('%d%010d%016d|%013d|%s', prio, round, seq,
                             now_ms + wait_ms + 1000, wid)
      redis.call('ZADD', fq, 0, member)
      redis.call('HSET', meta, 'u' .. prio .. ':' .. user, round)
      redis.call('PEXPIRE', meta, wait_ms * 2 + 60000)
      redis.call('PEXPIRE', fq, wait_ms * 2 + 60000)
      mq = failed + 1
    end
  end
end
"""
ADMIT_QUEUED_LUA = (_DECIDE + _QUEUE + _WRITE
                    + "out[#out + 1] = queued\nout[#out + 1] = full\n"
                    + "out[#out + 1] = member\nout[#out + 1] = mq\nreturn out\n")

# KEYS[1]: a queue; ARGV[1]: a member.  Drops places past their deadline from the head
# (their owners died), then answers the member's rank (-1: not there any more).
POSITION_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _ = 1, 100 do
  local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not first or first == ARGV[1] then break end
  local deadline = tonumber(string.sub(first, 29, 41))
  if deadline and deadline < now_ms then redis.call('ZREM', KEYS[1], first) else break end
end
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if rank then return rank end
return -1
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

LEAVE_LUA = "return redis.call('ZREM', KEYS[1], ARGV[1])"

_UNIT_NAMES = ("rpm", "rph", "rpd", "tpm", "tph", "tpd", "usdh", "usdd")
_QPREFIX = PREFIX + "q:"


def _key(c: Check) -> str:
    return f"{PREFIX}{c.scope}:{_UNIT_NAMES[c.unit]}"


def _queue_key(c: Check) -> str:
    return _QPREFIX + c.scope


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
        self._admit_q = self.client.register_script(ADMIT_QUEUED_LUA)
        self._position = self.client.register_script(POSITION_LUA)
        self._leave = self.client.register_script(LEAVE_LUA)
        self.depth = 1000  # rate_limits.queue.max_depth (set by the gate)
        self._tasks: set[asyncio.Task] = set()
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

    async def admit(self, checks: list[Check], amounts: tuple[int, int, int],
                    ticket=None) -> Result:
        n = len(checks)
        args: list = [n]
        for c in checks:
            args += [0 if c.kind == REQUESTS else 1, c.period * _US, c.limit, amounts[c.kind]]
        keys = [_key(c) for c in checks]
        if ticket is None:
            out = await self._call(self._admit, keys, args)
        else:  # rate_limits.queue: the queues decide in the same script
            keys += [_queue_key(c) for c in checks]
            args += [ticket.prio, ticket.member, ticket.qidx, ticket.user, ticket.wait_ms,
                     ticket.id, self.depth]
            out = await self._call(self._admit_q, keys, args)
        remaining = [int(x) for x in out[3 : 3 + n]]
        reset = [int(x) / _US for x in out[3 + n : 3 + 2 * n]]
        windows = [int(x) for x in out[3 + 2 * n : 3 + 3 * n]]
        res = Result(bool(out[0]), int(out[1]), int(out[2]) / _US, remaining, reset, windows)
        if ticket is not None:
            q = out[3 + 3 * n:]
            res.queued = bool(int(q[0]))
            res.full = bool(int(q[1]))
            member = q[2]
            ticket.member = member.decode() if isinstance(member, bytes) else str(member or "")
            ticket.qidx = int(q[3])
            ticket.scope = checks[ticket.qidx - 1].scope if ticket.qidx else ""
        return res

    # -- rate_limits.queue ----------------------------------------------------------------

    async def queue_position(self, ticket) -> int:
        """Places ahead of ``ticket`` (-1: its place is gone); drops dead owners' places."""
        if not ticket.member:
            return -1
        rank = int(await self._call(self._position, [_QPREFIX + ticket.scope],
                                    [ticket.member]))
        if rank < 0:
            ticket.member = ""
            ticket.qidx = 0
        return rank

    async def queue_leave(self, ticket) -> None:
        if not ticket.member:
            return
        member, scope = ticket.member, ticket.scope
        ticket.member = ""
        ticket.qidx = 0
        await self._call(self._leave, [_QPREFIX + scope], [member])

    def leave_later(self, ticket) -> None:
        """Leave the queue from a task of its own (the waiter's task may be cancelled)."""
        task = asyncio.get_running_loop().create_task(self._leave_quietly(ticket))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _leave_quietly(self, ticket) -> None:
        try:
            await self.queue_leave(ticket)
        except RedisDown:
            pass  # the place expires with its deadline

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
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        await self.client.aclose()
        pool = getattr(self.client, "connection_pool", None)  # RedisCluster has none
        if pool is not None:
            await pool.disconnect()
