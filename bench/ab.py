"""A/B: Helix's CPU per request for several variants, in alternating wrk runs.

A variant is ``nginx`` or ``helix[:TREE][@PYTHON][+CONFIG]``: ``bench/run.py``'s Helix target
(one worker, its pass-through config) run as ``PYTHON -m helix`` from source tree TREE
(default: this checkout and the `helix` on PATH) with the YAML fragment in file CONFIG
appended. Every variant runs at once on the proxy CPU in front of one mock, with run.py's
pinning; for each connection count, run i of every variant follows run i of the previous one,
so drift on a shared machine hits all alike (run.py's (a2) does the same for helix and
helix-features). Reported per run and as medians: the proxy's CPU µs per request, req/s,
wrk's p99 and timeouts, and the upstream connections opened.

    python bench/ab.py nginx helix helix@/usr/bin/python3.11 --conns 32,128 --pairs 5
    python bench/ab.py helix helix:/tmp/other-tree --duration 5
    python bench/ab.py nginx helix helix:/tmp/other-tree --streams 1000 --pairs 4

``--streams N`` compares streams instead, against run.py's stream mock (its (c) rows: 20
chunks 50 ms apart): per pair and variant, the time to first byte (loadgen ``ttfb``, c=1, a
fresh connection each, the median of 30) and the proxy's CPU per stream over N streams open
at once (loadgen ``streams``, every chunk checked).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

# bench/ is sys.path[0] when run as a script.
from run import (
    FAST_MOCK,
    STREAM_CHUNKS,
    STREAM_MOCK,
    Context,
    Helix,
    Nginx,
    Proc,
    Target,
    cpu_seconds,
    free_port,
    measure,
    run_loadgen,
    run_wrk,
    wait_ready,
)


def variant(ctx: Context, i: int, spec: str, helix: type[Helix] = Helix) -> Target:
    """The target for ``spec``; ``helix``: the class of a Helix variant (bench/instr.py
    runs its own, under callgrind)."""
    if spec == "nginx":
        target: Target = Nginx(ctx)
    elif spec.startswith("helix"):
        rest, config = spec[5:], None
        if "+" in rest:
            rest, config = rest.split("+", 1)
        target = helix(ctx)
        if "@" in rest:
            rest, target.python = rest.split("@", 1)
        if rest.startswith(":"):
            target.tree = Path(rest[1:]).resolve()
        target.extra_config = Path(config).read_text() if config else ""
        target.name = f"helix-{i}"  # its own config directory
    else:
        raise SystemExit(f"unknown variant {spec!r} (nginx or helix[:TREE][@PYTHON][+CONFIG])")
    target.label = spec
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+", help="nginx | helix[:TREE][@PYTHON][+CONFIG]")
    ap.add_argument("--conns", default="32,128,512")
    ap.add_argument("--duration", type=int, default=5, help="seconds per timed run")
    ap.add_argument("--pairs", type=int, default=5, help="timed runs per variant")
    ap.add_argument(
        "--streams",
        type=int,
        default=0,
        help="compare streams (TTFB, CPU per stream at N open) instead of wrk",
    )
    opts = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="helix-ab-") as tmp:
        ctx = Context(Path(tmp), free_port())
        try:
            ctx.restart_mock(FAST_MOCK)
            targets = [variant(ctx, i, s) for i, s in enumerate(opts.variants)]
            running = []
            for t in targets:
                port = free_port()
                proc = t.start(port)
                wait_ready(port, proc, t.ready_timeout, poll=0.05)
                running.append((t, port, proc))
            if opts.streams:
                ctx.restart_mock(STREAM_MOCK)
                streams_ab(targets, running, opts.streams, opts.pairs)
                return 0
            rows: dict[tuple[int, int], list[dict]] = {}
            for conns in (int(c) for c in opts.conns.split(",") if c.strip()):
                for _, port, _ in running:
                    run_wrk(port, 2.0, conns)  # warm-up (and pool fill)
                for run in range(opts.pairs):
                    for i, (t, port, proc) in enumerate(running):
                        w = measure(proc, port, opts.duration, conns, ctx.mock_port)
                        rows.setdefault((conns, i), []).append(w)
                        print(
                            f"c={conns} run {run} {t.label}: {w['cpu_us_per_req']:.1f} µs/req, "
                            f"{w['rps']:,.0f} req/s, p99 {w['p99_us'] / 1000:.1f} ms, "
                            f"timeouts {w['timeout']}, upstream connects "
                            f"{w.get('upstream_connects', '?')} "
                            f"(churn {w.get('upstream_churn', '?')})",
                            flush=True,
                        )
            print("\n| conns | variant | CPU µs/req (median) | runs | vs first | req/s (median) |")
            print("|---:|---|---:|---|---:|---:|")
            for (conns, i), runs in rows.items():
                med = statistics.median(w["cpu_us_per_req"] for w in runs)
                base = statistics.median(w["cpu_us_per_req"] for w in rows[(conns, 0)])
                rps = statistics.median(w["rps"] for w in runs)
                each = ", ".join(f"{w['cpu_us_per_req']:.1f}" for w in runs)
                print(
                    f"| {conns} | {targets[i].label} | {med:.1f} | {each} | "
                    f"{med / base:.2f}× | {rps:,.0f} |"
                )
        finally:
            Proc.stop_all()
    return 0


def streams_ab(targets: list[Target], running: list, n: int, pairs: int) -> None:
    rows: dict[int, list[tuple[float, float]]] = {}
    for _, port, _ in running:  # warm-up: upstream connections to the restarted mock
        run_loadgen("ttfb", port, "-n", "5", timeout=120)
    for run in range(pairs):
        for i, (t, port, proc) in enumerate(running):
            ttfb = run_loadgen("ttfb", port, "-n", "30", timeout=120)
            cpu0 = cpu_seconds(proc.pid)
            st = run_loadgen(
                "streams",
                port,
                "-n",
                str(n),
                "--chunks",
                str(STREAM_CHUNKS),
                "--timeout",
                "60",
                timeout=180,
            )
            cpu = (cpu_seconds(proc.pid) - cpu0) / n * 1e6
            if st.get("complete") != n or ttfb.get("errors"):
                print(f"  {t.label}: not clean: {st} {ttfb.get('errors')}", flush=True)
            rows.setdefault(i, []).append((ttfb["median_ms"], cpu))
            print(
                f"run {run} {t.label}: TTFB median {ttfb['median_ms']:.3f} ms, "
                f"{cpu:.0f} µs CPU/stream ({n} at once, {st.get('complete')} complete, "
                f"max chunk gap {st.get('max_chunk_gap_ms', float('nan')):.0f} ms)",
                flush=True,
            )
    print("\n| variant | TTFB ms (median of runs) | runs | CPU µs/stream (median) | runs |")
    print("|---|---:|---|---:|---|")
    for i, runs in rows.items():
        ttfb = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(
            f"| {targets[i].label} | {ttfb:.3f} | {', '.join(f'{r[0]:.3f}' for r in runs)} "
            f"| {cpu:.0f} | {', '.join(f'{r[1]:.0f}' for r in runs)} |"
        )


if __name__ == "__main__":
    sys.exit(main())
