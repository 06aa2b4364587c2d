"""forward: translate -> send -> receive -> translate back.

The first byte written to the client *commits* the request: before it, a
failure is an OpenAI-shaped error with the right status; after it (a stream
already flowing), the failure is reported in-band as an SSE ``error`` event,
which the OpenAI SDKs raise, and the stream is closed -- never a hang, never a
truncated "success".

Usage and cost: a JSON answer's ``usage`` is decoded (that object only) from
the body the client gets; a stream's comes from its relay once the stream
ends (None when the stream carried none).  ``ctx.cost`` is priced from the
model registry by the deployment's provider type and model id; a model the
registry does not know costs None, never an error.  A JSON answer also
carries ``x-helix-cost-usd`` when the cost is known (a stream's head is sent
before its usage exists).
"""

from __future__ import annotations

import time

from helix.client import UpstreamPool
from helix.errors import HelixError
from helix.pipeline.context import RequestContext
from helix.providers.openai import decode_usage
from helix.routing.models import DEFAULT, Registry, cost
from helix.schema.jsonsafe import GuardedRelay, upstream_error
from helix.schema.openai import embeddings_as_base64

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


def response_headers(upstream: list[tuple[bytes, bytes]], route: list[tuple[bytes, bytes]]):
    out = []
    for k, v in upstream:
        if k == b"content-type" or k in _KEEP or k.startswith(b"x-ratelimit-"):
            out.append((k, v))
        elif k in _RID_NAMES:
            out.append((_UPSTREAM_RID, v))
        elif k.startswith(b"anthropic-ratelimit-"):
            out.append((k, v))
    out.extend(route)
    return out


def _sse_headers(headers):
    # A translated stream is OpenAI SSE whatever the provider sent.
    out = [(k, v) for k, v in headers if k != b"content-type" and k != b"content-encoding"]
    out.append((b"content-type", b"text/event-stream; charset=utf-8"))
    return out


def _price(models: Registry, ctx: RequestContext, dep, usage: dict | None) -> None:
    ctx.usage = usage
    if usage is not None:
        # cost() answers None for a malformed usage: it never fails a request.
        ctx.cost = cost(models.lookup(dep.model_id, dep.provider_type), usage)


def _cost_header(usd: float) -> tuple[bytes, bytes]:
    return (b"x-helix-cost-usd", b"%.10f" % usd)


def make_forward(pool: UpstreamPool, models: Registry | None = None):
    request = pool.request
    models = DEFAULT if models is None else models

    async def forward(ctx: RequestContext) -> None:
        dep = ctx.deployment  # chosen by route / the attempt loop
        if dep is None:
            dep = ctx.candidates[0]
            ctx.deployment = dep
        adapter = dep.adapter
        view = ctx.view
        exchange = ctx.exchange
        if ctx.endpoint == "chat":
            up = adapter.chat_request(dep, view, exchange.request.body)
        else:
            up = adapter.embeddings_request(dep, view, exchange.request.body)
        if ctx.upstream_headers:
            up.headers = [*up.headers, *ctx.upstream_headers]
        if dep.signer is not None:
            up = await dep.signer.sign(dep, up)
        ctx.attempts += 1
        ctx.upstream_started = time.monotonic()
        resp = await request(
            dep.origin, up.method, up.target, up.headers, up.body, dep.timeouts,
            verify_tls=dep.verify_tls,
        )
        ctx.head_at = time.monotonic()
        try:
            status = resp.status
            if status >= 400:
                raise upstream_error(adapter, dep, status, resp.headers, await resp.read())
            resp.check_answer()  # an HTML page or a non-JSON body is a 502, not a 200
            headers = response_headers(resp.headers, dep.route_headers)
            if ctx.response_headers:
                headers.extend(ctx.response_headers)
            ctx.status = status
            if (
                ctx.endpoint == "chat"
                and view.stream
                and not (resp.header(b"content-type") or b"").startswith(b"application/json")
            ):
                relay = GuardedRelay(adapter.stream_relay(dep, view))  # too deep: a 502
                if not relay.passthrough:
                    headers = _sse_headers(headers)
                try:
                    await _relay(ctx, resp, relay, status, headers)
                finally:
                    _price(models, ctx, dep, getattr(relay, "usage", None))
                return
            body = await resp.read()
            if ctx.endpoint == "chat":
                body = adapter.chat_response(dep, body)
            else:
                body = adapter.embeddings_response(dep, body)
                if view.encoding_format == "base64" and not adapter.passthrough:
                    body = embeddings_as_base64(body)
            _price(models, ctx, dep, decode_usage(body))
            ctx.response_body = body
            if ctx.cost is not None:
                headers.append(_cost_header(ctx.cost))
            exchange.respond(status, headers, body)
        finally:
            resp.close()

    return forward


def _capturing(send, capture):
    async def send_and_capture(data: bytes) -> None:
        capture.append(data)
        await send(data)

    return send_and_capture


async def _relay(ctx: RequestContext, resp, relay, status: int, headers) -> None:
    # The head goes out with the first chunk, not before: a stream that fails
    # before its first byte is still uncommitted, so it gets a proper error
    # status (and, with retries, another attempt).
    chunk = await resp.next_chunk()
    ctx.first_chunk_at = time.monotonic()
    exchange = ctx.exchange
    first = relay.feed(chunk) if chunk is not None else b""
    exchange.start_stream(status, headers, first)
    ctx.committed = True
    send = exchange.send
    capture = ctx.capture  # the cache's: it stores the stream once complete
    if capture is not None:
        capture.append(first)
        send = _capturing(send, capture)
    tail = first[-4:] if first else b"\n\n"
    try:
        if chunk is not None:
            chunk = await resp.next_chunk()
        while chunk is not None:
            out = relay.feed(chunk)
            if out:
                tail = out[-4:]
                await send(out)
            chunk = await resp.next_chunk()
        out = relay.close()
        if out:
            await send(out)
    except HelixError as err:
        # Mid-stream failure: end any half-written event, then an error event.
        ctx.error = err
        sep = b"" if tail.endswith(_SSE_TAIL) else b"\n\n"
        await send(sep + b"data: " + err.to_json() + b"\n\n")
    exchange.end_stream()
