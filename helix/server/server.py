"""Server: owns the listener and the set of live connections of one worker.

The worker process creates the listening socket (SO_REUSEPORT) and hands it
over; this class turns it into :class:`HttpProtocol` connections and knows how
to drain them gracefully.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from helix import _fast
from helix.server.memory import GcPacer, trim, tune_malloc

# The typed build of the protocol when it is compiled (helix/_fast/protocol_c.pxd), and the
# Request and Exchange it builds (helix.server re-exports these).
_protocol = _fast.pick_module("protocol_c", "helix.server.protocol")
HttpProtocol = _protocol.HttpProtocol
Exchange = _protocol.Exchange
Request = _protocol.Request

__all__ = ["AccessLog", "Handler", "Server", "ServerLimits"]

logger = logging.getLogger("helix.server")


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int = 64 * 1024  # total request head size -> 431
    max_headers: int = 100  # -> 431
    max_body_bytes: int = 32 * 1024 * 1024  # -> 413
    # Request body bytes held by the whole worker (bodies being received and
    # bodies of requests not yet answered); a body that would go beyond -> 503.
    max_buffered_body_bytes: int = 48 * 1024 * 1024
    # Open client connections per worker; beyond it the longest-idle keep-alive
    # connection is closed to make room, and without one the new one is refused.
    max_connections: int = 4096
    header_timeout: float = 10.0  # head must complete this long after it starts -> 408
    body_timeout: float = 60.0  # body must complete this long after the head -> 408
    keepalive_timeout: float = 75.0  # idle keep-alive connection closed silently
    max_pipelined: int = 16  # queued requests before we pause reading
    write_high_water: int = 256 * 1024
    write_low_water: int = 64 * 1024
    server_header: bytes | None = None  # optional "server:" header value


# Connections open at once above which their closing is followed by a heap trim.
_TRIM_AFTER = 512

Handler = Callable[[Exchange], Awaitable[None]]
AccessLog = Callable[[Exchange, int, int, float], Any]


class Server:
    def __init__(
        self,
        handler: Handler,
        limits: ServerLimits = ServerLimits(),
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.loop: asyncio.AbstractEventLoop = loop  # type: ignore[assignment]
        self.access_log = access_log
        # Handler tasks currently running, and requests started since the worker began
        # (both maintained by HttpProtocol; the heartbeat publishes them to /status).
        self.active = 0
        self.requests_total = 0
        # Request body bytes held by all connections (maintained by HttpProtocol).
        self.buffered = 0
        # Connections refused or closed to stay within max_connections.
        self.refused = 0
        self.evicted = 0
        self._refusal_logged = 0.0
        # Most connections open at once since the last heap trim (see connection_closed).
        self._peak = 0
        self._trim: asyncio.TimerHandle | None = None
        # The collector's young-generation threshold follows the connection count.
        self._gc = GcPacer()
        self.shutting_down = False
        self._conns: set[HttpProtocol] = set()
        # Idle keep-alive connections, longest idle first (maintained by HttpProtocol).
        self.idle: OrderedDict[HttpProtocol, None] = OrderedDict()
        # The connections' request timeouts, one loop timer for all (protocol.py _Timeouts),
        # by the protocol module's class (the pure and the compiled one each keep theirs).
        self.timeouts: dict[type, object] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._all_closed: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------
    async def start(self, sock: socket.socket) -> None:
        """Serve on an already bound and listening socket."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        tune_malloc()  # bodies freed go back to the kernel (helix/server/memory.py)
        srv = await self.loop.create_server(
            # partial, not a method returning HttpProtocol(self): the loop calls the
            # factory for every accepted connection, and a partial is a C call.
            functools.partial(HttpProtocol, self),
            sock=sock,
            # create_server calls listen() again; don't shrink the caller's
            # backlog to asyncio's default of 100.
            backlog=socket.SOMAXCONN,
        )
        self._servers.append(srv)

    def stop_accepting(self) -> None:
        for srv in self._servers:
            srv.close()
        self._servers.clear()

    async def shutdown(self, timeout: float) -> None:
        """Drain: idle connections close now, busy ones after their current
        response; after ``timeout`` seconds the rest are cancelled and aborted."""
        self.shutting_down = True
        self.stop_accepting()
        self._all_closed = asyncio.Event()
        for conn in list(self._conns):
            conn.begin_shutdown()
        if self._conns:
            try:
                await asyncio.wait_for(self._all_closed.wait(), timeout)
            except TimeoutError:
                logger.warning("shutdown timeout: aborting %d connection(s)", len(self._conns))
                for conn in list(self._conns):
                    conn.force_close()
                # connection_lost callbacks run on the next loop iterations.
                try:
                    await asyncio.wait_for(self._all_closed.wait(), 1.0)
                except TimeoutError:
                    logger.error("%d connection(s) did not close", len(self._conns))
        # Let cancelled handler tasks unwind before returning.
        await asyncio.sleep(0)

    # -- bookkeeping (called by HttpProtocol) -------------------------------
    def connection_opened(self, conn: HttpProtocol) -> bool:
        """Register a new connection; False when it must be refused (over the cap)."""
        conns = self._conns
        if len(conns) >= self.limits.max_connections:
            idle = self.idle
            if idle:
                oldest = next(iter(idle))
                del idle[oldest]
                oldest.close_idle()
                self.evicted += 1
            else:
                self.refused += 1
                now = self.loop.time()
                if now - self._refusal_logged >= 10.0:
                    self._refusal_logged = now
                    logger.warning(
                        "connection limit reached (server.max_connections=%d, none idle): "
                        "refusing new connections", self.limits.max_connections,
                    )
                return False
        conns.add(conn)
        n = len(conns)
        if n > self._peak:
            self._peak = n
        gc = self._gc
        if n > gc.hi:
            gc.update(n)
        return True

    def connection_closed(self, conn: HttpProtocol) -> None:
        conns = self._conns
        conns.discard(conn)
        self.idle.pop(conn, None)
        gc = self._gc
        if len(conns) < gc.lo:
            gc.update(len(conns))
        # A flood of connections went away: give its memory back once it is over.
        if self._peak >= _TRIM_AFTER and len(conns) * 2 < self._peak and self._trim is None:
            self._trim = self.loop.call_later(1.0, self._trim_heap)
        if not conns and self._all_closed is not None:
            self._all_closed.set()

    def _trim_heap(self) -> None:
        self._trim = None
        self._peak = len(self._conns)
        trim()

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def active_requests(self) -> int:
        return self.active
