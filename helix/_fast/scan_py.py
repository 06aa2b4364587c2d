"""Byte scans for the JSON guards: the pure-Python twin of scan_c.pyx.

``brackets(body)`` is how many ``[`` and ``{`` bytes ``body`` holds: the JSON depth guard's
quick bound (a document with fewer opening brackets than the limit cannot nest deeper than
it; helix/schema/jsonsafe.py).
"""

from __future__ import annotations

__all__ = ["brackets"]


def brackets(body) -> int:
    return body.count(b"[") + body.count(b"{")
