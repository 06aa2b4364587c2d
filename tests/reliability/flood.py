"""Open N idle keep-alive connections to a helix worker, close them, measure its memory.

Used by tests/reliability/test_conn_flood.py (bounded) and, for the 10,000-connection
figure in docs/RELIABILITY.md, run by hand:

    python tests/reliability/flood.py 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.helpers import HelixProcess, mock_config
from tests.reliability.kit import MI, fds, pss, settled_pss


def open_idle(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: flood\r\n\r\n")
        socks.append(s)
    for s in socks:
        s.recv(4096)  # answered: now an idle keep-alive connection
    return socks


def flood(helix: HelixProcess, n: int, rounds: int, report=print) -> list[dict]:
    (worker,) = helix.worker_pids()
    base = settled_pss(worker)
    out = []
    for r in range(rounds):
        socks = open_idle(helix.port, n)
        time.sleep(0.3)
        peak, open_fds = pss(worker), fds(worker)
        for s in socks:
            s.close()
        time.sleep(1.5)  # the worker trims its heap a second after the flood ends
        after = settled_pss(worker)
        row = {"round": r, "base_mb": base / MI, "open_mb": peak / MI, "closed_mb": after / MI,
               "per_conn_kb": (peak - base) / n / 1024, "open_fds": open_fds,
               "closed_fds": fds(worker)}
        report(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()))
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.n + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    cfg = mock_config("http://127.0.0.1:9") + f"server: {{max_connections: {args.n + 100}}}\n"
    with HelixProcess(cfg, workers=1) as helix:
        flood(helix, args.n, args.rounds)


if __name__ == "__main__":
    main()
