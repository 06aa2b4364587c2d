"""Stand-ins for the master tests: a config, fake worker targets, a tiny app and server.

Run as a script, it starts an :class:`Arbiter` (so tests can signal it)::

    python tests/master/arbiter_harness.py CONFIG.json

The config file is JSON; ``load_config`` re-reads it on SIGHUP and raises when
it contains ``"broken": true``.  Workers append one JSON line per event
(``start``, ``ready``, ``drain``, ``exit`` ...) to ``config.events``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from helix.master import shm
from helix.master.arbiter import Arbiter
from helix.master.worker import BOOT_ERROR, run_worker


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    workers: int = 2
    graceful_timeout: float = 5.0
    heartbeat_timeout: float = 5.0
    backlog: int = 1024


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    mode: str = "sleep"  # sleep | boot_error | crash | http
    events: str = ""
    boot_delay: float = 0.0
    hang_after: float = 0.0
    drain: float = 0.0
    app_error: bool = False
    tag: str = ""


def load_config(path: str) -> Config:
    with open(path) as f:
        data = json.load(f)
    if data.pop("broken", False):
        raise ValueError("broken config (test)")
    data.pop("arbiter", None)
    server = ServerConfig(**data.pop("server"))
    return Config(server=server, **data)


def event(config: Config, name: str, worker, **extra) -> None:
    if not config.events:
        return
    rec = {
        "ev": name,
        "pid": os.getpid(),
        "gen": worker.generation,
        "num": worker.number,
        "t": time.monotonic(),
        **extra,
    }
    fd = os.open(config.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec) + "\n").encode())
    finally:
        os.close(fd)


# -- fake worker targets (no event loop, no server) ---------------------------


def sleep_target(worker, config: Config) -> int:
    """Beats every 50 ms until SIGTERM; optionally hangs after ``hang_after`` s."""
    stopping = []

    def on_term(signum, frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    event(config, "start", worker)
    time.sleep(config.boot_delay)
    if config.mode == "boot_error":
        event(config, "boot_error", worker)
        return BOOT_ERROR
    worker.slot.set_state(shm.READY)
    worker.slot.beat()
    event(config, "ready", worker)
    t0 = time.monotonic()
    while not stopping:
        if config.hang_after and time.monotonic() - t0 > config.hang_after:
            event(config, "hang", worker)
            while True:  # a wedged worker: no more heartbeats, ignores SIGTERM
                time.sleep(1)
        if config.mode == "crash" and time.monotonic() - t0 > 0.1:
            event(config, "crash", worker)
            return 1
        worker.slot.beat()
        time.sleep(0.05)
    worker.slot.set_state(shm.DRAINING)
    event(config, "drain", worker)
    deadline = time.monotonic() + config.drain
    while time.monotonic() < deadline:
        worker.slot.beat()
        time.sleep(0.05)
    event(config, "exit", worker)
    return 0


# -- a tiny app and server honouring the helix.app / helix.server contracts ----


class TinyApp:
    server_limits = None

    def __init__(self, config: Config, worker) -> None:
        self.config = config
        self.worker = worker
        self.body = f"pid={os.getpid()} gen={worker.generation} tag={config.tag}\n".encode()

    async def handle(self, exchange) -> bytes:
        return self.body

    async def close(self) -> None:
        event(self.config, "app_close", self.worker)


async def tiny_create_app(config: Config, worker) -> TinyApp:
    event(config, "start", worker)
    if config.boot_delay:
        await asyncio.sleep(config.boot_delay)
    if config.app_error:
        raise RuntimeError("cannot build the app (test)")
    return TinyApp(config, worker)


class _TinyConnection(asyncio.Protocol):
    def __init__(self, server: TinyServer) -> None:
        self.server = server
        self.buf = b""
        self.transport = None
        self.started = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server._conns.add(self)
        self.server.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.started and b"\r\n\r\n" in self.buf:
            self.started = True
            self.server.active_requests += 1
            task = asyncio.get_running_loop().create_task(self._respond())
            self.server._tasks.add(task)
            task.add_done_callback(self.server._tasks.discard)

    async def _respond(self) -> None:
        try:
            body = await self.server.handler(self.buf)
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            self.server.requests_total += 1
        finally:
            self.server.active_requests -= 1
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.server._conns.discard(self)
        self.server.connections -= 1


class TinyServer:
    """HTTP/1.1, one request per connection, ``Connection: close``.

    Tracks connections from ``connection_made`` on, so ``shutdown`` also waits
    for connections accepted just before the listener closed.
    """

    def __init__(self, handler, limits, *, loop=None) -> None:
        self.handler = handler
        self.loop = loop
        self.connections = 0
        self.active_requests = 0
        self.requests_total = 0
        self._conns: set[_TinyConnection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None

    async def start(self, sock) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TinyConnection(self), sock=sock)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def shutdown(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # A connection the listener accepted in the same loop turn as stop_accepting() is
        # only known once its connection_made ran: give those a moment to show up (Helix's
        # own server drains with a grace period for the same reason), else the process
        # would exit under them and their clients read an empty answer.
        await asyncio.sleep(0.1)
        while self._conns and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self._conns):
            conn.transport.abort()


http_target = functools.partial(run_worker, create_app=tiny_create_app, server_factory=TinyServer)


def pick_target(config: Config):
    return http_target if config.mode == "http" else sleep_target


def main(path: str) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s [%(process)d] %(name)s %(levelname)s %(message)s",
    )
    with open(path) as f:
        options = json.load(f).get("arbiter", {})
    config = load_config(path)
    tick = options.pop("tick", None)
    if tick:
        Arbiter.TICK = tick
    for name in ("STOP_MARGIN", "ABORT_GRACE"):
        if name in options:
            setattr(Arbiter, name, options.pop(name))
    arbiter = Arbiter(
        config,
        load_config=functools.partial(load_config, path),
        worker_target=lambda worker, cfg: pick_target(cfg)(worker, cfg),
        config_path=path,
        **options,
    )
    return arbiter.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
