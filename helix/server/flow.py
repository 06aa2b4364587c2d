"""The exception a streaming handler gets when its client has gone.

Flow control itself lives on the connection (:class:`helix.server.protocol.HttpProtocol`):
reading is paused while too many pipelined requests wait, and a streaming handler awaits
``drain()`` while the transport's write buffer is over its high-water mark, so a slow
client slows the upstream read instead of growing our memory without bound.
"""

from __future__ import annotations

__all__ = ["ClientDisconnected"]


class ClientDisconnected(Exception):
    """The client went away while the response was being written."""
