"""Side-by-side load benchmark: direct mock vs nginx vs LiteLLM vs Helix.

Usage: python bench/run.py [--targets direct,nginx,litellm,helix] [--duration 10] [--quick]

Pinning: the proxy under test runs on CPU 0; the mock provider, wrk and the Python load
generator (and this script) run on CPU 1. All traffic goes to 127.0.0.1. Every process started
here runs in its own session and is stopped in a finally block. Writes bench/RESULTS.md and
bench/out/results.json. See bench/README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import importlib.util
import json
import math
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv"
PROXY_CPU = "0"
LOAD_CPU = "1"
MODEL = "gpt-4o-mini"
MASTER_KEY = "sk-bench-" + secrets.token_hex(16)
FAST_MOCK = ["--chunks", "10"]
STREAM_CHUNKS = 20
STREAM_MOCK = ["--chunks", str(STREAM_CHUNKS), "--chunk-interval-ms", "50"]
ALL_TARGETS = ("direct", "nginx", "litellm", "helix", "helix-features")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# -- processes -------------------------------------------------------------------------------


class Proc:
    """A child process in its own session (so its whole tree can be measured and stopped)."""

    live: list[Proc] = []

    def __init__(
        self,
        name: str,
        cmd: list[str],
        cpu: str | None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        full = (["taskset", "-c", cpu] if cpu is not None else []) + cmd
        self.log_path = log_path
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.t_start = time.monotonic()
        self.popen = subprocess.Popen(
            full,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if log_path:
            out.close()  # type: ignore[union-attr]
        self.pid = self.popen.pid
        Proc.live.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self in Proc.live:
            Proc.live.remove(self)
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            try:
                self.popen.wait(timeout=wait)
                # Stragglers in the session (e.g. worker children) get the same treatment.
                if not session_pids(self.pid):
                    break
            except subprocess.TimeoutExpired:
                continue

    @classmethod
    def stop_all(cls) -> None:
        for p in list(cls.live):
            p.stop(timeout=5.0)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(")") + 2 :].split()


def session_pids(sid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields and fields[0] != "Z" and int(fields[3]) == sid:
            out.append(int(entry))
    return out


def cpu_seconds(sid: int) -> float:
    total = 0
    for pid in session_pids(sid):
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def pss_kb(sid: int) -> int:
    total = 0
    for pid in session_pids(sid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class PssSampler:
    """Samples the PSS of a process session in a thread; keeps the maximum."""

    def __init__(self, sid: int, interval: float = 0.25) -> None:
        self.sid = sid
        self.interval = interval
        self.max_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max_kb = max(self.max_kb, pss_kb(self.sid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHAT_BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello"}]})


def chat_ok(port: int, timeout: float = 5.0) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            CHAT_BODY,
            {"Content-Type": "application/json", "Authorization": f"Bearer {MASTER_KEY}"},
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def wait_ready(port: int, proc: Proc | None, timeout: float, poll: float = 0.005) -> float:
    """Seconds until a chat request through ``port`` returns 200; raises on timeout/exit."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if chat_ok(port):
            return time.monotonic() - (proc.t_start if proc else t0)
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}")
        time.sleep(poll)
    raise RuntimeError(f"not ready on port {port} after {timeout:.0f}s")


# -- targets ---------------------------------------------------------------------------------


class Target:
    name = ""
    ready_timeout = 30.0

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.note = ""

    def available(self) -> bool:
        return True

    def start(self, port: int) -> Proc:
        raise RuntimeError("abstract")


class Context:
    def __init__(self, tmp: Path, mock_port: int) -> None:
        self.tmp = tmp
        self.mock_port = mock_port
        self.mock: Proc | None = None

    def start_mock(self, extra: list[str], port: int | None = None, wait: bool = True) -> Proc:
        port = self.mock_port if port is None else port
        cmd = [
            sys.executable,
            "-m",
            "helix.mock",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-record",
            *extra,
        ]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = Proc(
            "mock", cmd, LOAD_CPU, cwd=ROOT, env=env, log_path=self.tmp / f"mock-{port}.log"
        )
        if wait:
            wait_ready(port, proc, 15.0)
        return proc

    def restart_mock(self, extra: list[str]) -> None:
        if self.mock is not None:
            self.mock.stop()
        self.mock = self.start_mock(extra)


class Direct(Target):
    name = "direct"

    def start(self, port: int) -> Proc:
        return self.ctx.start_mock(FAST_MOCK, port, wait=False)


class Nginx(Target):
    name = "nginx"

    def available(self) -> bool:
        if shutil.which("nginx") is None:
            self.note = "nginx not installed (apt-get install nginx)"
            return False
        return True

    def start(self, port: int) -> Proc:
        d = self.ctx.tmp / f"nginx-{port}"
        d.mkdir(exist_ok=True)
        conf = (BENCH / "nginx.conf.tmpl").read_text()
        conf = conf.replace("@TMP@", str(d)).replace("@PORT@", str(port))
        conf = conf.replace("@UPSTREAM@", f"127.0.0.1:{self.ctx.mock_port}")
        (d / "nginx.conf").write_text(conf)
        return Proc("nginx", self.command(d), PROXY_CPU, log_path=d / "stdout.log")

    def command(self, d: Path) -> list[str]:
        """nginx run from prefix ``d`` (bench/coldset.py runs it under callgrind)."""
        return ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"]


class Floor(Target):
    """bench/floor.py: uvloop relaying bytes, no HTTP: what any proxy on the design card's
    stack pays before it does work of its own. Run by Helix's interpreter."""

    name = "floor"
    python: str | None = None  # default: Helix's interpreter (--helix-python), else this one

    def command(self, port: int) -> list[str]:
        python = self.python or Helix.python or sys.executable
        return [python, str(BENCH / "floor.py"), str(port), str(self.ctx.mock_port)]

    def start(self, port: int) -> Proc:
        return Proc("floor", self.command(port), PROXY_CPU,
                    log_path=self.ctx.tmp / f"floor-{port}.log")


