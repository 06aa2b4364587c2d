import mmap
import os
import time

import pytest

from helix.master import shm
from helix.master.shm import ALIGN, WORKER_FIELDS, WORKER_TABLE, SharedMemory, ShmLayout


def _wait_child(pid: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not exit in {timeout}s")


def _fork(fn) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    return pid


@pytest.fixture
def mem():
    layout = ShmLayout()
    layout.alloc(WORKER_TABLE, rows=6, cols=len(WORKER_FIELDS), dtype="Q")
    layout.alloc("flags", rows=3, cols=1, dtype="B")
    layout.alloc("ewma", rows=4, cols=3, dtype="d")
    layout.alloc("counters", rows=2, cols=2, dtype="q")
    m = SharedMemory(layout)
    yield m
    m.close()


def test_layout_alignment_and_size(mem):
    names = ("workers", "flags", "ewma", "counters")
    workers, flags, ewma, counters = (mem.table(n) for n in names)
    assert workers.offset == 0
    assert workers.view.nbytes == 6 * 8 * 8
    assert flags.offset == 6 * 64  # a worker row is exactly one cache line
    assert ewma.offset == flags.offset + ALIGN  # 3 bytes padded to the next line
    assert counters.offset == ewma.offset + 128  # 96 bytes padded to 2 lines
    for t in (workers, flags, ewma, counters):
        assert t.offset % ALIGN == 0
    assert mem.size % mmap.PAGESIZE == 0
    assert ewma.view.format == "d" and ewma.view.itemsize == 8
    assert len(ewma.view) == 12


def test_layout_rejects_bad_specs():
    layout = ShmLayout()
    layout.alloc("a", rows=1)
    with pytest.raises(ValueError):
        layout.alloc("a", rows=1)
    with pytest.raises(ValueError):
        layout.alloc("b", rows=0)
    with pytest.raises(ValueError):
        layout.alloc("c", rows=1, dtype="s")


def test_table_rows_and_indexing(mem):
    ewma = mem.table("ewma")
    ewma.set(2, 1, 1.5)
    assert ewma.view[ewma.index(2, 1)] == 1.5
    assert ewma.row(2).tolist() == [0.0, 1.5, 0.0]
    ewma.row(3)[0] = 7.25  # row views write through
    assert ewma.get(3, 0) == 7.25
    with pytest.raises(IndexError):
        ewma.index(4, 0)
    with pytest.raises(IndexError):
        ewma.index(0, 3)
    ewma.clear_row(2)
    assert ewma.row(2).tolist() == [0.0, 0.0, 0.0]


def test_child_writes_are_visible_to_parent(mem):
    slots = mem.workers
    slots.prepare(1, generation=4)
    ewma = mem.table("ewma")

    def child():
        slot = slots.slot(1)
        slot.set_pid(os.getpid())
        slot.set_state(shm.READY)
        slot.beat(requests_total=123, in_flight=2, connections=5)
        ewma.set(1, 2, 0.125)

    pid = _fork(child)
    assert _wait_child(pid) == 0
    info = slots.read(1)
    assert info["pid"] == pid
    assert info["generation"] == 4
    assert info["state"] == shm.READY
    assert info["requests_total"] == 123
    assert info["in_flight"] == 2
    assert info["connections"] == 5
    assert 0 < time.monotonic_ns() - info["heartbeat"] < 10e9
    assert ewma.get(1, 2) == 0.125
    assert [s["slot"] for s in slots.snapshot()] == [1]
    slots.release(1)
    assert slots.snapshot() == []


def test_parent_writes_are_visible_to_running_child(mem):
    flags = mem.table("flags")

    def child():
        deadline = time.monotonic() + 10
        while flags.get(0) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        flags.set(1, 0, 2)

    pid = _fork(child)
    flags.set(0, 0, 1)
    assert _wait_child(pid) == 0
    assert flags.get(1) == 2


def test_fetch_add_is_exact_across_processes(mem):
    n = 10_000
    counters = mem.table("counters")
    idx = counters.index(1, 1)

    def child():
        for _ in range(n):
            mem.fetch_add("counters", idx, 1)

    pids = [_fork(child) for _ in range(2)]
    for pid in pids:
        assert _wait_child(pid, timeout=60) == 0
    assert counters.view[idx] == 2 * n
    assert counters.view[counters.index(1, 0)] == 0  # neighbours untouched


def test_fetch_add_returns_old_and_wraps(mem):
    counters = mem.table("counters")
    assert mem.fetch_add(counters, 0, 5) == 0
    assert mem.fetch_add(counters, 0, -7) == 5
    assert counters.view[0] == -2
    counters.view[1] = 2**63 - 1
    assert mem.fetch_add(counters, 1, 1) == 2**63 - 1
    assert counters.view[1] == -(2**63)
    workers = mem.table("workers")
    workers.view[0] = 2**64 - 1
    assert mem.fetch_add(workers, 0, 2) == 2**64 - 1
    assert workers.view[0] == 1
    with pytest.raises(TypeError):
        mem.fetch_add("ewma", 0, 1)


def test_worker_slot_prepare_resets_row(mem):
    slots = mem.workers
    assert slots.capacity == 6
    slot = slots.slot(0)
    slots.prepare(0, generation=1)
    slot.beat(requests_total=9, in_flight=1, connections=1)
    slots.prepare(0, generation=2)
    info = slots.read(0)
    assert info["state"] == shm.BOOTING
    assert info["generation"] == 2
    assert info["requests_total"] == 0
    assert info["started_at"] > 0
