"""Where a quiet request's time goes inside the proxy: its user-space stretches between system
calls, timed by ``perf trace`` (the kernel's syscall tracepoints; no ptrace stops).

Target 3 of issue 15 (added p50 at 50 req/s, stream TTFB) is a cold request: every one arrives
at an idle event loop whose code and data have left the caches. ``run.py``'s (b2) measures it
end to end, through the load generator and the mock, where a round moves by more than the
0.1 ms margin. This measures the proxy alone. Each target in turn is started as ``run.py``
starts it (pinned to the proxy CPU, the mock on the load CPU), sent ``--rate`` requests a
second (default 50) for ``--duration`` seconds by ``loadgen.py openloop``, and its serving
process traced. A request is the pattern ``read`` (the client's request) → ``write``
(upstream) → ``epoll`` → ``read`` (the upstream's answer) → ``write`` (to the client) →
``epoll``, and its stretches are:

    in    the client's request read → the upstream write starts   (parse, route, send)
    post  the upstream write ends → the loop waits again          (after the send)
    up    the wait for the upstream's answer                      (the mock; the same for all)
    out   the answer read → the client write starts               (parse, relay)
    tail  the client write ends → the loop waits again            (after the answer)

Medians over the requests; ``in + out`` is the proxy's own time on the request's critical path.
Needs ``perf`` (Debian: ``linux-perf``) with access to tracepoints (root, or
``kernel.perf_event_paranoid`` ≤ -1). Targets 127.0.0.1 only; every wait is bounded.

    python bench/coldtime.py                             # nginx, floor and helix
    python bench/coldtime.py helix floor --helix-python /tmp/venv/bin/python --rate 50
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# bench/ is sys.path[0] when run as a script.
from instr import worker_pid
from run import (
    FAST_MOCK,
    TARGET_CLASSES,
    Context,
    Helix,
    chat_ok,
    free_port,
    run_loadgen,
    wait_ready,
)

STRETCHES = ("in", "post", "up", "out", "tail")
_EVENT = re.compile(r"\s*([\d.]+) \(\s*([\d.]+) ms\): (?:\S+ )?(\w+)\((?:fd: (\d+))?.*= (\d+)")
READS = ("read", "recvfrom", "readv")
WRITES = ("write", "writev", "sendto")


def serving_pid(name: str, pid: int) -> int:
    """The process that serves: Helix's or nginx's one worker, else the process itself."""
    return worker_pid(pid) if name.startswith("helix") or name == "nginx" else pid


def upstream_fds(pid: int, port: int) -> set[str]:
    """The file descriptors of ``pid``'s TCP connections to ``port`` (its upstream's)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    fds = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = fd.readlink().name
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            fds.add(fd.name)
    return fds


def stretches(trace: str, upstream: set[str]) -> dict[str, list[float]]:
    """The five stretches (ms) of every request found in a ``perf trace`` output, given the
    file descriptors of the upstream connections."""
    ev = []
    for line in trace.splitlines():
        m = _EVENT.match(line)
        if m:
            ev.append((float(m[1]), float(m[2]), m[3], m[4]))
    def end(x: tuple) -> float:
        return x[0] + x[1]

    out: dict[str, list[float]] = {k: [] for k in STRETCHES}
    for i in range(len(ev) - 5):
        e = ev[i:i + 6]
        kinds = [x[2] for x in e]
        if not (kinds[0] in READS and kinds[1] in WRITES and kinds[2].startswith("epoll")
                and kinds[3] in READS and kinds[4] in WRITES and kinds[5].startswith("epoll")):
            continue
        if not (e[0][3] == e[4][3] not in upstream and e[1][3] == e[3][3] in upstream):
            continue  # client in, upstream out, upstream in, client out
        out["in"].append(e[1][0] - end(e[0]))
        out["post"].append(e[2][0] - end(e[1]))
        out["up"].append(e[2][1])
        out["out"].append(e[4][0] - end(e[3]))
        out["tail"].append(e[5][0] - end(e[4]))
    return out


def measure(ctx: Context, name: str, opts: argparse.Namespace) -> dict[str, float]:
    target = TARGET_CLASSES[name](ctx)
    port = free_port()
    proc = target.start(port)
    trace = ctx.tmp / f"trace-{name}.txt"
    try:
        wait_ready(port, proc, target.ready_timeout, poll=0.05)
        for _ in range(100):  # warm: the connection pool, lazy imports
            chat_ok(port)
        pid = serving_pid(name, proc.pid)
        tracer = subprocess.Popen(
            ["perf", "trace", "-p", str(pid), "-o", str(trace),
             "-e", "read,readv,recvfrom,write,writev,sendto,epoll_wait,epoll_pwait"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            load = threading.Thread(target=run_loadgen, args=(
                "openloop", port, "--rate", str(opts.rate), "--duration", str(opts.duration),
                "--timeout", "10"), kwargs={"timeout": opts.duration + 60})
            load.start()
            # Mid-run: the floor pairs an upstream connection with each client's, closed
            # with it; a pool's connections are open here too.
            time.sleep(min(2.0, opts.duration / 2))
            upstream = upstream_fds(pid, ctx.mock_port)
            load.join(opts.duration + 70)
        finally:
            tracer.send_signal(signal.SIGINT)
            try:
                tracer.wait(10)
            except subprocess.TimeoutExpired:
                tracer.kill()
                tracer.wait(5)
        upstream |= upstream_fds(pid, ctx.mock_port)  # any opened during the run
    finally:
        proc.stop()
    per = stretches(trace.read_text(errors="replace"), upstream)
    n = len(per["in"])
    if n == 0:
        raise RuntimeError(f"{name}: no request found in the trace ({trace})")
    row = {k: statistics.median(v) * 1000 for k, v in per.items()}
    both = [a + b for a, b in zip(per["in"], per["out"], strict=True)]
    row["in+out"] = statistics.median(both) * 1000
    row["n"] = n
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", default=["nginx", "floor", "helix"],
                    help="run.py targets (not direct: it is the mock)")
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--repeat", type=int, default=1, help="rounds, the targets in turn each")
    ap.add_argument("--helix-python", default=None)
    opts = ap.parse_args(argv)
    Helix.python = opts.helix_python
    if shutil.which("perf") is None:
        sys.exit("perf is not installed (Debian: linux-perf)")
    bad = [t for t in opts.targets if t not in TARGET_CLASSES or t == "direct"]
    if bad:
        ap.error(f"not a proxy target: {bad}")
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="helix-coldtime-") as tmp:
        ctx = Context(Path(tmp), free_port())
        try:
            ctx.restart_mock(FAST_MOCK)
            for r in range(opts.repeat):
                for name in opts.targets:
                    row = measure(ctx, name, opts)
                    rows.append((name, row))
                    print(f"round {r + 1} {name}: " + ", ".join(
                        f"{k} {v:.0f}" for k, v in row.items()), file=sys.stderr, flush=True)
        finally:
            if ctx.mock is not None:
                ctx.mock.stop()
    print(f"\nµs per request at {opts.rate:g} req/s (medians over the requests of each run; "
          "perf trace on the serving process)")
    print("| target | requests | " + " | ".join(STRETCHES) + " | in + out |")
    print("|---|---:|" + "---:|" * (len(STRETCHES) + 1))
    for name, row in rows:
        print(f"| {name} | {row['n']:.0f} | "
              + " | ".join(f"{row[k]:.0f}" for k in STRETCHES) + f" | {row['in+out']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
