"""Pre-fork process management: the master (arbiter), workers and shared memory.

Importing this package loads neither ``helix.app`` nor ``helix.server``; workers
import them lazily after the fork.
"""

from helix.master.arbiter import EXIT_BOOT_ERROR, EXIT_ERROR, EXIT_OK, Arbiter
from helix.master.shm import SharedMemory, ShmLayout, Table, WorkerSlot, WorkerSlots
from helix.master.worker import (
    BOOT_ERROR,
    WorkerContext,
    bind_socket,
    check_bindable,
    run_worker,
)

__all__ = [
    "BOOT_ERROR",
    "EXIT_BOOT_ERROR",
    "EXIT_ERROR",
    "EXIT_OK",
    "Arbiter",
    "SharedMemory",
    "ShmLayout",
    "Table",
    "WorkerContext",
    "WorkerSlot",
    "WorkerSlots",
    "bind_socket",
    "check_bindable",
    "run_worker",
]
