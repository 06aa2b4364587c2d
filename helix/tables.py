"""Shared-memory tables, planned once in the master before it forks.

Each feature that keeps cross-worker state (metrics, latency/health per
deployment, local rate-limit counters) exposes ``plan_shm(layout, config,
capacity)`` in its module and is listed here; the master calls :func:`plan`
so every region exists before the first fork and workers inherit it.  A
module missing from this tree is skipped, so features land independently.
"""

from __future__ import annotations

import importlib

PLANNERS = (
    "helix.observe.metrics",
    "helix.routing.health",
    "helix.limit.local",
)


def plan(layout, config, capacity: int) -> None:
    for name in PLANNERS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        planner = getattr(mod, "plan_shm", None)
        if planner is not None:
            planner(layout, config, capacity)
