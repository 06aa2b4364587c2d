"""Hedging bench: time to first token (p50/p90/p99/max) with and without ``resilience.hedge``.

Two mock providers, each its own process: ``fast`` answers in ``--fast-ms`` (20 ms); ``tail``
also answers in 20 ms except for ``--slow-p`` (10%) of requests, whose first chunk comes after
``--slow-ms`` (2 s) (``helix mock --slow-p --slow-ms``, seeded).  One Helix per setting
in front of both; the same closed-loop streaming load (``--concurrency`` clients,
``--requests`` in total); TTFT is measured by the client (request sent to response head,
which Helix sends with the first chunk).

Settings: ``round_robin`` (both deployments get half the traffic, as when both are needed
for capacity) without and with ``hedge: {after: --after}``, and the default
``latency_based`` without and with it.  With ``latency_based`` PeakEWMA avoids the tail
deployment for tens of seconds after each slow answer, so how many requests still meet one
(and so its p99 without hedging) depends on when the slow answers fall; with hedging a
cancelled loser only raises the tail's estimate to the time it was given, so the tail keeps
more traffic and more requests are hedged (each at about ``after`` + 20 ms): compare the
p99.9 / max.  Also printed: upstream attempts per request (the price of hedging).

    python bench/hedge.py --requests 600 --concurrency 8 --after 100ms
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

BODY = json.dumps({"model": "m", "stream": True,
                   "messages": [{"role": "user", "content": "bench"}]}).encode()


def config(fast: str, tail: str, strategy: str, after: str | None) -> str:
    hedge = f"resilience:\n  hedge: {{after: {after}, max: 1}}\n" if after else ""
    return f"""
providers:
  - {{name: fast, type: openai_compatible, base_url: {fast}/v1, api_key: k, models: [m]}}
  - {{name: tail, type: openai_compatible, base_url: {tail}/v1, api_key: k, models: [m]}}
load_balancing:
  strategy: {strategy}
{hedge}"""


def drive(port: int, total: int, concurrency: int):
    lock = threading.Lock()
    left = [total]
    ttft: list[float] = []
    attempts = [0]
    errors = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            t = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body=BODY,
                         headers={"content-type": "application/json"})
            r = conn.getresponse()
            first = time.perf_counter() - t
            r.read()
            with lock:
                if r.status != 200:
                    errors[0] += 1
                    continue
                ttft.append(first)
                attempts[0] += int(r.getheader("x-helix-attempts", "1"))
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return ttft, attempts[0], errors[0]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast-ms", type=float, default=20.0)
    ap.add_argument("--slow-ms", type=float, default=2000.0)
    ap.add_argument("--slow-p", type=float, default=0.1)
    ap.add_argument("--after", default="100ms")
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    results = {}
    settings = [("round_robin", None), ("round_robin", args.after),
                ("latency_based", None), ("latency_based", args.after)]
    for strategy, after in settings:
        # Fresh mocks per setting: the same seeded sequence of slow answers for each.
        with MockProcess("--no-record", "--latency-ms", str(args.fast_ms)) as fast, \
                MockProcess("--no-record", "--latency-ms", str(args.fast_ms), "--slow-p",
                            str(args.slow_p), "--slow-ms", str(args.slow_ms),
                            "--seed", "7") as tail, \
                HelixProcess(config(fast.url, tail.url, strategy, after),
                             workers=args.workers) as gw:
            ttft, attempts, errors = drive(gw.port, args.requests, args.concurrency)
        name = f"{strategy}, " + (f"hedge after {after}" if after else "no hedge")
        res = {"p50_ms": round(pct(ttft, 0.5), 1), "p90_ms": round(pct(ttft, 0.9), 1),
               "p99_ms": round(pct(ttft, 0.99), 1), "p999_ms": round(pct(ttft, 0.999), 1),
               "max_ms": round(max(ttft) * 1000, 1),
               "attempts_per_request": round(attempts / max(1, len(ttft)), 3),
               "errors": errors}
        results[name] = res
        print(f"{name:34s} TTFT p50 {res['p50_ms']:7.1f}  p90 {res['p90_ms']:7.1f}  "
              f"p99 {res['p99_ms']:7.1f}  p99.9 {res['p999_ms']:7.1f}  "
              f"max {res['max_ms']:7.1f} ms  "
              f"attempts/request {res['attempts_per_request']:.3f}  errors {errors}")
    for strategy in ("round_robin", "latency_based"):
        for q in ("p99_ms", "p999_ms"):
            off = results[f"{strategy}, no hedge"][q]
            on = results[f"{strategy}, hedge after {args.after}"][q]
            print(f"{strategy}: {q[:-3]} TTFT with hedging / without = {on / off:.3f} "
                  f"({off:.0f} ms -> {on:.0f} ms)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
