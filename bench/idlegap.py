"""Round-trip time of one keep-alive connection against the idle time between requests.

    python bench/idlegap.py --port P [--gaps 0,0.001,0.01,0.1,0.5] [-n 30]

Sends a small non-stream chat completion, waits for the whole answer, sleeps ``gap``
seconds, repeats: 5 warm-up requests then ``-n`` measured ones per gap, and prints the
median round trip per gap as JSON lines.  Run it against ``direct`` (the mock), nginx and
Helix in turn (the way bench/RESULTS.md's "Issue 15: the cold path" does): the difference
between gap 0 and gap 0.1 s is what an idle CPU and cold caches cost each of them, which
is what the 50 req/s open loop and the stream TTFB of bench/run.py measure.  Targets
127.0.0.1 only; every wait is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import socket
import time

# bench/ is sys.path[0] when run as a script.
from loadgen import build_request, chat_body, read_answer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--gaps", default="0,0.001,0.01,0.1,0.5")
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--model", default="gpt-4o-mini")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    req = build_request("127.0.0.1", args.port, chat_body(args.model, "hi", False), "x")
    s = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def one() -> float:
        t = time.perf_counter()
        s.sendall(req)
        buf = read_answer(s)
        if not buf.startswith(b"HTTP/1.1 200"):
            raise ValueError(buf[:40].decode("latin-1"))
        return (time.perf_counter() - t) * 1e6

    try:
        for gap in (float(g) for g in args.gaps.split(",")):
            for _ in range(5):
                one()
                time.sleep(gap)
            vals = []
            for _ in range(args.n):
                vals.append(one())
                time.sleep(gap)
            vals.sort()
            row = {
                "gap_s": gap,
                "n": len(vals),
                "rtt_median_us": round(vals[len(vals) // 2]),
                "rtt_p90_us": round(vals[int(len(vals) * 0.9)]),
            }
            print(json.dumps(row), flush=True)
    finally:
        s.close()


if __name__ == "__main__":
    main()
