"""A small caching DNS resolver for upstream connections.

``loop.getaddrinfo`` runs in the default thread pool and costs a thread hop
plus a libc lookup; a gateway opens connections to a handful of provider
hosts over and over, so results are cached for ``ttl`` seconds.  Concurrent
lookups of the same ``(host, port)`` share one in-flight task.  Failures are
remembered only for ``negative_ttl`` seconds so a transient resolver hiccup
does not pin an origin down.  IP literals never touch DNS.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket

from helix.errors import ErrorKind, HelixError

__all__ = ["Address", "Resolver"]

# (family, sockaddr) -- what socket.socket(family) + sock_connect(sockaddr) need.
Address = tuple[int, tuple]


def literal_address(host: str, port: int) -> list[Address] | None:
    """The address list for an IP literal, or None if *host* is a name."""
    if not host or (host[0] not in "0123456789[" and ":" not in host):
        return None  # cheap reject for ordinary host names
    if host[0] == "[" and host[-1] == "]":
        host = host[1:-1]
    if "%" in host:
        return None  # scoped IPv6 literal: let getaddrinfo fill in the scope id
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return [(socket.AF_INET, (str(ip), port))]
    return [(socket.AF_INET6, (str(ip), port, 0, 0))]


class Resolver:
    """Caches ``getaddrinfo`` answers; one instance per worker is enough."""

    __slots__ = ("_cache", "_inflight", "_loop", "max_entries", "negative_ttl", "ttl")

    def __init__(
        self,
        ttl: float = 60.0,
        *,
        negative_ttl: float = 1.0,
        max_entries: int = 1024,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self._loop = loop
        # (host, port) -> (expires_at, addresses | HelixError)
        self._cache: dict[tuple[str, int], tuple[float, list[Address] | HelixError]] = {}
        self._inflight: dict[tuple[str, int], asyncio.Task] = {}

    async def resolve(self, host: str, port: int) -> list[Address]:
        """Addresses for *host* in getaddrinfo order; raises CONNECT_REFUSED on failure."""
        literal = literal_address(host, port)
        if literal is not None:
            return literal
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        key = (host, port)
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > loop.time():
                result = hit[1]
                if isinstance(result, HelixError):
                    raise HelixError(result.kind, result.message, cause=result.__cause__)
                return result
            del self._cache[key]
        task = self._inflight.get(key)
        if task is None:
            task = loop.create_task(self._lookup(loop, host, port))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._lookup_done, key))
        # shield: one waiter being cancelled must not cancel the shared lookup.
        return await asyncio.shield(task)

    async def _lookup(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[Address]:
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (OSError, UnicodeError) as exc:
            err = HelixError(
                ErrorKind.CONNECT_REFUSED, f"DNS lookup failed for {host}:{port}", cause=exc
            )
            self._store((host, port), loop.time() + self.negative_ttl, err)
            raise err from exc
        addrs: list[Address] = []
        seen = set()
        for family, _type, _proto, _canon, sockaddr in infos:
            if sockaddr not in seen:
                seen.add(sockaddr)
                addrs.append((family, sockaddr))
        if not addrs:
            err = HelixError(ErrorKind.CONNECT_REFUSED, f"DNS lookup for {host}:{port} was empty")
            self._store((host, port), loop.time() + self.negative_ttl, err)
            raise err
        self._store((host, port), loop.time() + self.ttl, addrs)
        return addrs

    def _lookup_done(self, key: tuple[str, int], task: asyncio.Task) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved even if every waiter went away

    def _store(self, key: tuple[str, int], expires: float, value) -> None:
        cache = self._cache
        if len(cache) >= self.max_entries and key not in cache:
            # Evict the oldest insertion; origins are few, this almost never runs.
            del cache[next(iter(cache))]
        cache[key] = (expires, value)

    def clear(self) -> None:
        self._cache.clear()
