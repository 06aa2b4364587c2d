"""The cost of the ``server-timing`` header: per header, and Helix's CPU per request with it on/off.

1. Micro: ``helix.observe.timing.header(ctx)`` for a stream's context (helix, upstream and
   ttft parts), timed with ``timeit`` (the header is built once per response).
2. End to end: two Helix processes (1 worker each), ``observability.server_timing`` true
   and false, in front of one mock; the same closed-loop load on each, in alternating
   rounds (so a busy neighbour on a shared machine hits both alike); Helix's CPU time
   (utime + stime of master and worker, ``/proc/PID/stat``) per request.

    python bench/timing.py --requests 3000 --rounds 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
import timeit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helix.mock import MockProcess  # noqa: E402
from helix.observe import timing  # noqa: E402
from tests.helpers import HelixProcess  # noqa: E402

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "bench"}]}).encode()
TICK = os.sysconf("SC_CLK_TCK")


class Ctx:
    __slots__ = ("first_chunk_at", "head_at", "queued", "started", "upstream_started", "waited")

    def __init__(self) -> None:
        now = time.monotonic()
        self.started = now - 0.03
        self.upstream_started = now - 0.029
        self.head_at = now - 0.008
        self.first_chunk_at = now - 0.008
        self.waited = 0.021
        self.queued = 0.0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
        total += int(rest[11]) + int(rest[12])  # utime, stime
    return total / TICK


def drive(port: int, total: int, concurrency: int) -> None:
    lock = threading.Lock()
    left = [total]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            conn.request("POST", "/v1/chat/completions", body=BODY,
                         headers={"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def config(mock_url: str, on: bool) -> str:
    return f"""
providers:
  - {{name: p, type: openai_compatible, base_url: {mock_url}/v1, api_key: k, models: [m]}}
observability:
  server_timing: {str(on).lower()}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000, help="per round and setting")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    ctx = Ctx()
    example = timing.header(ctx)[1].decode()
    n = 200_000
    per = min(timeit.repeat(lambda: timing.header(ctx), number=n, repeat=5)) / n
    print(f"timing.header(ctx): {per * 1e9:.0f} ns per response "
          f"(example: {example})")
    cpu = {True: 0.0, False: 0.0}
    with MockProcess("--no-record") as mock, \
            HelixProcess(config(mock.url, True), workers=1) as on, \
            HelixProcess(config(mock.url, False), workers=1) as off:
        procs = {True: on, False: off}
        pids = {k: [p.proc.pid, *p.worker_pids()] for k, p in procs.items()}
        for gw in procs.values():
            drive(gw.port, 300, args.concurrency)  # warm-up
        for _ in range(args.rounds):
            for setting in (True, False):
                before = cpu_seconds(pids[setting])
                drive(procs[setting].port, args.requests, args.concurrency)
                cpu[setting] += cpu_seconds(pids[setting]) - before
    total = args.requests * args.rounds
    us_on, us_off = cpu[True] / total * 1e6, cpu[False] / total * 1e6
    print(f"Helix CPU per request: server_timing on {us_on:.1f} us, off {us_off:.1f} us, "
          f"difference {us_on - us_off:+.1f} us ({(us_on / us_off - 1) * 100:+.1f}%), "
          f"{total} requests each, {args.rounds} alternating rounds, 1 worker, "
          f"CPU clock tick {1e6 / TICK:.0f} us")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"header_ns": per * 1e9, "cpu_us_on": us_on, "cpu_us_off": us_off,
                       "requests": total}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
