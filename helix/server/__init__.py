"""Helix's HTTP/1.1 server: asyncio.Protocol + httptools, no framework.

Public surface::

    Server, ServerLimits, Handler      -- helix.server.server
    Exchange, Request                  -- helix.server.exchange
    ClientDisconnected                 -- raised by Exchange.send()
"""

from helix.server.flow import ClientDisconnected
from helix.server.server import (  # Exchange, Request: the build the protocol uses
    AccessLog,
    Exchange,
    Handler,
    Request,
    Server,
    ServerLimits,
)

__all__ = [
    "AccessLog",
    "ClientDisconnected",
    "Exchange",
    "Handler",
    "Request",
    "Server",
    "ServerLimits",
]
