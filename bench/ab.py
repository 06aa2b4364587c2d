"""A/B: Helix's CPU per request for several variants, in alternating wrk runs.

A variant is ``nginx`` or ``helix[:TREE][@PYTHON][+CONFIG]``: Helix (one worker) run as
``PYTHON -m helix`` from source tree TREE (default: this checkout; PYTHON default: this
interpreter) with CONFIG (a YAML fragment) appended to the plain pass-through config of
``bench/run.py``. Every variant runs at once on the proxy CPU (0) in front of one mock;
mock and wrk run on CPU 1. For each connection count, run i of every variant follows run i
of the previous one, so drift on a shared machine hits all alike. Reported: the proxy's
CPU µs per request (utime+stime of its process tree, ``/proc/PID/stat``), req/s and wrk's
p99 and timeouts, per run and as medians.

    python bench/ab.py nginx helix helix@/usr/bin/python3.11 --conns 32,128 --pairs 5
    python bench/ab.py helix helix:/tmp/other-tree --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROXY_CPU, LOAD_CPU = "0", "1"
LUA = ROOT / "bench" / "chat.lua"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout:g} s")


def parse_variant(spec: str) -> dict:
    if spec == "nginx":
        return {"kind": "nginx", "label": spec}
    if not spec.startswith("helix"):
        raise SystemExit(f"unknown variant {spec!r} (nginx or helix[:TREE][@PYTHON][+CONFIG])")
    rest, config = spec[5:], None
    if "+" in rest:
        rest, config = rest.split("+", 1)
    python = sys.executable
    if "@" in rest:
        rest, python = rest.split("@", 1)
    tree = rest[1:] if rest.startswith(":") else str(ROOT)
    return {"kind": "helix", "label": spec, "tree": tree, "python": python, "config": config}


def start(v: dict, d: Path, mock_port: int) -> subprocess.Popen:
    port = free_port()
    v["port"] = port
    if v["kind"] == "nginx":
        conf = (ROOT / "bench" / "nginx.conf.tmpl").read_text()
        conf = conf.replace("@TMP@", str(d)).replace("@PORT@", str(port))
        conf = conf.replace("@UPSTREAM@", f"127.0.0.1:{mock_port}")
        (d / "nginx.conf").write_text(conf)
        cmd = ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"]
        env, cwd = None, None
    else:
        cfg = d / "config.yaml"
        extra = Path(v["config"]).read_text() if v["config"] else ""
        cfg.write_text(
            "server: {workers: 1}\nproviders:\n  - name: mock\n    type: openai_compatible\n"
            f"    base_url: http://127.0.0.1:{mock_port}/v1\n    api_key: sk-mock\n"
            f"    models: [gpt-4o-mini]\nresponses: {{state_dir: {d / 'state'}}}\n"
            "upstream: {max_connections_per_origin: 16384}\n" + extra
        )
        cmd = [v["python"], "-m", "helix", "--config", str(cfg), "--workers", "1",
               "--port", str(port)]
        env, cwd = dict(os.environ, PYTHONPATH=v["tree"]), v["tree"]
    log = open(d / "log.txt", "wb")  # noqa: SIM115 - closed with the process
    p = subprocess.Popen(["taskset", "-c", PROXY_CPU, *cmd], cwd=cwd, env=env, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    wait_port(port)
    return p


def tree_cpu(p: subprocess.Popen) -> float:
    """Seconds of CPU used so far by every process in ``p``'s session."""
    pids = subprocess.run(["pgrep", "-s", str(p.pid)], capture_output=True, text=True).stdout
    total = 0
    for pid in pids.split():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def wrk(port: int, conns: int, seconds: int) -> dict:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", str(LUA),
         url], capture_output=True, text=True, timeout=seconds + 60,
    ).stdout
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[8:])
    raise SystemExit(f"wrk printed no summary:\n{out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+", help="nginx | helix[:TREE][@PYTHON][+CONFIG]")
    ap.add_argument("--conns", default="32,128,512")
    ap.add_argument("--duration", type=int, default=5, help="seconds per timed run")
    ap.add_argument("--pairs", type=int, default=5, help="timed runs per variant")
    opts = ap.parse_args(argv)
    variants = [parse_variant(s) for s in opts.variants]
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="helix-ab-") as tmp:
        try:
            mock_port = free_port()
            mock = subprocess.Popen(
                ["taskset", "-c", LOAD_CPU, sys.executable, "-m", "helix.mock", "--no-record",
                 "--port", str(mock_port)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(mock)
            wait_port(mock_port)
            for i, v in enumerate(variants):
                d = Path(tmp) / f"v{i}"
                d.mkdir()
                v["proc"] = start(v, d, mock_port)
                procs.append(v["proc"])
            results: dict[tuple[int, int], list[tuple[float, dict]]] = {}
            for conns in (int(c) for c in opts.conns.split(",") if c.strip()):
                for run in range(opts.pairs):
                    for i, v in enumerate(variants):
                        wrk(v["port"], conns, 1)  # warm-up: fills the pools
                        c0 = tree_cpu(v["proc"])
                        w = wrk(v["port"], conns, opts.duration)
                        us = (tree_cpu(v["proc"]) - c0) / max(w["requests"], 1) * 1e6
                        results.setdefault((conns, i), []).append((us, w))
                        print(f"c={conns} run {run} {v['label']}: {us:.1f} µs/req, "
                              f"{w['requests'] / opts.duration:,.0f} req/s, p99 "
                              f"{w['p99_us'] / 1000:.1f} ms, timeouts {w['timeout']}",
                              flush=True)
            print("\n| conns | variant | CPU µs/req (median) | runs | vs first | req/s (median) |")
            print("|---:|---|---:|---|---:|---:|")
            for (conns, i), rows in results.items():
                med = statistics.median(us for us, _ in rows)
                base = statistics.median(us for us, _ in results[(conns, 0)])
                rps = statistics.median(w["requests"] / opts.duration for _, w in rows)
                runs = ", ".join(f"{us:.1f}" for us, _ in rows)
                print(f"| {conns} | {variants[i]['label']} | {med:.1f} | {runs} | "
                      f"{med / base:.2f}× | {rps:,.0f} |")
        finally:
            for p in procs:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
