"""Pre-fork process management: the master (arbiter), workers and shared memory.

Importing this package loads nothing: ``helix.master.shm`` (read by the workers'
metrics and health tables) does not pull in the supervisor, and neither loads
``helix.app`` nor ``helix.server``; workers import those lazily after the fork.
The names below are imported on first use.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "EXIT_BOOT_ERROR": "arbiter", "EXIT_ERROR": "arbiter", "EXIT_OK": "arbiter",
    "Arbiter": "arbiter",
    "SharedMemory": "shm", "ShmLayout": "shm", "Table": "shm", "WorkerSlot": "shm",
    "WorkerSlots": "shm",
    "BOOT_ERROR": "worker", "WorkerContext": "worker", "bind_socket": "worker",
    "check_bindable": "worker", "run_worker": "worker",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'helix.master' has no attribute {name!r}")
    return getattr(importlib.import_module(f"helix.master.{module}"), name)
