"""Helix's upstream HTTP/1.1 client: a per-worker, per-origin connection pool
on asyncio/uvloop with httptools response parsing and streaming bodies."""

from helix.client.pool import (
    Origin,
    PoolLimits,
    Timeouts,
    UpstreamPool,
    UpstreamResponse,
    parse_url,
)

__all__ = ["Origin", "PoolLimits", "Timeouts", "UpstreamPool", "UpstreamResponse", "parse_url"]
