"""Background export: a bounded queue drained in batches by one task per worker.

The request path only calls :meth:`BatchExporter.offer` -- an append, or a
drop counted when the queue is full (by count or by bytes).  A task on the
worker's loop sends batches when ``batch_size`` items are waiting or every
``interval`` seconds, retries what failed with exponential backoff (with
jitter) and drops -- counting them -- what still fails.  Nothing waits for
a collector, and memory never grows past the bounds, however long the
collector is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable

from helix.client import Origin, PoolLimits, Timeouts, UpstreamPool, parse_url

log = logging.getLogger("helix.observe")

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0


class ExportError(Exception):
    """A failed send; ``retry`` says whether another attempt may succeed."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class HttpSender:
    """POSTs to one URL over Helix's own client (its own small pool, never the providers')."""

    def __init__(self, url: str, headers: list[tuple[bytes, bytes]], timeout: float,
                 connections: int = 4) -> None:
        self.origin, path = parse_url(url)
        self.target = (path or "/").encode("ascii")
        self.headers = headers
        self.timeouts = Timeouts(connect=min(timeout, 5.0), first_byte=timeout, read=timeout,
                                 total=timeout)
        self.pool = UpstreamPool(PoolLimits(max_connections_per_origin=connections,
                                            max_idle_per_origin=connections,
                                            pool_timeout=timeout))

    @property
    def label(self) -> str:
        o: Origin = self.origin
        return f"{o.scheme}://{o.host}:{o.port}{self.target.decode()}"

    async def post(self, body: bytes, headers: list[tuple[bytes, bytes]] = ()) -> bytes:
        try:
            resp = await self.pool.request(self.origin, b"POST", self.target,
                                           [*self.headers, *headers], body, self.timeouts)
        except Exception as exc:  # connection refused, timeout, pool closed ...
            raise ExportError(f"{self.label}: {exc}") from None
        try:
            data = await resp.read()
        except Exception as exc:
            raise ExportError(f"{self.label}: {exc}") from None
        finally:
            resp.close()
        status = resp.status
        if status >= 300:
            retry = status in (408, 429) or status >= 500
            raise ExportError(f"{self.label}: HTTP {status}", retry=retry)
        return data

    async def close(self) -> None:
        await self.pool.close()


class BatchExporter:
    """Bounded queue + batching task.

    ``send(batch) -> (failed, lost)`` sends a batch and returns the items worth
    retrying and how many failed for good (raise :class:`ExportError` to fail
    the whole batch).
    ``on_count(outcome, n)`` is told ``("exported"|"dropped", n)``.
    """

    def __init__(
        self,
        name: str,
        send: Callable[[list], Awaitable[list]],
        *,
        max_queue: int,
        batch_size: int,
        interval: float,
        max_retries: int,
        max_bytes: int = 0,
        on_count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.name = name
        self._send = send
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self.max_retries = max_retries
        self.max_bytes = max_bytes
        self.on_count = on_count
        self.queue: deque = deque()
        self.queued_bytes = 0
        self.exported = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    # -- request path ------------------------------------------------------------------

    def offer(self, item, size: int = 0) -> bool:
        q = self.queue
        if len(q) >= self.max_queue or (self.max_bytes and self.queued_bytes + size >
                                        self.max_bytes):
            self._count("dropped", 1)
            return False
        q.append((item, size))
        self.queued_bytes += size
        if len(q) == self.batch_size:
            self._wake.set()
        return True

    # -- background ----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _count(self, outcome: str, n: int) -> None:
        if outcome == "dropped":
            self.dropped += n
        else:
            self.exported += n
        if self.on_count is not None:
            try:
                self.on_count(outcome, n)
            except Exception:
                log.exception("%s: counting failed", self.name)

    def _take(self) -> list:
        q = self.queue
        batch = []
        size = 0
        while q and len(batch) < self.batch_size:
            item, n = q.popleft()
            batch.append(item)
            size += n
        self.queued_bytes -= size
        return batch

    async def _run(self) -> None:
        while not self._closing:
            if len(self.queue) < self.batch_size:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            while self.queue and not self._closing:
                await self._export(self._take())

    async def _export(self, batch: list, retries: int | None = None) -> None:
        retries = self.max_retries if retries is None else retries
        delay = BACKOFF_INITIAL
        for attempt in range(retries + 1):
            try:
                failed = await self._send(batch)
            except ExportError as exc:
                self._note_failure(exc, 0 if exc.retry else len(batch))
                if not exc.retry:
                    return
                failed = batch
            except Exception as exc:
                log.exception("%s: export failed", self.name)
                self._note_failure(exc, len(batch))
                return
            else:
                failed, lost = failed
                if lost:
                    self._count("dropped", lost)
                if len(failed) + lost < len(batch):
                    self._count("exported", len(batch) - len(failed) - lost)
            if not failed:
                return
            if attempt == retries:
                self._count("dropped", len(failed))
                return
            batch = failed
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2.0, BACKOFF_MAX)

    def _note_failure(self, exc: Exception, dropped: int) -> None:
        self.failures += 1
        message = str(exc)
        if message != self.last_error:
            log.warning("%s: %s", self.name, message)
        self.last_error = message
        if dropped > 0:
            self._count("dropped", dropped)

    async def close(self, timeout: float = 2.0) -> None:
        """Stop the task; one last best-effort send (no retries) of what is queued."""
        self._closing = True
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.queue:
            batch = self._take()
            try:
                await asyncio.wait_for(self._export(batch, retries=0), timeout)
            except Exception:
                self._count("dropped", len(batch))
        if self.queue:
            self._count("dropped", len(self.queue))
            self.queue.clear()
            self.queued_bytes = 0

    def state(self) -> dict:
        return {
            "queued": len(self.queue),
            "exported": self.exported,
            "dropped": self.dropped,
            "failures": self.failures,
            "last_error": self.last_error,
        }
