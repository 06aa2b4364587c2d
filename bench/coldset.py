"""The cold working set of one request: distinct cache lines touched, counted by callgrind.

Target 3 of issue 15 (added latency at 50 req/s, stream time to first chunk) is paid by a
request that arrives after an idle gap, when the proxy's code and data have left the CPU's
caches (bench/RESULTS.md, "Issue 15: the cold path"). Its cost is not the instructions
(bench/instr.py counts those) but the cache lines the request touches, each fetched again from
memory. This counts them: the proxy runs under ``valgrind --tool=callgrind --cache-sim=yes``
with instrumentation off; for each measured request a signal turns it on (callgrind empties
its simulated caches when it does), the request is sent on a warm keep-alive connection and
answered, and a second signal turns it off and dumps the window's counts. With a last-level
cache far larger than a request's footprint, every last-level miss in the window is a
distinct line the request touched: ``ILmr`` code lines, ``DLmr + DLmw`` data lines. Windows
without a request (the signals alone) are counted the same way and subtracted.

The signals are handled by a few lines of C preloaded into the proxy (``LD_PRELOAD``), which
switch the counting at the event loop's next epoll wait: the same for Helix and nginx, so both
are measured alike; the kernel's share (the syscalls, the network stack) is in neither count.
Windows where Helix's once-a-second heartbeat timer ran are left out; windows where the date
line was formatted (the first request of a new second) are reported apart.

``--burst N`` sends a request on each of N keep-alive connections at once instead and counts
per request: the shared code amortises away, and what is left is what each request in flight
adds (its connection's state, its objects): the lines that miss the caches as connections
grow (target 1).

    python bench/coldset.py                          # Helix (the `helix` on PATH) and nginx
    python bench/coldset.py helix@/tmp/venv/bin/python helix:/tmp/other@/tmp/venv/bin/python
    python bench/coldset.py helix --objects          # and where Helix's lines are, by object
    python bench/coldset.py --stream                 # a stream on a fresh connection (TTFB)
    python bench/coldset.py --sdk                    # the request with the openai SDK's headers
    python bench/coldset.py --burst 256 -n 3         # per request, 256 in flight

A variant is ``nginx``, ``floor[@PYTHON]`` (bench/floor.py: uvloop relaying bytes) or
``helix[:TREE][@PYTHON][+CONFIG]`` as in ``bench/ab.py``. Needs
valgrind with its headers (Debian: ``valgrind``) and gcc. Targets 127.0.0.1 only; every wait
is bounded.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import loadgen

# bench/ is sys.path[0] when run as a script.
from ab import variant
from instr import REQUEST, SDK_REQUEST, STREAM_REQUEST, workdir, worker_pid
from run import (
    FAST_MOCK,
    Context,
    Floor,
    Helix,
    Nginx,
    Proc,
    free_port,
    wait_ready,
)

ON, OFF = signal.SIGRTMIN + 1, signal.SIGRTMIN + 2

# Preloaded into the proxy; installed before main() by the dynamic loader and inherited by
# forked workers. Callgrind cannot switch its instrumentation inside a signal handler, so the
# handler only records the request and the switch happens at the event loop's next epoll wait
# (on its return with EINTR when the signal woke it, before it when the loop was busy):
# outside any request, in nginx and uvloop alike.
WINDOW_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <valgrind/callgrind.h>
/* Switches asked for, in order (1: start, 2: stop and dump), drained by the loop's thread. */
static volatile sig_atomic_t asked[256];
static volatile unsigned head, tail;
/* kill() may pick any thread; the event loop runs on the main one (its tid is the pid). */
static int elsewhere(int s) {
    if (syscall(SYS_gettid) == getpid()) return 0;
    syscall(SYS_tgkill, getpid(), getpid(), s);
    return 1;
}
static void on(int s) { if (!elsewhere(s)) asked[tail++ & 255] = 1; }
static void off(int s) { if (!elsewhere(s)) asked[tail++ & 255] = 2; }
#define want (head != tail)
static void apply(void) {
    while (head != tail) {
        if (asked[head++ & 255] == 1) { CALLGRIND_START_INSTRUMENTATION; }
        else { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS; }
    }
}
int epoll_wait(int fd, struct epoll_event *ev, int n, int ms) {
    static int (*real)(int, struct epoll_event *, int, int);
    if (!real) real = dlsym(RTLD_NEXT, "epoll_wait");
    if (want) apply();  /* a signal that came while the loop was busy */
    int r = real(fd, ev, n, ms);
    if (want) apply();
    return r;
}
int epoll_pwait(int fd, struct epoll_event *ev, int n, int ms, const sigset_t *ss) {
    static int (*real)(int, struct epoll_event *, int, int, const sigset_t *);
    if (!real) real = dlsym(RTLD_NEXT, "epoll_pwait");
    if (want) apply();
    int r = real(fd, ev, n, ms, ss);
    if (want) apply();
    return r;
}
__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGRTMIN + 1);  /* one handler at a time */
    sigaddset(&sa.sa_mask, SIGRTMIN + 2);
    sa.sa_handler = on;
    sigaction(SIGRTMIN + 1, &sa, 0);
    sa.sa_handler = off;
    sigaction(SIGRTMIN + 2, &sa, 0);
}
"""

