"""Micro-benchmark: parse -> handler -> respond on a MockTransport.

Run: python -m tests.protocol.bench_protocol   (not collected by pytest)
"""

from __future__ import annotations

import asyncio
import time

import uvloop

from tests.protocol.mock import make_conn

_BODY = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
REQ = (
    b"POST /v1/chat/completions HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: OpenAI/Python 1.40.0\r\n"
    b"Content-Type: application/json\r\n"
    b"Authorization: Bearer sk-xxxxxxxxxxxxxxxxxxxxxxxx\r\n"
    b"Accept: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%b"
) % (len(_BODY), _BODY)
BODY = b'{"id":"x","object":"chat.completion","choices":[]}'
HDRS = [(b"content-type", b"application/json")]


async def handler(ex) -> None:
    ex.respond(200, HDRS, BODY)


async def run(n: int) -> float:
    proto, transport, _ = make_conn(handler, loop=asyncio.get_running_loop())
    feed = proto.data_received
    sleep = asyncio.sleep
    t0 = time.process_time()
    for _ in range(n):
        feed(REQ)
        await sleep(0)  # the handler task runs and responds
        await sleep(0)
        assert transport.chunks[0].startswith(b"HTTP/1.1 200 OK"), transport.chunks
        transport.chunks.clear()
    return (time.process_time() - t0) / n * 1e6


async def baseline(n: int) -> float:
    """Loop overhead of the two sleep(0) alone, to subtract."""
    sleep = asyncio.sleep
    t0 = time.process_time()
    for _ in range(n):
        await sleep(0)
        await sleep(0)
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    n = 200_000
    for _ in range(3):
        full = uvloop.run(run(n))
        base = uvloop.run(baseline(n))
        print(
            f"{full:6.2f} us/request end-to-end, {base:5.2f} us loop overhead, "
            f"{full - base:6.2f} us net"
        )


if __name__ == "__main__":
    main()
