"""A flood of idle keep-alive connections (issue 14.9): memory comes back after they close,
and server.max_connections holds.  10,000 connections: tests/reliability/flood.py."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.helpers import HelixProcess, mock_config
from tests.reliability.flood import flood, open_idle
from tests.reliability.kit import fds

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux /proc smaps_rollup"
)


def test_memory_returns_after_a_flood_of_idle_connections():
    cfg = mock_config("http://127.0.0.1:9") + "server: {max_connections: 5000}\n"
    with HelixProcess(cfg, workers=1) as helix:
        rows = flood(helix, 2000, 3, report=lambda _: None)
    first, last = rows[0], rows[-1]
    assert all(r["open_fds"] >= 2000 and r["closed_fds"] < 64 for r in rows), rows
    # Nothing accumulates from one flood to the next ...
    assert last["closed_mb"] - first["closed_mb"] < 4, rows
    # ... and most of a flood's memory is handed back (pymalloc keeps a few arenas).
    assert last["closed_mb"] - first["base_mb"] < 12, rows
    assert last["open_mb"] - last["closed_mb"] > 1, rows


def test_max_connections_closes_idle_ones_then_refuses():
    cfg = mock_config("http://127.0.0.1:9") + "server: {max_connections: 200}\n"
    with HelixProcess(cfg, workers=1) as helix:
        (worker,) = helix.worker_pids()
        base = fds(worker)
        socks = open_idle(helix.port, 200)
        more = open_idle(helix.port, 100)  # each new one closes the longest-idle one
        time.sleep(0.3)
        assert fds(worker) - base <= 200 + 2
        closed = 0
        for s in socks[:100]:
            s.settimeout(2)
            try:
                closed += s.recv(10) == b""
            except OSError:
                closed += 1
        assert closed == 100
        # The newest ones still work.
        more[-1].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert more[-1].recv(100).startswith(b"HTTP/1.1 200")
        for s in socks + more:
            s.close()
        with socket.create_connection(("127.0.0.1", helix.port), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")
