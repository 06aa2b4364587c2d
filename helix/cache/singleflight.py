"""Single-flight: concurrent identical misses in one worker make one upstream call.

The first request for a key becomes the *leader* (before its own lookup, so
requests arriving while a remote lookup is in flight are followers too); the
others *follow*: they wait, bounded, for the leader's answer and are served
it.  The leader always finishes its flight -- with its answer, or with None
when it has none to share (an error, a client gone, an answer too large) --
and followers given None, or tired of waiting, go upstream themselves.
"""

from __future__ import annotations

import asyncio


class SingleFlight:
    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: str) -> tuple[asyncio.Future, bool]:
        """(the key's flight, True if the caller is its leader)."""
        fut = self._flights.get(key)
        if fut is not None:
            return fut, False
        fut = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        return fut, True

    def finish(self, key: str, fut: asyncio.Future, result: object) -> None:
        if self._flights.get(key) is fut:
            del self._flights[key]
        if not fut.done():
            fut.set_result(result)

    @staticmethod
    async def wait(fut: asyncio.Future, timeout: float) -> object:
        """The leader's result, or None after ``timeout`` seconds."""
        if fut.done():
            return fut.result()
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(fut)
        except TimeoutError:
            return None
