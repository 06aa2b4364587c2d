"""forward: translate -> send -> receive -> translate back.

Each attempt is **native** when the deployment's adapter speaks the client's
API (``ctx.api.name in adapter.native``: the body goes upstream as sent with
the model resolved, the answer and the stream come back as sent, and the
provider's errors too when they are in the client's format) and
**translated** otherwise (the client's API builds the request through the
adapter's chat translation and renders the answer, or drives its stream sink
from the adapter's relay).  The choice is per attempt, so a fallback to
another provider keeps the client's dialect.

Each attempt is two halves: ``prepare`` sends the request and waits for the
response head and, for a stream, its first chunk -- nothing reaches the client,
so the attempt loop may still race it against another (hedging) or abandon it
(a first-token deadline) -- and ``commit`` relays it.  ``forward`` is simply
both in turn.

The first byte written to the client *commits* the request: before it, a
failure is an error in the client's dialect with the right status; after it
(a stream already flowing), the failure is reported in-band -- the sink's (or
the API's) error event, which the SDKs raise -- and the stream is closed:
never a hang, never a truncated "success".

Usage and cost: a JSON answer's usage is read (that object only) by the
client's API or comes with the translation; a stream's comes from its relay
once the stream ends (None when the stream carried none).  ``ctx.cost`` is priced from the
model registry by the deployment's provider type and model id; a model the
registry does not know costs None, never an error.  A JSON answer also
carries ``x-helix-cost-usd`` when the cost is known (a stream's head is sent
before its usage exists).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import msgspec

from helix._fast import cost_value, pick_headers, pick_module, timing_value
from helix.client import UpstreamPool
from helix.errors import HelixError
from helix.observe import timing
from helix.pipeline.context import RequestContext
from helix.providers.base import FanOut
from helix.routing.models import DEFAULT, Registry, cost
from helix.schema.jsonsafe import too_deep_upstream, upstream_error
from helix.schema.usage import Usage

# Provider response headers worth keeping; everything else (cookies, server,
# hop-by-hop, the provider's own framing) stays behind.
_KEEP = frozenset(
    {
        b"openai-processing-ms",
        b"openai-version",
        b"retry-after",
        b"content-encoding",
    }
)
_SSE_TAIL = (b"\n\n", b"\r\n\r\n", b"\r\r")
# The provider's request id, whatever the provider calls it (OpenAI family, Anthropic,
# Bedrock), goes back as x-upstream-request-id; x-request-id is Helix's own.
_UPSTREAM_RID = b"x-upstream-request-id"
_RID_NAMES = frozenset({b"x-request-id", b"request-id", b"x-amzn-requestid"})
_NONE: frozenset[bytes] = frozenset()


# The kinds as head_py.pick_headers reads them: 1 kept, 2 the request id, else dropped.
_DROP = 0
_PASS = 1
_RID = 2
# What to do with each (lower-cased) provider header name, decided once per name: a
# provider answers with the same dozen or two names every time.  Bounded, so one sending
# random names cannot grow it.
_KINDS: dict[bytes, int] = {}
_KINDS_MAX = 1024


def _kind(name: bytes) -> int:
    if (name == b"content-type" or name in _KEEP or name.startswith(b"x-ratelimit-")
            or name.startswith(b"anthropic-ratelimit-")):
        kind = _PASS
    elif name in _RID_NAMES:
        kind = _RID
    else:
        kind = _DROP
    if len(_KINDS) < _KINDS_MAX:
        _KINDS[name] = kind
    return kind


# The provider's headers worth keeping, then Helix's route headers:
# ``response_headers(upstream, route, own)``; ``own``: headers the client's SDK reads under
# the provider's name (a native answer only).  The loop is helix/_fast/head_py.py's
# ``pick_headers`` (compiled in head_c).
response_headers = partial(pick_headers, _KINDS, _kind, _UPSTREAM_RID)


def _sse_headers(headers):
    # A translated stream is the client's SSE whatever the provider sent.
    out = [(k, v) for k, v in headers if k != b"content-type" and k != b"content-encoding"]
    out.append((b"content-type", b"text/event-stream; charset=utf-8"))
    return out


def _price(models: Registry, ctx: RequestContext, dep, usage: Usage | None) -> None:
    ctx.usage = usage
    if usage is not None:
        priced = dep.priced
        if priced is None or priced[0] is not models:
            priced = dep.priced = (models, models.lookup(dep.model_id, dep.provider_type))
        # cost() answers None for a malformed usage: it never fails a request.
        ctx.cost = cost(priced[1], usage)


_COST = b"x-helix-cost-usd"


def _cost_header(usd: float) -> tuple[bytes, bytes]:
    return (_COST, cost_value(usd))


class Prepared(msgspec.Struct, eq=False):
    """One attempt's upstream answer before anything reached the client: its head and, for
    a stream, its first chunk (``first``: None when the stream ended before any byte).

    :func:`make_forward`'s ``prepare`` makes one; ``commit`` relays it.  Between the two
    the attempt loop may race several (hedging) or give up on one (a first-token
    deadline): the client has seen nothing yet.  A Struct: made in C, no ``__init__``
    frame per request (fields are not validated; ``eq=False``: compared by identity).
    """

    dep: Any
    resp: Any
    native: bool
    stream: bool
    started: float
    head_at: float
    first: bytes | None
    first_at: float
    fan: FanOut | None = None  # a batch sent as several upstream requests: all in commit

    def close(self) -> None:
        """Give up on this answer (a hedge that lost): the connection is closed unless the
        whole response had already arrived."""
        if self.resp is not None:
            self.resp.close()


def make_forward(pool: UpstreamPool, models: Registry | None = None):
    """The ``forward`` phase, and its two halves as ``forward.prepare(ctx, dep)`` (send, wait
    for the head and a stream's first chunk: nothing reaches the client) and
    ``forward.commit(ctx, prepared)`` (relay it: the first byte commits the request)."""
    request = pool.request
    models = DEFAULT if models is None else models
    monotonic = time.monotonic

    async def prepare(ctx: RequestContext, dep) -> Prepared:
        api = ctx.api
        adapter = dep.adapter
        # Native: the provider speaks the client's API (body as sent, model resolved).
        # Otherwise the client's API translates, through the adapter's chat translation.
        native = api.name in adapter.native
        up = api.native_request(ctx, dep) if native else api.upstream_request(ctx, dep)
        if isinstance(up, FanOut):  # sent (and answered) as a whole by commit
            return Prepared(dep, None, native, False, 0.0, 0.0, None, 0.0, up)
        if ctx.upstream_headers:
            up.headers = [*up.headers, *ctx.upstream_headers]
        if dep.signer is not None:
            up = await dep.signer.sign(dep, up)
        ctx.attempts += 1
        ctx.upstream_started = started = monotonic()
        resp = await request(
            dep.origin, up.method, up.target, up.headers, up.body, dep.timeouts,
            verify_tls=dep.verify_tls,
        )
        ctx.head_at = head_at = monotonic()
        try:
            status = resp.status
            if status >= 400:
                body = await resp.read()
                if native:
                    raise upstream_error(partial(adapter.native_error, api.name), dep, status,
                                         resp.headers, body)
                raise upstream_error(adapter.error, dep, status, resp.headers, body)
            resp.check_answer()  # an HTML page or a non-JSON body is a 502, not a 200
            stream = bool(
                api.streams
                and ctx.view.stream
                and not (resp.header(b"content-type") or b"").startswith(b"application/json")
            )
            first = None
            first_at = 0.0
            if stream:
                # The head goes out with the first chunk, not before: a stream that fails
                # before its first byte is still uncommitted, so it gets a proper error
                # status (and, with retries, another attempt).
                first = await resp.next_chunk()
                first_at = monotonic()
        except BaseException:
            resp.close()
            raise
        return Prepared(dep, resp, native, stream, started, head_at, first, first_at)

    async def commit(ctx: RequestContext, p: Prepared) -> None:
        dep = p.dep
        ctx.deployment = dep
        if p.fan is not None:
            t = monotonic()
            await _fan_out(ctx, dep, p.fan, request, models, t)
            return
        ctx.upstream_started = p.started
        ctx.head_at = p.head_at
        api = ctx.api
        adapter = dep.adapter
        native = p.native
        resp = p.resp
        try:
            status = resp.status
            headers = response_headers(resp.headers, dep.route_headers,
                                       api.native_headers if native else _NONE)
            if ctx.response_headers:
                headers.extend(ctx.response_headers)
            ctx.status = status
            if p.stream:
                if native:
                    relay = adapter.native_relay(api.name, dep, ctx.view)
                    sink = None
                else:
                    sink = api.sink(ctx, dep)
                    relay = api.stream_relay(ctx, dep, sink)
                ctx.relay = relay
                if not relay.passthrough:
                    headers = _sse_headers(headers)
                ctx.first_chunk_at = p.first_at
                if timing.ON:
                    headers.append(timing.header(ctx))
                try:
                    await _relay(ctx, resp, relay, status, headers, p.first, sink)
                finally:
                    _price(models, ctx, dep, relay.usage)
                return
            t = monotonic()
            if native:
                check = api.native_check
                if check is not None:  # the pool's JSON check reads the usage too: one pass
                    resp.reader = check
                body = resp.arrived()  # a small answer is usually here whole already
                if body is not None:
                    whole = True
                else:
                    body, whole = await resp.read_upto(PASS_THROUGH_BYTES)
                ctx.waited += monotonic() - t
                if not whole:  # large: relayed as it comes, never held whole
                    if timing.ON:
                        headers.append(timing.header(ctx))
                    await _pass_through(ctx, resp, status, headers, body)
                    _price(models, ctx, dep, usage_in(api, ctx.response_tail))
                    return
                raw = body
                body = adapter.native_response(api.name, dep, body)
                usage = resp.read_result if check is not None and body is raw else None
                if usage is None:  # no reader, another body, or no usage in it: read it
                    usage = api.native_usage(body)
            else:
                body = resp.arrived()
                if body is None:
                    body = await resp.read()
                ctx.waited += monotonic() - t
                body, usage = api.translate_response(dep, body, ctx)
            _price(models, ctx, dep, usage)
            ctx.response_body = body
            if ctx.cost is not None:
                headers.append((_COST, cost_value(ctx.cost)))
            if timing.ON:  # timing.header(ctx), inline on the every-request path
                headers.append((timing.NAME, timing_value(ctx, monotonic())))
            ctx.exchange.respond(status, headers, body)
        finally:
            resp.close()

    async def forward(ctx: RequestContext) -> None:
        # The two halves in a row.  The attempt loop (pipeline/runner.py make_attempts)
        # runs these same lines itself, to save a coroutine level: keep the two in step.
        dep = ctx.deployment  # chosen by route / the attempt loop
        if dep is None:
            dep = ctx.candidates[0]
            ctx.deployment = dep
        t = monotonic()
        try:
            p = await prepare(ctx, dep)
        finally:
            ctx.waited += monotonic() - t
        await commit(ctx, p)

    forward.prepare = prepare
    forward.commit = commit
    return forward


async def _fan_out(ctx: RequestContext, dep, fan: FanOut, request, models, t0: float) -> None:
    """Send a batch's requests concurrently (at most ``fan.limit`` in flight), in order;
    the first failure fails the whole request and cancels the rest."""
    import asyncio

    gate = asyncio.Semaphore(fan.limit)
    adapter = dep.adapter
    status_headers: list = []

    async def one(up) -> bytes:
        async with gate:
            if ctx.upstream_headers:
                up.headers = [*up.headers, *ctx.upstream_headers]
            if dep.signer is not None:
                up = await dep.signer.sign(dep, up)
            resp = await request(dep.origin, up.method, up.target, up.headers, up.body,
                                 dep.timeouts, verify_tls=dep.verify_tls)
            try:
                body = await resp.read()
                if resp.status >= 400:
                    raise adapter.error(dep, resp.status, resp.headers, body)
                if not status_headers:
                    status_headers.append(resp.headers)
                return body
            finally:
                resp.close()

    ctx.attempts += 1
    ctx.upstream_started = time.monotonic()
    tasks = [asyncio.ensure_future(one(up)) for up in fan.requests]
    try:
        bodies = await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    ctx.head_at = time.monotonic()
    ctx.waited += ctx.head_at - t0
    body, usage = ctx.api.translate_response(dep, fan.combine(bodies), ctx)
    headers = response_headers(status_headers[0], dep.route_headers)
    if ctx.response_headers:
        headers.extend(ctx.response_headers)
    ctx.status = 200
    _price(models, ctx, dep, usage)
    ctx.response_body = body
    if ctx.cost is not None:
        headers.append(_cost_header(ctx.cost))
    if timing.ON:
        headers.append(timing.header(ctx))
    ctx.exchange.respond(200, headers, body)


# The stream relay's sink on the upstream connection, from the build of Exchange the protocol
# uses (compiled: no Python frame per read).
RelaySink = pick_module("exchange_c", "helix.server.exchange").RelaySink

# A native answer larger than this is relayed as it arrives (chunked, no x-helix-cost-usd
# header: its usage is only known at its end) instead of being held whole: a worker never
# holds more than this per answer it only passes on.
PASS_THROUGH_BYTES = 1024 * 1024
_TAIL = 64 * 1024  # the end of a relayed answer kept to read its usage


async def _pass_through(ctx: RequestContext, resp, status: int, headers, first: bytes) -> None:
    headers = [(k, v) for k, v in headers if k != b"content-length"]
    exchange = ctx.exchange
    ctx.first_chunk_at = time.monotonic()
    exchange.start_stream(status, headers, first)
    ctx.committed = True
    tail = first[-_TAIL:]
    chunk = await resp.body_chunk()
    while chunk is not None:
        await exchange.send(chunk)
        tail = (tail + chunk)[-_TAIL:]
        chunk = await resp.body_chunk()
    exchange.end_stream()
    ctx.response_tail = tail


def usage_in(api, tail: bytes | None):
    """The usage at the end of a JSON answer relayed without being held: the last
    ``"usage": {...}`` member of its tail, read by the client's API."""
    if not tail:
        return None
    i = tail.rfind(b'"usage"')
    start = tail.find(b"{", i) if i >= 0 else -1
    if start < 0:
        return None
    depth = 0
    for j in range(start, len(tail)):
        c = tail[j]
        if c == 123:  # {
            depth += 1
        elif c == 125:  # }
            depth -= 1
            if depth == 0:
                return api.native_usage(b'{"usage":' + tail[start:j + 1] + b"}")
    return None


async def _relay(ctx: RequestContext, resp, relay, status: int, headers, chunk: bytes | None,
                 sink=None) -> None:
    # ``chunk``: the first chunk, already received by ``prepare``.
    # A relay that decodes events (msgspec) raises RecursionError on an event nested near
    # the interpreter's limit: that is the provider's fault, a 502 before the head is out,
    # an error event after (the guard is here, not a wrapper around the relay: a wrapper
    # costs a Python frame per chunk and a formatted AttributeError per attribute read).
    exchange = ctx.exchange
    try:
        first = relay.feed(chunk) if chunk is not None else b""
    except RecursionError:
        raise too_deep_upstream() from None
    # The whole stream came with the head (a short answer from a fast upstream): head,
    # events and terminator go out in one write at the end.
    whole = chunk is not None and resp.ended
    ctx.committed = True
    capture = ctx.capture  # the cache's: it stores the stream once complete
    # The last bytes relayed (for the separator before an error event) and the stream's
    # final bytes, written together with its terminator.
    out = first
    last = first if whole else b""
    if not whole:
        exchange.start_stream(status, headers, first)
        if capture is not None:
            capture.append(first)

    try:
        if chunk is not None and not whole:
            # Each read's body goes through the relay to the client from the upstream
            # connection's read callback (no task wake-up, no coroutine resumed per chunk).
            pump = RelaySink(exchange, relay.feed, capture, out)
            try:
                await resp.push(pump, exchange.drain)
            finally:
                out, last = pump.out, pump.last
        tail = relay.close()
        if tail:
            last += tail
            out = tail
        failed = getattr(relay, "error", None)  # an error event relayed as it came
        if failed is not None:
            ctx.error = failed
    except (HelixError, RecursionError) as err:
        # Mid-stream failure: end any half-written event, then an error event.
        if type(err) is RecursionError:
            err = too_deep_upstream()
        ctx.error = err
        sep = b"" if (out[-4:] if out else b"\n\n").endswith(_SSE_TAIL) else b"\n\n"
        event = sink.error(err) if sink is not None else ctx.api.error_event(err)
        last += sep + event
    if last and capture is not None:
        capture.append(last)
    if whole:
        exchange.start_stream(status, headers, last, end=True)
    else:
        exchange.end_stream(last)
