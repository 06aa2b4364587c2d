"""Flow control in both directions for one connection.

Reading: we pause the transport when too many pipelined requests are queued;
``pause_reading``/``resume_reading`` are idempotent because several
independent reasons (queue depth, shutdown, a fatal parse error) may ask for
the same state and the transport itself is not guaranteed to tolerate a
double pause.

Writing: the transport calls ``pause_writing``/``resume_writing`` on the
protocol when its buffer crosses the high/low water marks.  A streaming
handler awaits :meth:`FlowControl.drain` after each chunk, so a slow client
slows the upstream read instead of growing our memory without bound.
"""

from __future__ import annotations

import asyncio

__all__ = ["ClientDisconnected", "FlowControl"]


class ClientDisconnected(Exception):
    """The client went away while the response was being written."""


class FlowControl:
    __slots__ = ("_lost", "_transport", "_waiter", "read_paused", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._lost = False
        self._waiter: asyncio.Future[None] | None = None

    # -- reading ---------------------------------------------------------
    def pause_reading(self) -> None:
        if not self.read_paused and not self._lost:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self._lost:
            self.read_paused = False
            self._transport.resume_reading()

    # -- writing ---------------------------------------------------------
    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        """Return once the transport accepts writes again.

        Raises :class:`ClientDisconnected` if the connection is (or becomes)
        lost, so a streaming handler stops pulling from upstream.
        """
        if self._lost:
            raise ClientDisconnected()
        if not self.write_paused:
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        # A shielded wait: if the awaiting task is cancelled we must not
        # cancel the shared future another sender may also be waiting on.
        await asyncio.shield(waiter)
        if self._lost:
            raise ClientDisconnected()

    @property
    def lost(self) -> bool:
        return self._lost

    def connection_lost(self) -> None:
        self._lost = True
        self.write_paused = False
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(ClientDisconnected())
                # The awaiting task may already be cancelled; don't let an
                # unretrieved exception warning leak into the logs.
                waiter.exception()
