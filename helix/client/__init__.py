"""Helix's upstream HTTP/1.1 client: a per-worker, per-origin connection pool
on asyncio/uvloop with httptools response parsing and streaming bodies.

Import the pool's names from here, not from ``helix.client.pool``: this is where the typed
build (``helix._fast.pool_c``, compiled from ``pool.py``) is picked when it is built, and one
build's ``HeaderBlock`` is not the other's."""

from helix import _fast

_pool = _fast.pick_module("pool_c", "helix.client.pool")
HeaderBlock = _pool.HeaderBlock
Origin = _pool.Origin
PoolLimits = _pool.PoolLimits
Timeouts = _pool.Timeouts
UpstreamPool = _pool.UpstreamPool
UpstreamResponse = _pool.UpstreamResponse
parse_url = _pool.parse_url

__all__ = ["HeaderBlock", "Origin", "PoolLimits", "Timeouts", "UpstreamPool", "UpstreamResponse",
           "parse_url"]
