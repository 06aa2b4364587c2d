"""Byte scans for the JSON guards: the pure-Python twin of scan_c.pyx.

``brackets(body)`` is how many ``[`` and ``{`` bytes ``body`` holds: the JSON depth guard's
quick bound (a document with fewer opening brackets than the limit cannot nest deeper than
it).  ``depth_exceeds(body, limit)`` is the guard itself (helix/schema/jsonsafe.py says why):
the count first, the exact scan only for a body with more opening brackets than ``limit``.
"""

from __future__ import annotations

import operator
import re
from itertools import accumulate, count

__all__ = ["MAX_DEPTH", "brackets", "depth_exceeds"]

# Real requests nest a few dozen levels at most (a JSON Schema of ten nested
# objects is ~25); 128 leaves room and keeps every Python walker far from the
# interpreter's recursion limit (1000).
MAX_DEPTH = 128

# A JSON string, quotes included (the unrolled form: no backtracking per char).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Opening bracket -> 2, closing -> 0: the running sum minus the position is the depth.
_WEIGHTS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def brackets(body) -> int:
    return body.count(b"[") + body.count(b"{")


def depth_exceeds(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when the JSON text ``body`` nests arrays/objects deeper than ``limit``.

    Meant for text that parses (call it after a successful decode, or let the
    decoder report malformed input first): brackets inside strings are ignored,
    but an unterminated string may be counted as structure.
    """
    if brackets(body) <= limit:
        return False
    return exact_depth_exceeds(body, limit)


def exact_depth_exceeds(body: bytes, limit: int) -> bool:
    """The exact scan behind :func:`depth_exceeds`, for a body with many brackets."""
    if b'"' in body:
        body = _STRING.sub(b"", body)
    skeleton = body.translate(_WEIGHTS, _NOT_BRACKETS)
    if len(skeleton) <= limit:
        return False
    depths = map(operator.sub, accumulate(skeleton), count(1))
    return max(depths) > limit
