"""Micro-benchmark of the pooled request/response path.

    python -m tests.client.bench_client [requests] [concurrency]

A minimal keep-alive HTTP server runs in a *separate process* (so its CPU is
not counted); the client process measures CPU time (``time.process_time``)
and wall time per pooled request with a small JSON body and response.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import sys
import time

import uvloop

from helix.client import Origin, UpstreamPool

RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 27\r\n"
    b"x-request-id: abc123\r\n\r\n"
    b'{"id":"x","object":"chat"}\n'
)


class _Server(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            # Requests in this benchmark carry a short body right after the head.
            self.buf = b""
            self.transport.write(RESPONSE * n)


def _serve(port_q) -> None:
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Server, "127.0.0.1", 0)
        port_q.put(server.sockets[0].getsockname()[1])
        await asyncio.sleep(3600)

    uvloop.run(main())


async def _bench(port: int, n: int, concurrency: int) -> None:
    pool = UpstreamPool()
    origin = Origin("http", "127.0.0.1", port)
    headers = [
        (b"authorization", b"Bearer sk-xxxxxxxxxxxxxxxxxxxxxxxx"),
        (b"content-type", b"application/json"),
        (b"user-agent", b"helix/0.1"),
        (b"accept", b"application/json"),
    ]
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'

    async def worker(count: int) -> None:
        for _ in range(count):
            resp = await pool.request(origin, b"POST", b"/v1/chat/completions", headers, body)
            await resp.read()

    await worker(2000)  # warm up: connections, caches
    per = n // concurrency
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(per) for _ in range(concurrency)))
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    user = ru1.ru_utime - ru0.ru_utime
    total = per * concurrency
    print(
        f"concurrency={concurrency:3d} requests={total}  "
        f"cpu/request={cpu / total * 1e6:5.1f} us (user {user / total * 1e6:5.1f})  "
        f"wall/request={wall / total * 1e6:5.1f} us  ({total / wall:,.0f} req/s)"
    )
    await pool.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    conc = [int(sys.argv[2])] if len(sys.argv) > 2 else [1, 16]
    q = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_serve, args=(q,), daemon=True)
    proc.start()
    try:
        port = q.get(timeout=10)
        for c in conc:
            uvloop.run(_bench(port, n, c))
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