VALGRIND = [
    "valgrind",
    "--tool=callgrind",
    "--instr-atstart=no",
    "--cache-sim=yes",
    "--I1=32768,8,64",
    "--D1=32768,8,64",
    # 32 MiB: a request's lines all fit, so a last-level miss is a line touched first.
    "--LL=33554432,16,64",
]


class Window(NamedTuple):
    """One counting window's instructions and distinct lines, and what else ran in it."""

    ir: int
    code: int
    data: int
    timer: bool  # Helix's worker heartbeat (once a second; its getppid) ran in it
    date: bool  # the date line was formatted: the first request of a new second (gmtime)
    path: Path


def window(path: Path) -> Window:
    text = path.read_text()
    ir, code, data = lines(counts(path))
    return Window(ir, code, data, "getppid" in text, "offtime" in text, path)


def net(
    ws: list[Window], base: tuple[int, int, int], per: int = 1
) -> tuple[float, float, float] | None:
    """The windows' medians less ``base`` (instructions, code lines, data lines), over
    ``per`` requests."""
    if not ws:
        return None
    return (
        (statistics.median(w.ir for w in ws) - base[0]) / per,
        (statistics.median(w.code for w in ws) - base[1]) / per,
        (statistics.median(w.data for w in ws) - base[2]) / per,
    )


def build_window_lib(tmp: Path) -> Path:
    src, lib = tmp / "window.c", tmp / "window.so"
    src.write_text(WINDOW_C)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    return lib


class ColdHelix(Helix):
    ready_timeout = 300.0
    out = Path("/tmp")

    def command(self) -> list[str] | None:
        base = super().command()
        if base is None:
            return None
        return [*VALGRIND, f"--callgrind-out-file={self.out}/cg.%p", *base]

    def worker(self, proc: Proc) -> int:
        return worker_pid(proc.pid)


class ColdNginx(Nginx):
    ready_timeout = 300.0
    out = Path("/tmp")

    def command(self, d: Path) -> list[str]:
        # One process serves (master_process off): the one to signal.
        base = super().command(d)
        return [*VALGRIND, f"--callgrind-out-file={self.out}/cg.%p", *base[:-1],
                "daemon off; master_process off;"]  # fmt: skip

    def worker(self, proc: Proc) -> int:
        return proc.pid  # master_process off: one process serves


class ColdFloor(Floor):
    ready_timeout = 300.0
    out = Path("/tmp")

    def command(self, port: int) -> list[str]:
        return [*VALGRIND, f"--callgrind-out-file={self.out}/cg.%p", *super().command(port)]

    def worker(self, proc: Proc) -> int:
        return proc.pid  # one process relays


# The request measured: ``--sdk`` sends it with the openai SDK's headers (bench/instr.py).
_request = REQUEST


def one_request(s: socket.socket) -> None:
    s.sendall(_request)
    read_answer(s)


def burst(socks: list[socket.socket]) -> None:
    """One request on each connection, all sent before any answer is read."""
    for s in socks:
        s.sendall(_request)
    for s in socks:
        read_answer(s)


def read_answer(s: socket.socket) -> None:
    buf = loadgen.read_answer(s)
    if not buf.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {buf[:200]!r}")


