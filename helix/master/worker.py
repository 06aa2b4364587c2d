"""The worker side of the pre-fork model: one process, one uvloop loop, one socket.

Each worker binds its *own* listening socket with ``SO_REUSEPORT`` on the
shared host:port after the fork; the kernel spreads incoming connections over
the listeners of the group.  ``helix.app`` and ``helix.server`` are imported
here, lazily, so the master never loads them.
"""

from __future__ import annotations

import asyncio
import errno
import faulthandler
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from helix.master.shm import BOOTING, DRAINING, READY, SharedMemory, WorkerSlot

__all__ = [
    "BOOT_ERROR",
    "HEARTBEAT_INTERVAL",
    "WorkerContext",
    "bind_socket",
    "check_bindable",
    "run_worker",
]

# Exit code of a worker that cannot start (bad config, app import/init error,
# cannot bind).  The master treats it as "do not respawn in a loop".
BOOT_ERROR = 3
HEARTBEAT_INTERVAL = 1.0


@dataclass
class WorkerContext:
    """What a worker knows about itself; handed to ``create_app(config, worker)``.

    ``index`` is the worker's row in every per-worker shared-memory table
    (unique among live workers, ``< shm.workers.capacity``); ``number`` is its
    logical position ``0..workers-1`` within its generation.
    """

    index: int
    number: int
    generation: int
    pid: int
    master_pid: int
    shm: SharedMemory
    slot: WorkerSlot
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("helix.worker"))

    def table(self, name: str):
        """A shared table allocated by the master (``shm.table(name)``)."""
        return self.shm.table(name)


# -- sockets -----------------------------------------------------------------


def _resolve(host: str, port: int) -> tuple[int, Any]:
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise OSError(errno.EINVAL, f"cannot bind {host}:{port}: {exc.strerror}") from exc
    family, _, _, _, addr = infos[0]
    return family, addr


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _bind_error(host: str, port: int, exc: OSError) -> OSError:
    reason = (exc.strerror or str(exc)).lower()
    return OSError(exc.errno, f"cannot bind {_fmt(host, port)}: {reason}")


def bind_socket(host: str, port: int, backlog: int, reuse_port: bool = True) -> socket.socket:
    """A non-blocking listening TCP socket on host:port (IPv4 or IPv6).

    ``SO_REUSEPORT`` puts it in the kernel's group of listeners on that
    address (one per worker); ``SO_REUSEADDR`` lets a restart bind over
    ``TIME_WAIT`` leftovers.
    """
    family, addr = _resolve(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise _bind_error(host, port, exc) from exc
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def check_bindable(host: str, port: int) -> None:
    """Master-side pre-flight: raise a readable ``OSError`` if host:port is unusable.

    Binds *without* ``SO_REUSEPORT`` so that any existing listener -- another
    program, or a stale Helix whose reuseport group we would otherwise silently
    join -- is reported as "address already in use".  It never calls
    ``listen()``, so it never becomes part of a reuseport group, and it closes
    the socket straight away.
    """
    family, addr = _resolve(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        raise _bind_error(host, port, exc) from exc
    finally:
        sock.close()


# -- the worker process -------------------------------------------------------


def run_worker(
    worker: WorkerContext,
    config,
    *,
    create_app: Callable[[Any, WorkerContext], Awaitable[Any]] | None = None,
    server_factory: Callable[..., Any] | None = None,
) -> int:
    """Child entry point: serve until SIGTERM/SIGINT, then drain; return the exit code.

    ``create_app`` and ``server_factory`` default to ``helix.app.create_app``
    and ``helix.server.server.Server`` (imported here, after the fork); tests
    inject stand-ins.  Returns 0 after a graceful drain, ``BOOT_ERROR`` when
    the app cannot be created or the socket cannot be bound.
    """
    import uvloop

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.siginterrupt(signal.SIGTERM, False)
    # A hung worker gets SIGABRT from the master: dump every thread's stack first.
    faulthandler.enable()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(worker, config, loop, create_app, server_factory))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


class _Heartbeat:
    """Writes the heartbeat and counters to the worker's slot every interval."""

    def __init__(self, worker: WorkerContext, loop: asyncio.AbstractEventLoop, on_orphan) -> None:
        self.worker = worker
        self.loop = loop
        self.server = None
        self.on_orphan = on_orphan
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._tick()

    def _tick(self) -> None:
        server = self.server
        if server is None:
            self.worker.slot.beat()
        else:
            self.worker.slot.beat(
                server.requests_total,
                server.active_requests,
                server.connections,
            )
        if os.getppid() != self.worker.master_pid:
            # The master is gone (SIGKILL, OOM): nobody will stop or reap us.
            self.on_orphan()
        self._handle = self.loop.call_later(HEARTBEAT_INTERVAL, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def _serve(worker, config, loop, create_app, server_factory) -> int:
    log = worker.log
    slot = worker.slot
    slot.set_pid(worker.pid)
    slot.set_state(BOOTING)
    stop = asyncio.Event()

    def on_stop_signal(signame: str) -> None:
        if not stop.is_set():
            log.info("worker %d (pid %d): %s, draining", worker.number, worker.pid, signame)
        stop.set()

    # The master decides what SIGINT means; in a worker it is always a graceful drain.
    loop.add_signal_handler(signal.SIGTERM, on_stop_signal, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, on_stop_signal, "SIGINT")
    heartbeat = _Heartbeat(worker, loop, lambda: on_stop_signal("master gone"))
    heartbeat.start()
    srv = config.server
    app = None
    sock = None
    try:
        try:
            if create_app is None:
                from helix.app import create_app
            if server_factory is None:
                from helix.server.server import Server as server_factory
            app = await create_app(config, worker)
        except Exception:
            log.exception("worker %d (pid %d): cannot create the app", worker.number, worker.pid)
            return BOOT_ERROR
        if stop.is_set():  # told to stop while booting: never join the listener group
            return 0
        # Bind only once the app is ready: a listener joins the reuseport group
        # (and starts receiving connections) the moment it listens.
        try:
            sock = bind_socket(srv.host, srv.port, srv.backlog)
        except OSError as exc:
            log.error("worker %d (pid %d): %s", worker.number, worker.pid, exc)
            return BOOT_ERROR
        try:
            server = server_factory(app.handle, app.server_limits, loop=loop)
            await server.start(sock)
        except Exception:
            log.exception("worker %d (pid %d): cannot start the server", worker.number, worker.pid)
            return BOOT_ERROR
        heartbeat.server = server
        slot.set_state(READY)
        slot.beat()
        await stop.wait()

        slot.set_state(DRAINING)
        # Closing the listener hands connections still queued on it to the
        # other listeners of the group when net.ipv4.tcp_migrate_req=1 (the
        # master turns it on); see the reload notes in arbiter.py.
        server.stop_accepting()
        sock.close()
        await server.shutdown(srv.graceful_timeout)
        return 0
    finally:
        heartbeat.stop()
        if sock is not None:
            sock.close()
        if app is not None:
            try:
                await app.close()
            except Exception:
                log.exception("worker %d (pid %d): app.close() failed", worker.number, worker.pid)
        slot.beat()
