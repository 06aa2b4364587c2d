"""The floor of the design card's stack: a uvloop relay that does nothing but move bytes.

``bench/run.py --targets ...,floor,...`` runs it as the ``floor`` target, pinned like the other
proxies, to show what a Python proxy on uvloop costs before it does any work of its own: no
HTTP parsing, no routing, no pool, no header rewriting. Each client connection is paired with
one upstream connection, opened ahead of time (one spare is kept connected, so a fresh client
connection does not wait for a connect, as a proxy with a warm pool would not), and every byte
read on one side is written to the other; when either side closes, so does its pair. Keep-alive
works because the pair is never split. What Helix adds over this floor is its own work; what the
floor adds over nginx is the interpreter, uvloop and one ``data_received`` call each way.

Not a proxy to use: no flow control, no timeouts, no limits. Listens on 127.0.0.1 only.

    python bench/floor.py PORT UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.client is not None:
            self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.client is not None:
            self.client.transport.close()
        elif self.relay.spare is self:
            self.relay.spare = None  # the upstream went away while spare (a mock restart)


class Client(asyncio.Protocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.upstream: Upstream | None = None
        self.pending: list[bytes] = []  # read before the upstream connection was made
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        spare = self.relay.take()
        if spare is not None:
            self.pair(spare)
        else:
            asyncio.get_running_loop().create_task(self.connect())
        self.relay.refill()

    async def connect(self) -> None:
        try:
            self.pair(await self.relay.open())
        except OSError:
            self.transport.close()

    def pair(self, up: Upstream) -> None:
        if self.transport.is_closing():
            up.transport.close()  # type: ignore[union-attr]
            return
        self.upstream = up
        up.client = self
        if self.pending:
            up.transport.write(b"".join(self.pending))  # type: ignore[union-attr]
            self.pending.clear()

    def data_received(self, data: bytes) -> None:
        up = self.upstream
        if up is not None:
            up.transport.write(data)  # type: ignore[union-attr]
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.close()


class Relay:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.spare: Upstream | None = None
        self.filling = False

    async def open(self) -> Upstream:
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(
            lambda: Upstream(self), "127.0.0.1", self.upstream_port)
        return up

    def take(self) -> Upstream | None:
        up, self.spare = self.spare, None
        return up if up is not None and up.transport is not None else None

    def refill(self) -> None:
        if self.spare is None and not self.filling:
            self.filling = True
            asyncio.get_running_loop().create_task(self._refill())

    async def _refill(self) -> None:
        try:
            up = await self.open()
        except OSError:
            return
        finally:
            self.filling = False
        if self.spare is None:
            self.spare = up
        else:
            up.transport.close()  # type: ignore[union-attr]


async def main(port: int, upstream_port: int) -> None:
    relay = Relay(upstream_port)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(relay), "127.0.0.1", port, backlog=4096)
    relay.refill()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
