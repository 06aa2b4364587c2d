"""A request's context, made: the pure-Python twin of context_c.pyx.

``ContextFactory(cls).new(exchange, api, started)`` is ``cls(exchange, api, started)``
(helix/pipeline/context.py RequestContext).  The compiled twin makes the same object
without running ``__init__``: it fills the slots by offset from a template instance.
"""

from __future__ import annotations

__all__ = ["ContextFactory"]


class ContextFactory:
    __slots__ = ("cls", "new")

    def __init__(self, cls) -> None:
        self.cls = cls
        self.new = cls
