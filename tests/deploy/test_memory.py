"""Helix's memory (PSS of master + workers) idle and under load, against the pod limit.

The Kubernetes Deployment (deploy/kubernetes/deployment.yaml) declares a 128Mi memory limit
and runs HELIX_WORKERS=2; this measures that configuration with the same config sections
(metrics on) in front of the bundled mock, under a bounded load on 127.0.0.1.  PSS
(proportional set size) splits the pages master and workers share after fork, so the sum is
what the processes really occupy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import yaml

from helix.mock import MockProcess
from tests.deploy.conftest import repo_path
from tests.helpers import ROOT, HelixProcess, mock_config

MI = 1024 * 1024


def pss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no Pss in /proc/{pid}/smaps_rollup")


def tree_pss(helix: HelixProcess) -> tuple[int, int]:
    """(total PSS of master + workers, number of processes)."""
    pids = [helix.proc.pid, *helix.worker_pids()]
    total = 0
    for pid in pids:
        try:
            total += pss_bytes(pid)
        except FileNotFoundError:  # a worker replaced between listing and reading
            continue
    return total, len(pids)


def manifest_limit_and_workers() -> tuple[int, int]:
    with open(repo_path("deploy", "kubernetes", "deployment.yaml")) as fh:
        doc = yaml.safe_load(fh)
    containers = doc["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "helix"]
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    return int(limit[:-2]) * MI, int(env["HELIX_WORKERS"])


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"),
                    reason="needs Linux /proc/PID/smaps_rollup")
def test_two_workers_fit_the_pod_memory_limit():
    limit, workers = manifest_limit_and_workers()
    assert workers == 2
    with MockProcess("--no-record", "--chunks", "16", "--chunk-interval-ms", "2") as mock:
        cfg = mock_config(mock.url, extra="observability:\n  metrics: {enabled: true}\n")
        with HelixProcess(cfg, workers=workers) as helix:
            time.sleep(1.0)
            idle, nprocs = tree_pss(helix)
            assert nprocs == workers + 1, helix.log()
            peak = [idle]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], tree_pss(helix)[0])
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            url = f"http://127.0.0.1:{helix.port}"
            env = dict(os.environ, PYTHONPATH=ROOT)
            base = [sys.executable, "-m", "helix.devtools", "--url", url, "--run-forever",
                    "--duration", "5", "--concurrency", "200"]
            loads = [
                subprocess.Popen([*base, "--rate", "600"], stdout=subprocess.PIPE, text=True,
                                 env=env),
                subprocess.Popen([*base, "--rate", "200", "--stream"], stdout=subprocess.PIPE,
                                 text=True, env=env),
            ]
            outs = [p.communicate(timeout=30)[0] for p in loads]
            stop.set()
            sampler.join(timeout=5)
            after, _ = tree_pss(helix)
    report = (f"PSS master+{workers} workers: idle {idle / MI:.1f} MiB, peak under load "
              f"{peak[0] / MI:.1f} MiB, after {after / MI:.1f} MiB; limit {limit / MI:.0f} MiB")
    print(report)
    for p, out in zip(loads, outs, strict=True):
        assert p.returncode == 0, out
        assert " 0 errors" in out, out
    # Headroom for the page cache and kernel memory the cgroup also charges: 80% of the limit.
    assert peak[0] < 0.8 * limit, report