class LiteLLM(Target):
    name = "litellm"
    ready_timeout = 180.0

    def available(self) -> bool:
        exe = VENV / "bin" / "litellm"
        if exe.exists():
            return True
        log("installing litellm[proxy] into bench/.venv (one-time)")
        try:
            if not (VENV / "bin" / "python").exists():
                subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
            r = subprocess.run(
                [str(VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
                capture_output=True,
                text=True,
                timeout=1500,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            self.note = f"litellm install failed: {exc}"
            return False
        if r.returncode != 0 or not exe.exists():
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            self.note = "litellm install failed: " + " | ".join(tail)
            return False
        return True

    def version(self) -> str:
        r = subprocess.run(
            [str(VENV / "bin" / "pip"), "show", "litellm"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        for line in r.stdout.splitlines():
            if line.startswith("Version:"):
                return line.split()[1]
        return "?"

    def start(self, port: int) -> Proc:
        d = self.ctx.tmp / "litellm"
        d.mkdir(exist_ok=True)
        cfg = d / "config.yaml"
        cfg.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            f"      model: openai/{MODEL}\n"
            f"      api_base: http://127.0.0.1:{self.ctx.mock_port}/v1\n"
            "      api_key: sk-mock\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
            "general_settings:\n"
            f"  master_key: {MASTER_KEY}\n"
        )
        env = dict(
            os.environ,
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_TELEMETRY="False",
            LITELLM_LOG="ERROR",
        )
        cmd = [
            str(VENV / "bin" / "litellm"),
            "--config",
            str(cfg),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ]
        return Proc("litellm", cmd, PROXY_CPU, cwd=d, env=env, log_path=d / f"log-{port}.txt")


class Helix(Target):
    name = "helix"
    ready_timeout = 60.0
    workers = 1

    python: str | None = None  # --helix-python: run `python -m helix` from the tree with it
    tree = ROOT  # the source tree run (its cwd and PYTHONPATH); bench/ab.py compares others

    def command(self) -> list[str] | None:
        if self.python:
            return [self.python, "-m", "helix"]
        exe = shutil.which("helix")
        if exe:
            return [exe]
        sys.path.insert(0, str(ROOT))
        try:
            if importlib.util.find_spec("helix.__main__") is not None:
                return [sys.executable, "-m", "helix"]
            if importlib.util.find_spec("helix.cli") is not None:
                return [
                    sys.executable,
                    "-c",
                    "import sys; from helix.cli import main; sys.exit(main())",
                ]
        except ImportError:
            return None
        finally:
            sys.path.remove(str(ROOT))
        return None

    def available(self) -> bool:
        if self.command() is None:
            self.note = "helix CLI not found (no `helix` on PATH, no helix.cli / helix.__main__)"
            return False
        return True

    extra_config = ""

    def start(self, port: int) -> Proc:
        d = self.ctx.tmp / self.name
        d.mkdir(exist_ok=True)
        cfg = d / "config.yaml"
        cfg.write_text(
            "server: {workers: 1}\n"
            "providers:\n"
            "  - name: mock\n"
            "    type: openai_compatible\n"
            f"    base_url: http://127.0.0.1:{self.ctx.mock_port}/v1\n"
            "    api_key: sk-mock\n"
            f"    models: [{MODEL}]\n"
            "  - name: claude\n"
            "    type: anthropic\n"
            f"    base_url: http://127.0.0.1:{self.ctx.mock_port}\n"
            "    api_key: sk-mock\n"
            f"    models: [{CLAUDE}]\n"
            f"responses: {{state_dir: {d / 'state'}}}\n"
            # 10,000 concurrent streams to one provider hold 10,000 connections.
            "upstream: {max_connections_per_origin: 16384}\n" + self.extra_config
        )
        cmd = [
            *(self.command() or []),
            "--config", str(cfg), "--workers", str(self.workers), "--port", str(port),
        ]
        env = dict(os.environ, PYTHONPATH=str(self.tree))
        return Proc("helix", cmd, PROXY_CPU, cwd=self.tree, env=env,
                    log_path=d / f"log-{port}.txt")


class HelixFeatures(Helix):
    """Helix with the request-path features on: metrics, request ids, the access line (to a
    file), a local rate limit, retries and the balancer's bookkeeping.  Caching stays off: hits
    would measure the cache, not the proxy."""

    name = "helix-features"
    extra_config = (
        "load_balancing: {strategy: latency_based}\n"
        "resilience:\n  retries: {max_attempts: 2}\n"
        "rate_limits:\n  global: {requests_per_minute: 100000000}\n"
        "observability:\n"
        "  metrics: {enabled: true}\n"
        "  logging: {level: info, access_log: true, request_id: true}\n"
    )


TARGET_CLASSES: dict[str, type[Target]] = {
    "direct": Direct,
    "nginx": Nginx,
    "floor": Floor,
    "litellm": LiteLLM,
    "helix": Helix,
    "helix-features": HelixFeatures,
}


# -- scenarios -------------------------------------------------------------------------------


CLAUDE = "claude-bench"
HI = [{"role": "user", "content": "hello"}]
# (label, path, body, anthropic client): one request of each client API, native first.
APIS = [
    ("chat → openai (native)", "/v1/chat/completions", {"model": MODEL, "messages": HI}, False),
    ("chat → anthropic (translated)", "/v1/chat/completions",
     {"model": CLAUDE, "messages": HI}, False),
    ("messages → anthropic (native)", "/v1/messages",
     {"model": CLAUDE, "max_tokens": 64, "messages": HI}, True),
    ("messages → openai (translated)", "/v1/messages",
     {"model": MODEL, "max_tokens": 64, "messages": HI}, True),
    ("responses → openai (native)", "/v1/responses",
     {"model": MODEL, "input": "hello", "store": False}, False),
    ("responses → anthropic (translated)", "/v1/responses",
     {"model": CLAUDE, "input": "hello", "store": False}, False),
    ("responses → anthropic (translated, stored)", "/v1/responses",
     {"model": CLAUDE, "input": "hello"}, False),
]


def mock_counts(port: int) -> tuple[int, int] | None:
    """(connections the mock has accepted so far, connections open now); the health
    request's own connection is counted in the first and not in the second."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/_mock/health")
        got = json.loads(conn.getresponse().read())
        return got["accepted"], got["open"] - 1
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def mock_accepted(port: int) -> int | None:
    """Connections the mock has accepted so far (the health request itself included)."""
    got = mock_counts(port)
    return None if got is None else got[0]


def run_wrk(port: int, duration: float, conns: int = 32, path: str | None = None,
            body: dict | None = None, anthropic: bool = False) -> dict[str, Any]:
    env = dict(os.environ, BENCH_MODEL=MODEL, BENCH_AUTH=MASTER_KEY,
               BENCH_PATH=path or "/v1/chat/completions",
               BENCH_BODY=json.dumps(body) if body is not None else CHAT_BODY,
               BENCH_ANTHROPIC="1" if anthropic else "")
    cmd = [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "-s",
        str(BENCH / "api.lua"),
        f"http://127.0.0.1:{port}",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    for line in r.stdout.splitlines():
        if line.startswith("WRKJSON "):
            out = json.loads(line[8:])
            out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
            out["errors"] = sum(out[k] for k in ("connect", "read", "write", "status", "timeout"))
            return out
    raise RuntimeError(f"wrk failed: {r.stdout[-500:]} {r.stderr[-500:]}")


def run_loadgen(mode: str, port: int, *args: str, timeout: float) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        LOAD_CPU,
        sys.executable,
        str(BENCH / "loadgen.py"),
        mode,
        "--port",
        str(port),
        "--model",
        MODEL,
        "--auth",
        MASTER_KEY,
        *args,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or not r.stdout.strip():
        raise RuntimeError(f"loadgen {mode} failed: {r.stderr[-800:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return {k: (math.inf if v == "inf" else v) for k, v in out.items()}


def measure(proc: Proc, port: int, duration: float, conns: int, mock_port: int,
            path: str | None = None, body: dict | None = None,
            anthropic: bool = False) -> dict[str, Any]:
    """One wrk run with the proxy's CPU time and the upstream connections it opened.

    Connections are counted over the whole run, and between two probes in its steady
    state (after its first second, until half a second before its end).  When wrk stops
    it hangs up on requests in flight, and a proxy drops the upstream exchange of each
    (it cannot reuse a connection whose response it never read; for an LLM, hanging up
    is also what stops the generation), so the next run begins by replacing those.
    Churn is a connection closed and another opened while the load runs: the steady
    window's connects minus its growth in open connections."""
    a0 = mock_accepted(mock_port)
    probes: list[tuple[int, int] | None] = []
    secs = max(1, round(duration))  # what run_wrk asks wrk for
    # No steady window in a run shorter than 2 s: a probe after wrk's end would count the
    # end's dropped connections as churn.
    timers = [
        threading.Timer(at, lambda: probes.append(mock_counts(mock_port)))
        for at in ((1.0, secs - 0.5) if secs >= 2 else ())
    ]
    for t in timers:
        t.start()
    try:
        cpu0 = cpu_seconds(proc.pid)
        wrk = run_wrk(port, duration, conns, path, body, anthropic)
        cpu1 = cpu_seconds(proc.pid)
    finally:
        for t in timers:
            t.join()
    a1 = mock_accepted(mock_port)
    wrk["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / max(1, wrk["requests"])
    wrk["cpu_util"] = (cpu1 - cpu0) / (wrk["duration_us"] / 1e6)
    if a0 is not None and a1 is not None:
        # minus our own health requests: one at the end, one per probe
        wrk["upstream_connects"] = a1 - a0 - 1 - len(probes)
    if len(probes) == 2 and None not in probes:
        (acc1, open1), (acc2, open2) = probes
        connects = acc2 - acc1 - 1
        wrk["upstream_churn"] = max(0, connects - (open2 - open1))
    return wrk


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median CPU per request (its own figures, not a mix of runs)."""
    ordered = sorted(runs, key=lambda r: r["cpu_us_per_req"])
    out = dict(ordered[len(ordered) // 2])
    out["runs"] = len(runs)
    out["connects_all"] = [r.get("upstream_connects") for r in runs]
    out["churn_all"] = [r.get("upstream_churn") for r in runs]
    return out


def scenario_target(target: Target, opts: argparse.Namespace) -> dict[str, Any]:
    ctx = target.ctx
    res: dict[str, Any] = {}
    port = free_port()
    proc = target.start(port)
    try:
        res["startup_s"] = wait_ready(port, proc, target.ready_timeout, poll=0.05)
        for _ in range(20):
            chat_ok(port)
        time.sleep(1.0)
        res["pss_idle_kb"] = pss_kb(proc.pid)

        res["concurrency"] = {}
        with PssSampler(proc.pid) as sampler:
            for conns in opts.conns:
                log(f"{target.name}: (a) wrk saturation c={conns} {opts.duration}s")
                run_wrk(port, min(2.0, opts.duration), conns)  # warm-up (and pool fill)
                runs = [measure(proc, port, opts.duration, conns, ctx.mock_port)
                        for _ in range(opts.repeat)]
                res["concurrency"][conns] = median_run(runs)
        res["saturation"] = res["concurrency"].get(32) or next(iter(res["concurrency"].values()))
        res["pss_load_kb"] = sampler.max_kb
        if type(target) is Helix and opts.apis:
            res["apis"] = {}
            for label, path, body, anth in APIS:
                log(f"{target.name}: (h) {label} c=32 {opts.duration}s")
                run_wrk(port, min(2.0, opts.duration), 32, path, body, anth)
                res["apis"][label] = median_run([
                    measure(proc, port, opts.duration, 32, ctx.mock_port, path, body, anth)
                    for _ in range(opts.repeat)])

        log(f"{target.name}: (b) open loop {opts.rate:.0f} req/s {opts.duration}s")
        res["openloop"] = run_loadgen(
            "openloop",
            port,
            "--rate",
            str(opts.rate),
            "--duration",
            str(opts.duration),
            "--timeout",
            "10",
            timeout=opts.duration + 60,
        )
        if opts.low_rate > 0:  # a quiet gateway: every request wakes an idle loop
            low_s = max(opts.duration, 10.0)
            log(f"{target.name}: (b) open loop {opts.low_rate:.0f} req/s {low_s}s")
            res["openloop_low"] = run_loadgen(
                "openloop", port, "--rate", str(opts.low_rate), "--duration", str(low_s),
                "--timeout", "10", timeout=low_s + 60,
            )

        log(f"{target.name}: (c) streams (mock: {STREAM_CHUNKS} chunks x 50 ms)")
        ctx.restart_mock(STREAM_MOCK)
        if isinstance(target, Direct):  # the target is a mock itself: same stream profile
            proc.stop()
            proc = ctx.start_mock(STREAM_MOCK, port)
        wait_ready(port, None, 30.0, poll=0.05)
        res["ttfb"] = run_loadgen("ttfb", port, "-n", str(opts.ttfb_n), timeout=120)
        with PssSampler(proc.pid) as sampler:
            res["streams"] = run_loadgen(
                "streams",
                port,
                "-n",
                str(opts.streams),
                "--chunks",
                str(STREAM_CHUNKS),
                "--timeout",
                "60",
                timeout=120,
            )
        res["pss_streams_kb"] = sampler.max_kb
    finally:
        proc.stop()
        ctx.restart_mock(FAST_MOCK)
    return res


def paired_features(ctx: Context, opts: argparse.Namespace) -> dict[str, Any]:
    """(a2) helix and helix-features running side by side (both pinned to the proxy CPU; the
    idle one costs nothing), measured in alternating runs: run i of one right after run i of
    the other, so both see the same machine.  Measured one target after the other, minutes
    apart, this VM's drift alone moved their ratio by 25 points (bench/RESULTS.md)."""
    plain, feat = Helix(ctx), HelixFeatures(ctx)
    ports = (free_port(), free_port())
    procs = (plain.start(ports[0]), feat.start(ports[1]))
    out: dict[str, Any] = {}
    try:
        for port, proc, t in zip(ports, procs, (plain, feat), strict=True):
            wait_ready(port, proc, t.ready_timeout, poll=0.05)
        for conns in opts.conns:
            log(f"(a2) helix / helix-features alternating c={conns} {opts.duration}s "
                f"x{opts.repeat}")
            for port in ports:
                run_wrk(port, min(2.0, opts.duration), conns)  # warm-up (and pool fill)
            runs: tuple[list, list] = ([], [])
            for _ in range(opts.repeat):
                for i in (0, 1):
                    runs[i].append(measure(procs[i], ports[i], opts.duration, conns,
                                           ctx.mock_port))
            out[conns] = {
                "helix": median_run(runs[0]),
                "helix-features": median_run(runs[1]),
                "ratios": [b["cpu_us_per_req"] / a["cpu_us_per_req"]
                           for a, b in zip(runs[0], runs[1], strict=True)],
            }
    finally:
        for proc in procs:
            proc.stop()
    return out


LATENCY_TARGETS = ("direct", "nginx", "helix")


def paired_latency(ctx: Context, opts: argparse.Namespace) -> dict[str, Any]:
    """(b2) The added-latency rows of (b) and (c) measured in rounds: direct, nginx and helix
    (and floor, when chosen) running at once (each as in (b)/(c); the idle ones cost nothing),
    and in each round each of them measured once, in an order rotated every round.  A
    target's added latency is taken against direct's in the same round.  Measured one target
    after the other, minutes apart, the VM's drift moved these rows by more than issue 15's
    0.1 ms margin between runs (bench/RESULTS.md, session 18)."""
    names = [n for n in ("direct", "nginx", "floor", "helix")
             if n in LATENCY_TARGETS or n in opts.targets]
    targets = [TARGET_CLASSES[n](ctx) for n in names]
    rounds = max(3, opts.repeat)
    ports = [free_port() for _ in targets]
    procs = [t.start(p) for t, p in zip(targets, ports, strict=True)]
    out: dict[str, Any] = {"rounds": rounds, "targets": names}

    def each_round(mode: str, *args: str, timeout: float) -> dict[str, list[float | None]]:
        per: dict[str, list[float | None]] = {n: [] for n in names}
        key = "median_ms" if mode == "ttfb" else "p50_ms"
        for r in range(rounds):
            k = r % len(names)
            for i in [*range(k, len(names)), *range(k)]:
                res = run_loadgen(mode, ports[i], *args, timeout=timeout)
                ok = not res.get("errors") and res.get("ok", 1) == res.get("scheduled", 1)
                per[names[i]].append(res.get(key) if ok else None)
        return per

    try:
        for port, proc, t in zip(ports, procs, targets, strict=True):
            wait_ready(port, proc, t.ready_timeout, poll=0.05)
            for _ in range(20):
                chat_ok(port)
        rates = [(opts.rate, "openloop", opts.duration)]
        if opts.low_rate > 0:
            rates.append((opts.low_rate, "openloop_low", max(opts.duration, 10.0)))
        for rate, key, secs in rates:
            log(f"(b2) open loop {rate:.0f} req/s {secs}s, {rounds} rounds of "
                f"{', '.join(names)}")
            out[key] = each_round("openloop", "--rate", str(rate), "--duration", str(secs),
                                  "--timeout", "10", timeout=secs + 60)
        # TTFB as (c) measures it: the stream mock upstream; direct a stream mock itself.
        ctx.restart_mock(STREAM_MOCK)
        procs[0].stop()
        procs[0] = ctx.start_mock(STREAM_MOCK, ports[0])
        n = max(10, opts.ttfb_n // rounds)
        log(f"(b2) stream TTFB, {rounds} rounds of {n} streams each")
        out["ttfb"] = each_round("ttfb", "-n", str(n), timeout=120)
    finally:
        for proc in procs:
            proc.stop()
        ctx.restart_mock(FAST_MOCK)
    return out


def soak(target: Target, opts: argparse.Namespace) -> dict[str, Any]:
    """Memory over a long open-loop run: idle, then PSS after each segment of load.

    Helix runs with 2 workers here (the issue's memory target is master + 2
    workers); growth is the last segment's PSS minus the first's.
    """
    port = free_port()
    proc = target.start(port)
    res: dict[str, Any] = {"workers": getattr(target, "workers", 1), "segments": []}
    try:
        wait_ready(port, proc, target.ready_timeout, poll=0.05)
        for _ in range(20):
            chat_ok(port)
        time.sleep(1.0)
        res["pss_idle_kb"] = pss_kb(proc.pid)
        seg = min(30.0, opts.soak)
        n = max(1, int(opts.soak // seg))
        with PssSampler(proc.pid) as sampler:
            for i in range(n):
                log(f"{target.name}: (f) soak {i + 1}/{n}: {seg:.0f} s at {opts.rate:.0f}/s")
                r = run_loadgen(
                    "openloop", port, "--rate", str(opts.rate), "--duration", str(seg),
                    "--timeout", "10", timeout=seg + 60,
                )
                res["segments"].append({"pss_kb": pss_kb(proc.pid), "ok": r.get("ok"),
                                        "scheduled": r.get("scheduled"),
                                        "p99_ms": r.get("p99_ms")})
        res["pss_max_kb"] = sampler.max_kb
        first, last = res["segments"][0]["pss_kb"], res["segments"][-1]["pss_kb"]
        res["growth_kb"] = last - first
    finally:
        proc.stop()
    return res


def cold_start(target: Target, runs: int) -> dict[str, Any]:
    vals = []
    errors = []
    for _ in range(runs):
        port = free_port()
        proc = target.start(port)
        try:
            vals.append(wait_ready(port, proc, target.ready_timeout, poll=0.005))
        except RuntimeError as exc:
            errors.append(str(exc))
        finally:
            proc.stop()
        time.sleep(0.2)
    return {
        "runs": vals,
        "median_s": statistics.median(vals) if vals else math.nan,
        "errors": errors,
    }


# -- report ----------------------------------------------------------------------------------


def sh(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def machine_info() -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": sh(["nproc"]),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nginx": sh(["nginx", "-v"]),
        "wrk": sh(["wrk", "--version"]).split(" [")[0],
        # The tree under test runs its Cython accelerators only if they were built in place
        # (``pip install -e .``); a bare checkout runs the pure-Python twins, a few µs/request
        # slower, so every result says which it measured.
        "helix_fast": helix_fast(),
        "helix_python": interpreter(Helix.python or helix_python()),
    }


def helix_python() -> str:
    """The interpreter the `helix` script on PATH runs (its shebang), else this one."""
    exe = shutil.which("helix")
    if exe:
        with contextlib.suppress(OSError), open(exe, "rb") as f:
            first = f.readline()
            if first.startswith(b"#!"):
                return first[2:].decode(errors="replace").strip().split()[0]
    return sys.executable


def interpreter(python: str) -> str:
    """``python``'s path, version and build: the proxy's own CPU per request depends on it (a
    profile-guided, link-time-optimised, statically linked CPython runs Helix faster than a
    plain ``-O3`` shared-library build). PGO/LTO are read from the configure arguments the
    build recorded; distribution builds (Debian's) record none, so the path says more."""
    code = ("import sys, sysconfig as s; a = s.get_config_var('CONFIG_ARGS') or ''; "
            "f = [n for n, k in (('PGO', '--enable-optimizations'), ('LTO', '--with-lto')) "
            "if k in a]; m = open('/proc/self/maps').read(); "
            "f.append('libpython shared' if 'libpython' in m else 'libpython static'); "
            "print(sys.version.split()[0] + ', ' + ', '.join(f))")
    try:
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
        out = r.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        out = "?"
    return f"{python} ({out})"


def helix_fast() -> str:
    code = "import helix._fast as f; print(f.describe())"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=30)
        out = r.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"
    if not out.startswith("compiled"):
        log(f"helix accelerators: {out} -- build them with `pip install -e .` for real numbers")
    return out


def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if math.isinf(v):
            return "> timeout"
        return f"{v:,.{nd}f}"
    return str(v)


def ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return "—"
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return "—"
    return f"{a / b:.2f}×"


def delta(a: Any, b: Any, nd: int = 2) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return "—"
    if math.isnan(a) or math.isnan(b):
        return "—"
    if math.isinf(a):
        return "timeout"
    return f"{a - b:+,.{nd}f}"


def get(results: dict[str, Any], name: str, *keys: str) -> Any:
    cur: Any = results.get(name)
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def errs(d: Any) -> str:
    if not d:
        return "0"
    if isinstance(d, dict):
        return ", ".join(f"{k}: {v}" for k, v in d.items())
    return str(d)


def write_report(
    path: Path,
    opts: argparse.Namespace,
    info: dict[str, str],
    results: dict[str, Any],
    notes: dict[str, str],
    argv: list[str],
) -> None:
    names = [n for n in opts.targets if n in results]
    L: list[str] = []
    add = L.append
    add("# Helix benchmark results\n")
    add("Generated by `bench/run.py`; see `bench/README.md` for what each scenario measures.\n")
    add(f"- Command: `{' '.join(['python', *argv])}`")
    add(f"- Machine: {info['nproc']} CPUs, {info['cpu']}, kernel {info['kernel']}")
    add(f"- Python {info['python']}; {info['nginx']}; {info['wrk']}")
    add(f"- Helix accelerators (helix/_fast): {info.get('helix_fast', '?')}")
    add(f"- Helix's interpreter: {info.get('helix_python', '?')}")
    if "litellm_version" in info:
        add(f"- LiteLLM {info['litellm_version']}")
    add(f"- Date: {info['date']}")
    add(
        f"- Pinning: proxy under test on CPU {PROXY_CPU}; mock, wrk and load generator on "
        f'CPU {LOAD_CPU}. For `direct` the "proxy" columns describe the mock itself.'
    )
    add(
        f"- Duration per timed scenario: {opts.duration:g} s" + (" (--quick)" if opts.quick else "")
    )
    for name, note in notes.items():
        add(f"- **{name}**: {note}")
    add("")

    add("## (a) Non-stream saturation at several concurrencies (wrk, 1 thread, keep-alive)\n")
    add(
        "Per connection count: req/s, proxy CPU µs per request (and its ratio to nginx's at the "
        "same concurrency), p99, and the upstream connections the proxy opened during the "
        "timed run, counted by the mock, and in parentheses the churn: connections closed and "
        "replaced while the load ran (from 1 s into the run to 0.5 s before its end). A run "
        "begins by replacing the connections dropped when the previous wrk run hung up on "
        "requests in flight (a proxy cannot reuse a connection whose response it never read); "
        "those are in the first figure, not the churn. "
        f"Each row is the median (by CPU/request) of {opts.repeat} run(s).\n"
    )
    add("| target | conns | req/s | vs nginx | proxy CPU µs/req | CPU vs nginx | "
        "CPU vs own c=32 | p99 ms | upstream connects (churn) | errors |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        conc = get(results, n, "concurrency") or {}
        base = (conc.get(32) or conc.get("32") or {}).get("cpu_us_per_req")
        for c, s in conc.items():
            ng = (get(results, "nginx", "concurrency") or {}).get(c) or {}
            add(f"| {n} | {c} | {fmt(s.get('rps'), 0)} | {ratio(s.get('rps'), ng.get('rps'))} "
                f"| {fmt(s.get('cpu_us_per_req'), 1)} "
                f"| {ratio(s.get('cpu_us_per_req'), ng.get('cpu_us_per_req'))} "
                f"| {ratio(s.get('cpu_us_per_req'), base)} "
                f"| {fmt(s.get('p99_us', math.nan) / 1000, 2)} "
                f"| {fmt(s.get('upstream_connects'), 0)} "
                f"({fmt(s.get('upstream_churn'), 0)}) | {fmt(s.get('errors'))} |")
    add("")
    apis = {n: get(results, n, "apis") for n in names if get(results, n, "apis")}
    if apis:
        add("## (h) Every client API through Helix (wrk c=32, non-stream)\n")
        add("Each client API native (the provider speaks it: body relayed as sent) and "
            "translated (through the chat hub), against the same mock. CPU µs/req is the "
            "proxy's; \"vs chat\" compares with chat to the same provider type.\n")
        add("| target | client → provider | req/s | proxy CPU µs/req | vs chat | p99 ms | "
            "errors |")
        add("|---|---|---:|---:|---:|---:|---:|")
        for n, table in apis.items():
            chat_native = (table.get(APIS[0][0]) or {}).get("cpu_us_per_req")
            chat_tr = (table.get(APIS[1][0]) or {}).get("cpu_us_per_req")
            for label, s in table.items():
                ref = chat_native if "native" in label else chat_tr
                add(f"| {n} | {label} | {fmt(s.get('rps'), 0)} "
                    f"| {fmt(s.get('cpu_us_per_req'), 1)} "
                    f"| {ratio(s.get('cpu_us_per_req'), ref)} "
                    f"| {fmt(s.get('p99_us', math.nan) / 1000, 2)} | {fmt(s.get('errors'))} |")
        add("")
    paired = results.get("paired")
    if paired:
        add("## (a2) Feature cost: helix and helix-features in alternating runs\n")
        add(
            "Both running at once (pinned to the proxy CPU; the idle one costs nothing); each "
            "of the runs of one is followed by the same run of the other, so both see the same "
            "machine. CPU µs per request: medians; the ratio column is the median of the "
            "per-pair ratios (issue 15 target 6: ≤ 1.25×).\n"
        )
        if "error" in paired:
            add(f"(a2) failed: {paired['error']}\n")
        else:
            add("| conns | helix µs/req | helix-features µs/req | features ÷ plain (median of "
                "pairs) | pair ratios |")
            add("|---:|---:|---:|---:|---|")
            for conns, row in paired.items():
                rs = sorted(row["ratios"])
                add(f"| {conns} | {fmt(row['helix'].get('cpu_us_per_req'), 1)} "
                    f"| {fmt(row['helix-features'].get('cpu_us_per_req'), 1)} "
                    f"| {rs[len(rs) // 2]:.2f}× | {', '.join(f'{r:.2f}' for r in row['ratios'])} |")
            add("")
    add("## (a') Non-stream saturation at c=32 (wrk, 1 thread, keep-alive)\n")
    add(
        "CPU 1 (wrk + mock) can be the bottleneck: when the proxy's CPU util is well below "
        "1.0, req/s understates the proxy's capacity. CPU µs/req (utime+stime of the proxy's "
        "process tree over the run / requests) does not depend on that; the 1-core capacity "
        "estimate is 1e6 / CPU µs/req.\n"
    )
    add(
        "| target | req/s | vs nginx | vs direct | p50 ms | p99 ms | errors | "
        "proxy CPU µs/req | proxy CPU util | 1-core capacity est. req/s |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        s = get(results, n, "saturation") or {}
        rps = s.get("rps")
        p50 = s.get("p50_us", math.nan) / 1000
        p99 = s.get("p99_us", math.nan) / 1000
        cells = [
            n,
            fmt(rps, 0),
            ratio(rps, get(results, "nginx", "saturation", "rps")),
            ratio(rps, get(results, "direct", "saturation", "rps")),
            fmt(p50, 2),
            fmt(p99, 2),
            fmt(s.get("errors")),
            fmt(s.get("cpu_us_per_req"), 1),
            fmt(s.get("cpu_util"), 2),
            fmt(1e6 / s["cpu_us_per_req"] if s.get("cpu_us_per_req") else None, 0),
        ]
        add("| " + " | ".join(cells) + " |")
    add("")

    rates = [(opts.rate, "openloop")]
    if opts.low_rate > 0:
        rates.append((opts.low_rate, "openloop_low"))
    add(f"## (b) Open-loop latency at fixed rates ({', '.join(f'{r:g}' for r, _ in rates)} "
        "req/s)\n")
    add(
        "Latency measured from each request's *scheduled* send time (no coordinated omission); "
        'failed or unfinished requests count as infinite. "added" = target minus direct.\n'
    )
    add(
        "| target | req/s | ok / scheduled | p50 ms | p90 ms | p99 ms | max ms | added p50 ms | "
        "added p99 ms | errors |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for rate, key in rates:
        for n in names:
            o = get(results, n, key) or {}
            add(
                f"| {n} | {rate:g} | {o.get('ok', '—')} / {o.get('scheduled', '—')} "
                f"| {fmt(o.get('p50_ms'), 2)} "
                f"| {fmt(o.get('p90_ms'), 2)} | {fmt(o.get('p99_ms'), 2)} "
                f"| {fmt(o.get('max_ms'), 2)} "
                f"| {delta(o.get('p50_ms'), get(results, 'direct', key, 'p50_ms'))} "
                f"| {delta(o.get('p99_ms'), get(results, 'direct', key, 'p99_ms'))} "
                f"| {errs(o.get('errors'))} |"
            )
    add("")

    b2 = results.get("paired_latency")
    if b2:
        add("## (b2) Added latency in alternating rounds\n")
        floor = "floor" in b2.get("targets", ())
        add(
            ("direct, nginx, helix and floor (bench/floor.py)" if floor
             else "direct, nginx and helix")
            + " running at once; in each round each is measured once (the order rotated every "
            "round), and its added latency is its p50 (TTFB: its median) minus direct's in the "
            "same round. Medians over the rounds; the last column lists helix − nginx per round "
            "(issue 15 target 3: ≤ +0.1 ms)."
            + (" floor − nginx is what uvloop and the interpreter alone add: the part of the "
               "margin no work of Helix's own can win back." if floor else "") + "\n"
        )
        if "error" in b2:
            add(f"(b2) failed: {b2['error']}\n")
        else:
            shown = ("nginx", "floor", "helix") if floor else ("nginx", "helix")
            add("| row | rounds | " + " | ".join(f"{n} added ms" for n in shown)
                + " | helix − nginx ms (median) | "
                + ("floor − nginx ms (median) | " if floor else "")
                + "helix − nginx per round |")
            add("|---|" + "---:|" * (len(shown) + 2 + floor) + "---|")

            def med(vals: list[float | None]) -> float | None:
                v = [x for x in vals if x is not None]
                return statistics.median(v) if v else None

            def minus(a: list[float | None], b: list[float | None]) -> list[float | None]:
                return [x - y if x is not None and y is not None else None
                        for x, y in zip(a, b, strict=True)]

            rows = [(f"p50 at {r:g} req/s", k) for r, k in rates] + [("stream TTFB", "ttfb")]
            for label, key in rows:
                per = b2.get(key)
                if not per:
                    continue
                added = {n: minus(per[n], per["direct"]) for n in shown}
                diff = minus(added["helix"], added["nginx"])
                cells = [label, str(b2.get("rounds")),
                         *(fmt(med(added[n]), 2) for n in shown), delta(med(diff), 0.0)]
                if floor:
                    cells.append(delta(med(minus(added["floor"], added["nginx"])), 0.0))
                cells.append(", ".join("—" if d is None else f"{d:+.2f}" for d in diff))
                add("| " + " | ".join(cells) + " |")
            add("")

    add("## (c) Streaming\n")
    add(
        f"Mock streams {STREAM_CHUNKS} content chunks 50 ms apart (~1 s per stream). TTFB: c=1, "
        "fresh connection, request sent → first body byte, median over "
        f"{opts.ttfb_n} requests. Concurrency: {opts.streams} streams opened at once on one "
        "worker; a stream is complete when its content, chunk count, finish_reason and [DONE] "
        "are all exact.\n"
    )
    add(
        "| target | TTFB median ms | TTFB p90 ms | added TTFB ms | streams complete | stalled | "
        "errors | duration s | max chunk gap ms |"
    )
    add("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for n in names:
        t = get(results, n, "ttfb") or {}
        s = get(results, n, "streams") or {}
        add(
            f"| {n} | {fmt(t.get('median_ms'), 2)} | {fmt(t.get('p90_ms'), 2)} "
            f"| {delta(t.get('median_ms'), get(results, 'direct', 'ttfb', 'median_ms'))} "
            f"| {s.get('complete', '—')} / {s.get('n', '—')} | {s.get('stalled', '—')} "
            f"| {errs(s.get('errors'))} | {fmt(s.get('duration_s'), 2)} "
            f"| {fmt(s.get('max_chunk_gap_ms'), 0)} |"
        )
    add("")

    add("## (d) Memory (PSS summed over the proxy's process tree)\n")
    add("| target | idle MiB | under saturation MiB | 1,000 streams MiB | idle vs nginx |")
    add("|---|---:|---:|---:|---:|")
    for n in names:
        r = results.get(n) or {}
        mib = {
            k: (r[k] / 1024 if isinstance(r.get(k), int) else None)
            for k in ("pss_idle_kb", "pss_load_kb", "pss_streams_kb")
        }
        nginx_idle = get(results, "nginx", "pss_idle_kb")
        add(
            f"| {n} | {fmt(mib['pss_idle_kb'])} | {fmt(mib['pss_load_kb'])} "
            f"| {fmt(mib['pss_streams_kb'])} | {ratio(r.get('pss_idle_kb'), nginx_idle)} |"
        )
    add("")

    add(f"## (e) Cold start (exec → first 200 on a chat request, median of {opts.cold_runs})\n")
    add("| target | median ms | runs ms | vs nginx |")
    add("|---|---:|---|---:|")
    for n in names:
        c = get(results, n, "cold") or {}
        runs = ", ".join(f"{v * 1000:.0f}" for v in c.get("runs", []))
        med = c.get("median_s")
        add(
            f"| {n} | {fmt(med * 1000 if isinstance(med, float) else None, 0)} | {runs} "
            f"| {ratio(med, get(results, 'nginx', 'cold', 'median_s'))} |"
        )
    add("")
    soaked = {n: r["soak"] for n, r in results.items() if isinstance(r, dict) and r.get("soak")}
    if soaked:
        add(f"## (f) Memory soak ({opts.soak:.0f} s open loop at {opts.rate:.0f} req/s)\n")
        add("PSS summed over master + workers, sampled after each 30 s segment; growth = last "
            "segment minus first.\n")
        add("| target | workers | idle MiB | max under load MiB | first seg MiB | last seg MiB "
            "| growth MiB | requests ok / scheduled |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|")
        for n, s in soaked.items():
            segs = s.get("segments") or [{}]
            ok = sum(x.get("ok") or 0 for x in segs)
            sched = sum(x.get("scheduled") or 0 for x in segs)
            add(
                f"| {n} | {s.get('workers')} | {fmt(s['pss_idle_kb'] / 1024)} "
                f"| {fmt(s['pss_max_kb'] / 1024)} | {fmt(segs[0]['pss_kb'] / 1024)} "
                f"| {fmt(segs[-1]['pss_kb'] / 1024)} | {fmt(s['growth_kb'] / 1024, 2)} "
                f"| {ok} / {sched} |"
            )
        add("")
    failed = {n: r["error"] for n, r in results.items() if isinstance(r, dict) and r.get("error")}
    if failed:
        add("## Failures\n")
        for n, e in failed.items():
            add(f"- {n}: {e}")
        add("")
    path.write_text("\n".join(L).rstrip() + "\n" + _kept_sections(path, L))


def _kept_sections(path: Path, generated: list[str]) -> str:
    """The sections of the existing report that this run does not write (the feature costs,
    the hedging / affinity / start-up benches ...): kept, after this run's own."""
    if not path.exists():
        return ""
    ours = {line.split(")")[0] for line in generated if line.startswith("## (")}
    kept = []
    for section in path.read_text().split("\n## ")[1:]:
        heading = "## " + section.splitlines()[0]
        if heading.startswith("## (") and heading.split(")")[0] in ours:
            continue
        kept.append("\n## " + section.rstrip() + "\n")
    return "".join(kept)


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--targets", default=",".join(ALL_TARGETS))
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--quick", action="store_true", help="short runs for a smoke check")
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--no-paired", dest="paired", action="store_false",
                   help="skip (a2), helix vs helix-features in alternating runs, and (b2), "
                        "direct / nginx / helix latency in alternating rounds (each runs when "
                        "its targets are all chosen)")
    p.add_argument("--low-rate", type=float, default=50.0,
                   help="a second, quiet open-loop rate for (b) (at least 10 s); 0 = skip")
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--output", default=str(BENCH / "RESULTS.md"))
    p.add_argument("--conns", default="32,128,512",
                   help="wrk connection counts for the saturation scenario (a)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per saturation measurement; the median (by CPU/request) is kept")
    p.add_argument("--apis", action="store_true",
                   help="(h): every client API, native and translated, through helix")
    p.add_argument(
        "--soak", type=float, default=0.0,
        help="seconds of open-loop load for the memory soak (f), helix with 2 workers; 0 = skip",
    )
    p.add_argument(
        "--helix-python", default=None,
        help="interpreter for the helix targets (`PY -m helix` from this tree); default: the "
             "`helix` script on PATH",
    )
    opts = p.parse_args(argv)
    Helix.python = opts.helix_python
    opts.targets = [t.strip() for t in opts.targets.split(",") if t.strip()]
    opts.conns = [int(c) for c in opts.conns.split(",") if c.strip()]
    bad = [t for t in opts.targets if t not in TARGET_CLASSES]
    if bad:
        p.error(f"unknown targets: {bad}")
    if opts.quick:
        opts.duration = min(opts.duration, 3.0)
        opts.streams = min(opts.streams, 200)
    opts.ttfb_n = 10 if opts.quick else 30
    opts.cold_runs = 3 if opts.quick else 5
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            p.error(
                f"{tool} is required (apt-get install {'wrk' if tool == 'wrk' else 'util-linux'})"
            )
    if (os.cpu_count() or 1) < 2:
        p.error("needs at least 2 CPUs (proxy on CPU 0, load on CPU 1)")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    info = machine_info()
    os.sched_setaffinity(0, {int(LOAD_CPU)})

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    results: dict[str, Any] = {}
    notes: dict[str, str] = {}
    tmp = Path(tempfile.mkdtemp(prefix="helix-bench-"))
    ctx = Context(tmp, free_port())
    t_begin = time.monotonic()
    try:
        ctx.restart_mock(FAST_MOCK)
        for name in opts.targets:
            target = TARGET_CLASSES[name](ctx)
            if not target.available():
                notes[name] = f"skipped: {target.note}"
                log(notes[name])
                continue
            if isinstance(target, LiteLLM):
                info["litellm_version"] = target.version()
            log(f"== {name}")
            try:
                res = scenario_target(target, opts)
                log(f"{name}: (e) cold start x{opts.cold_runs}")
                res["cold"] = cold_start(target, opts.cold_runs)
                if opts.soak > 0 and type(target) is Helix:
                    target.workers = 2
                    res["soak"] = soak(target, opts)
                    target.workers = 1
            except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
                log(f"{name} failed: {exc}")
                res = {"error": str(exc)[:500]}
                if ctx.mock is None or not ctx.mock.alive():
                    ctx.restart_mock(FAST_MOCK)
            results[name] = res
            _write_json(results, info)
        paired = (("paired", "(a2)", {"helix", "helix-features"}, paired_features),
                  ("paired_latency", "(b2)", set(LATENCY_TARGETS), paired_latency))
        for key, label, needs, scenario in paired:
            if not opts.paired or not needs <= set(opts.targets):
                continue
            try:
                results[key] = scenario(ctx, opts)
            except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
                log(f"{label} failed: {exc}")
                results[key] = {"error": str(exc)[:500]}
            _write_json(results, info)
    except KeyboardInterrupt:
        log("interrupted; stopping processes")
        notes["interrupted"] = "the run was interrupted; tables may be incomplete"
    finally:
        Proc.stop_all()
        ctx.mock = None
        shutil.rmtree(tmp, ignore_errors=True)
    info["elapsed"] = f"{time.monotonic() - t_begin:.0f} s"
    write_report(Path(opts.output), opts, info, results, notes, ["bench/run.py", *argv])
    _write_json(results, info)
    log(f"wrote {opts.output} in {info['elapsed']}")
    return 0


def _write_json(results: dict[str, Any], info: dict[str, str]) -> None:
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"machine": info, "results": results}, indent=2, default=str)
    )


if __name__ == "__main__":
    raise SystemExit(main())
