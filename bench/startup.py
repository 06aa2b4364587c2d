"""Cold start and idle memory of Helix with 2 workers, default config vs every feature on.

    python bench/startup.py [--runs 5] [--tree DIR ...] [--python VENV/bin/python ...]

For each source tree (default: this checkout; pass several ``--tree`` to compare, e.g. the
main branch and a feature branch) and each config, it starts ``python -m helix`` with that
tree first on ``PYTHONPATH`` in front of the bundled mock, measures the time from exec to
the first 200 on a chat request (polled every 5 ms), then the PSS summed over master +
workers after 2 s idle.  Median of ``--runs`` fresh processes.  Prints a Markdown table.

``--python`` measures an *installed* Helix instead of a source tree: the interpreter of a
venv made with ``python -m venv V && V/bin/pip install .``, run from an empty directory.
That is how a deployment starts (the image's ``pip install .``): bytecode compiled at
install, no editable-install finder and none of the development interpreter's ``.pth``
hooks in site-packages -- each of which costs start-up time a deployment never pays, and a
source tree under ``PYTHONDONTWRITEBYTECODE=1`` recompiles every module on every start.
Every process started here is stopped (its session killed) in a ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configs(mock_url: str, collector: str) -> dict[str, str]:
    base = f"""
providers:
  - {{name: mock, type: openai_compatible, base_url: "{mock_url}/v1", api_key: sk-bench,
     models: [gpt-4o-mini]}}
"""
    full = base + f"""
observability:
  metrics: {{enabled: true}}
  tracing: {{enabled: true, endpoint: "{collector}"}}
  logging: {{access_log: false}}
rate_limits: {{global: {{requests_per_minute: 100000}}}}
caching: {{backend: memory}}
load_balancing: {{strategy: latency_based}}
resilience: {{retries: {{max_attempts: 2}}}}
"""
    return {"default": base, "all features": full}


def session_pids(sid: int) -> list[int]:
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if rest[0] != "Z" and int(rest[3]) == sid:
                out.append(int(e))
    return out


def pss_kb(sid: int) -> int:
    total = 0
    for pid in session_pids(sid):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


def chat_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("POST", "/v1/chat/completions", BODY, {"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def one(target: tuple[str, str, str | None], config_path: str) -> tuple[float, int]:
    python, cwd, tree = target
    port = free_port()
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if tree is not None:
        env["PYTHONPATH"] = tree
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [python, "-m", "helix", "--config", config_path, "--port", str(port),
         "--workers", "2"], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = t0 + 30
        while not chat_ok(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"helix from {tree or python} did not start")
            time.sleep(0.005)
        cold = time.monotonic() - t0
        # Both workers must be up (the first 200 may come from the first one ready).
        while len(session_pids(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)
        return cold, pss_kb(proc.pid)
    finally:
        stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tree", action="append", help="source tree(s) to compare")
    ap.add_argument("--python", action="append",
                    help="interpreter(s) of a venv with Helix installed (pip install .)")
    opts = ap.parse_args()
    empty = tempfile.mkdtemp(prefix="helix-startup-")
    targets = [(sys.executable, t, t) for t in (opts.tree or ([] if opts.python else [ROOT]))]
    targets += [(py, empty, None) for py in (opts.python or [])]
    sys.path.insert(0, ROOT)
    from helix.mock import MockProcess

    rows = []
    with MockProcess("--no-record") as mock, tempfile.TemporaryDirectory() as tmp:
        collector = f"http://127.0.0.1:{free_port()}"  # nothing listens: exports are dropped
        for name, text in configs(mock.url, collector).items():
            path = os.path.join(tmp, name.replace(" ", "_") + ".yaml")
            with open(path, "w") as f:
                f.write(text)
            for target in targets:
                colds, psss = [], []
                for _ in range(opts.runs):
                    c, p = one(target, path)
                    colds.append(c)
                    psss.append(p)
                label = target[2] or f"installed: {target[0]}"
                rows.append((name, label, statistics.median(colds) * 1000,
                             statistics.median(psss) / 1024))
    os.rmdir(empty)
    print("| config | tree | cold start (exec → first 200), ms "
          "| idle PSS, master + 2 workers, MiB |")
    print("|---|---|---|---|")
    for name, tree, cold, pss in rows:
        print(f"| {name} | `{tree}` | {cold:.0f} | {pss:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