def one_stream(port: int) -> None:
    """A streamed chat completion on a fresh connection, read to its last chunk."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(STREAM_REQUEST)
        buf = b""
        while not buf.endswith(b"\r\n0\r\n\r\n"):
            data = s.recv(65536)
            if not data:
                raise ConnectionError("closed by the proxy")
            buf += data
        if not buf.startswith(b"HTTP/1.1 200") or b"[DONE]" not in buf:
            raise RuntimeError(f"unexpected stream: {buf[:200]!r}")


def counts(path: Path) -> dict[str, int]:
    events: list[str] = []
    found: dict[str, int] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("totals:"):  # a dump's "summary:" line can read 0: not used
            found = dict(zip(events, map(int, line.split()[1:]), strict=True))
    if found is None:
        raise RuntimeError(f"no totals in {path}")
    return found


def lines(c: dict[str, int]) -> tuple[int, int, int]:
    """(instructions, code lines, data lines) of one window."""
    return c.get("Ir", 0), c.get("ILmr", 0), c.get("DLmr", 0) + c.get("DLmw", 0)


def by_object(paths: list[Path]) -> dict[str, list[int]]:
    """Code and data lines per shared object, summed over ``paths`` (callgrind_annotate)."""
    agg: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for p in paths:
        out = subprocess.run(
            [
                "callgrind_annotate",
                "--inclusive=no",
                "--auto=no",
                "--threshold=100",
                "--sort=ILmr",
                str(p),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        events: list[str] = []
        for row in out.splitlines():
            if row.startswith("Events shown:"):
                events = row.split(":", 1)[1].split()
            m = re.match(r"^\s*((?:[\d,]+(?: \([ \d.]+%\))?|\.)\s+)+", row)
            if not events or not m or "PROGRAM TOTALS" in row or ":" not in row[m.end() :]:
                continue
            nums = re.findall(r"([\d,]+|\.)(?: \([ \d.]+%\))?\s+", m.group(0))
            cells = [0 if x == "." else int(x.replace(",", "")) for x in nums]
            vals = dict(zip(events, cells, strict=False))  # a row may end before its last event
            obj = re.search(r"\[([^\]]*)\]\s*$", row)
            name = obj.group(1) if obj else "(inlined header code)"
            key = ("helix/" if "/helix/" in name else "") + name.rsplit("/", 1)[-1]
            ir, code, data = lines(vals)
            agg[key][0] += ir
            agg[key][1] += code
            agg[key][2] += data
    return agg


def cold_target(ctx: Context, spec: str) -> ColdHelix | ColdNginx | ColdFloor:
    if spec == "nginx":
        return ColdNginx(ctx)
    if spec.split("@")[0] == "floor":
        floor = ColdFloor(ctx)
        floor.python = spec.partition("@")[2] or None
        return floor
    return variant(ctx, 0, spec, ColdHelix)  # type: ignore[return-value]


def measure(
    ctx: Context, spec: str, n: int, settle: float, stream: bool = False, conns: int = 0
) -> tuple[list[Window], list[Window]]:
    """``n`` windows without a request, then ``n`` with one (a stream with ``stream``; with
    ``conns``, a request on each of that many keep-alive connections at once)."""
    out = Path(tempfile.mkdtemp(prefix="cold-", dir=ctx.tmp))
    target = cold_target(ctx, spec)
    target.out = out
    if isinstance(target, ColdHelix):
        target.name = f"helix-{out.name}"
    port = free_port()
    proc = target.start(port)
    try:
        wait_ready(port, proc, target.ready_timeout, poll=0.5)
        pid = target.worker(proc)
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(50):  # warm: the connection, the upstream pool, lazy imports
            one_request(s)
            if stream:
                one_stream(port)
        socks = [socket.create_connection(("127.0.0.1", port), timeout=120) for _ in range(conns)]
        for c in socks:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(3 if conns else 0):  # as many upstream connections as in flight
            burst(socks)
        kinds = ["idle"] * n + ["request"] * n
        for kind in kinds:
            os.kill(pid, ON)
            time.sleep(settle)
            if kind == "request":
                if conns:
                    burst(socks)
                elif stream:
                    one_stream(port)
                else:
                    one_request(s)
                time.sleep(settle / 3)
            os.kill(pid, OFF)
            time.sleep(settle)
        s.close()
        for c in socks:
            c.close()
    finally:
        proc.stop(timeout=60.0)
    dumps = sorted(out.glob(f"cg.{pid}.*"), key=lambda p: int(p.suffix[1:]))
    if len(dumps) != len(kinds):
        raise RuntimeError(f"{len(dumps)} windows dumped for {len(kinds)} ({out})")
    windows = [window(p) for p in dumps]
    return windows[:n], windows[n:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="*", default=["helix", "nginx"])
    ap.add_argument("-n", type=int, default=8, help="windows with and without a request")
    ap.add_argument("--settle", type=float, default=0.1, help="seconds around each signal")
    ap.add_argument("--objects", action="store_true", help="Helix's lines by shared object")
    ap.add_argument(
        "--stream",
        action="store_true",
        help="a streamed request (10 chunks) on a fresh connection instead: the TTFB row's shape",
    )
    ap.add_argument(
        "--burst",
        type=int,
        default=0,
        metavar="N",
        help="a request on each of N keep-alive connections at once instead, counted per "
        "request: what each request in flight adds (its connection's state, its objects)",
    )
    ap.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the windows' callgrind dumps under DIR (a new directory per run), for "
        "callgrind_annotate: which functions touch the lines",
    )
    ap.add_argument("--sdk", action="store_true", help="each request with the openai SDK's headers")
    opts = ap.parse_args(argv)
    if opts.sdk:
        global _request
        _request = SDK_REQUEST
    for tool in ("valgrind", "callgrind_annotate", "gcc"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    if not Path("/usr/include/valgrind/callgrind.h").exists():
        sys.exit("valgrind's headers are not installed (/usr/include/valgrind/callgrind.h)")
    rows = []
    with workdir(opts.keep, "helix-coldset-") as tmp:
        if opts.keep:
            print(f"callgrind dumps kept in {tmp}/cold-*/cg.<pid>.<window>", file=sys.stderr)
        ctx = Context(Path(tmp), free_port())
        lib = build_window_lib(Path(tmp))
        preload = os.environ.get("LD_PRELOAD")
        os.environ["LD_PRELOAD"] = f"{lib} {preload}" if preload else str(lib)
        try:
            ctx.restart_mock(FAST_MOCK)  # started with the preload too; never signalled
            for spec in opts.variants:
                idle, req = measure(ctx, spec, opts.n, opts.settle, opts.stream, opts.burst)
                # Left out: windows Helix's heartbeat timer fell into (≈ 15,000 instructions
                # once a second, no part of a request). The baseline is the signals alone.
                quiet = [w for w in idle if not w.timer] or idle
                base = (min(w.ir for w in quiet), min(w.code for w in quiet),
                        min(w.data for w in quiet))  # fmt: skip
                # (A burst outlasts a second under callgrind: it shares the heartbeat too.)
                usable = [w for w in req if not w.timer or opts.burst]
                # With a burst, the date line's once-a-second cost is shared by its requests.
                steady = [w for w in usable if not w.date or opts.burst]
                first = [w for w in usable if w.date and not opts.burst]

                note = ""
                if not steady:  # long windows (a stream under callgrind) all share a second
                    steady, first, note = usable, [], "; date lines included"
                if not steady:
                    steady, note = req, "; date lines and heartbeats included"
                got = net(steady, base, opts.burst or 1)
                assert got is not None
                rows.append((spec, got, net(first, base), len(steady), len(first)))
                unit = "stream" if opts.stream else "request"
                print(
                    f"{spec}: {got[0]:,.0f} instructions, {got[1]:,.0f} code lines, "
                    f"{got[2]:,.0f} data lines a cold {unit} ({len(steady)} windows; "
                    f"{len(first)} more formatted the date line, {len(req) - len(usable)} "
                    f"held the heartbeat{note})",
                    flush=True,
                )
                dumps = [w.path for w in steady]
                if opts.objects and spec != "nginx":
                    agg = by_object(dumps)
                    k = len(dumps)
                    print(f"\n{spec}, by object (mean of {k} request windows, idle included)")
                    print("| object | instructions | code lines | data lines |")
                    print("|---|---:|---:|---:|")
                    for name, (ir, code, data) in sorted(
                        agg.items(), key=lambda kv: -(kv[1][1] + kv[1][2])
                    ):
                        if code + data >= k:
                            print(f"| {name} | {ir / k:,.0f} | {code / k:,.0f} | {data / k:,.0f} |")
                    print()
        finally:
            Proc.stop_all()
            if preload is None:
                os.environ.pop("LD_PRELOAD", None)
            else:
                os.environ["LD_PRELOAD"] = preload
    what = "One streamed request on a fresh connection" if opts.stream else "One request"
    if opts.burst:
        what = f"Each of {opts.burst} requests on as many connections at once"
    print(
        f"\n{what} after a cache clear, medians of {opts.n} windows each less the signals' "
        "own window; user space only, 64-byte lines. The last column: the first request of "
        "a new second, which also formats the date line (code + data lines)."
    )
    print("| variant | instructions | code lines | data lines | KiB touched | first of a second |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec, (ir, code, data), first, _, _ in rows:
        kib = (code + data) * 64 / 1024
        extra = f"{first[1] + first[2]:,.0f}" if first else "–"
        print(f"| {spec} | {ir:,.0f} | {code:,.0f} | {data:,.0f} | {kib:,.0f} | {extra} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
