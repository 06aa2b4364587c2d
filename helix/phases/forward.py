"""forward: translate -> send -> receive -> translate back.

The first byte written to the client *commits* the request: before it, a
failure is an OpenAI-shaped error with the right status; after it (a stream
already flowing), the failure is reported in-band as an SSE ``error`` event,
which the OpenAI SDKs raise, and the stream is closed -- never a hang, never a
truncated "success".
"""

from __future__ import annotations

import time

from helix.client import UpstreamPool
from helix.errors import HelixError
from helix.pipeline.context import RequestContext

# Provider response headers worth keeping; everything else (cookies, server,
# hop-by-hop, the provider's own framing) stays behind.
_KEEP = frozenset(
    {
        b"x-request-id",
        b"openai-processing-ms",
        b"openai-version",
        b"retry-after",
        b"content-encoding",
    }
)
_SSE_TAIL = (b"\n\n", b"\r\n\r\n", b"\r\r")


def response_headers(upstream: list[tuple[bytes, bytes]], route: list[tuple[bytes, bytes]]):
    out = []
    for k, v in upstream:
        if k == b"content-type" or k in _KEEP or k.startswith(b"x-ratelimit-"):
            out.append((k, v))
    out.extend(route)
    return out


def _sse_headers(headers):
    # A translated stream is OpenAI SSE whatever the provider sent.
    out = [(k, v) for k, v in headers if k != b"content-type" and k != b"content-encoding"]
    out.append((b"content-type", b"text/event-stream; charset=utf-8"))
    return out


def make_forward(pool: UpstreamPool):
    request = pool.request

    async def forward(ctx: RequestContext) -> None:
        dep = ctx.candidates[0]
        ctx.deployment = dep
        adapter = dep.adapter
        view = ctx.view
        exchange = ctx.exchange
        if ctx.endpoint == "chat":
            up = adapter.chat_request(dep, view, exchange.request.body)
        else:
            up = adapter.embeddings_request(dep, view, exchange.request.body)
        if dep.signer is not None:
            up = await dep.signer.sign(dep, up)
        resp = await request(
            dep.origin, up.method, up.target, up.headers, up.body, dep.timeouts,
            verify_tls=dep.verify_tls,
        )
        ctx.head_at = time.monotonic()
        try:
            status = resp.status
            if status >= 400:
                raise adapter.error(dep, status, resp.headers, await resp.read())
            headers = response_headers(resp.headers, dep.route_headers)
            ctx.status = status
            if (
                ctx.endpoint == "chat"
                and view.stream
                and not (resp.header(b"content-type") or b"").startswith(b"application/json")
            ):
                relay = adapter.stream_relay(dep, view)
                if not relay.passthrough:
                    headers = _sse_headers(headers)
                await _relay(ctx, resp, relay, status, headers)
                return
            body = await resp.read()
            if ctx.endpoint == "chat":
                body = adapter.chat_response(dep, body)
            else:
                body = adapter.embeddings_response(dep, body)
            exchange.respond(status, headers, body)
        finally:
            resp.close()

    return forward


async def _relay(ctx: RequestContext, resp, relay, status: int, headers) -> None:
    # The head goes out with the first chunk, not before: a stream that fails
    # before its first byte is still uncommitted, so it gets a proper error
    # status (and, with retries, another attempt).
    chunk = await resp.next_chunk()
    ctx.first_chunk_at = time.monotonic()
    exchange = ctx.exchange
    exchange.start_stream(status, headers)
    ctx.committed = True
    send = exchange.send
    tail = b"\n\n"
    try:
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
