"""Balancing bench: p50/p99 of latency_based vs round_robin over two unequal upstreams.

Starts two mock providers with different latencies (``--latency-ms`` per
process: a fast one and a slow one), then one Helix per strategy in front of
both, and drives each with the same closed-loop load (``--concurrency``
clients, ``--requests`` in total).

    python bench/balance.py --fast-ms 20 --slow-ms 200 --requests 2000 --concurrency 16

Prints one line per strategy: p50, p99, mean (ms), requests/s and the share
of requests each upstream served, and writes the numbers as JSON with --json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helix.mock import MockProcess  # noqa: E402
from tests.helpers import HelixProcess  # noqa: E402

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "bench"}]}).encode()


def config(fast_url: str, slow_url: str, strategy: str) -> str:
    return f"""
providers:
  - {{name: fast, type: openai_compatible, base_url: {fast_url}/v1, api_key: k, models: [m]}}
  - {{name: slow, type: openai_compatible, base_url: {slow_url}/v1, api_key: k, models: [m]}}
load_balancing:
  strategy: {strategy}
"""


def drive(port: int, total: int, concurrency: int) -> tuple[list[float], dict[str, int], float]:
    lat: list[float] = []
    served: dict[str, int] = {}
    lock = threading.Lock()
    left = [total]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, seen = [], {}
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            t = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body=BODY,
                         headers={"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
            mine.append(time.perf_counter() - t)
            p = r.getheader("x-helix-provider", "?") if r.status == 200 else f"HTTP {r.status}"
            seen[p] = seen.get(p, 0) + 1
        conn.close()
        with lock:
            lat.extend(mine)
            for k, v in seen.items():
                served[k] = served.get(k, 0) + v

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat, served, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast-ms", type=float, default=20.0)
    ap.add_argument("--slow-ms", type=float, default=200.0)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--strategies", default="latency_based,round_robin")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    results = {}
    with MockProcess("--latency-ms", str(args.fast_ms)) as fast, \
            MockProcess("--latency-ms", str(args.slow_ms)) as slow:
        for strategy in args.strategies.split(","):
            with HelixProcess(config(fast.url, slow.url, strategy), workers=args.workers) as gw:
                drive(gw.port, args.warmup, min(args.concurrency, args.warmup))
                lat, served, wall = drive(gw.port, args.requests, args.concurrency)
            res = {
                "p50_ms": round(pct(lat, 0.50), 2),
                "p99_ms": round(pct(lat, 0.99), 2),
                "mean_ms": round(sum(lat) / len(lat) * 1000.0, 2),
                "rps": round(len(lat) / wall, 1),
                "served": served,
            }
            results[strategy] = res
            print(f"{strategy:14s} p50 {res['p50_ms']:8.2f} ms  p99 {res['p99_ms']:8.2f} ms  "
                  f"mean {res['mean_ms']:8.2f} ms  {res['rps']:8.1f} req/s  served {served}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
