"""A real 3-master Redis Cluster (Debian's redis-server + redis-cli) on free local ports.

Every wait is bounded; every server is killed on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time

from tests.helpers import free_port


class RedisCluster:
    def __init__(self, masters: int = 3) -> None:
        self.ports = [free_port() for _ in range(masters)]
        # Each node's cluster bus on its own free port (by default port + 10000, which
        # may be taken or beyond 65535).
        self.bus = {p: free_port() for p in self.ports}
        self.procs: dict[int, subprocess.Popen] = {}
        self.dir = tempfile.mkdtemp(prefix="helix-redis-cluster-")

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    def _cli(self, *args: str, timeout: float = 20) -> str:
        out = subprocess.run(["redis-cli", *args], capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)}: {out.stderr or out.stdout}")
        return out.stdout

    def start(self, timeout: float = 30) -> RedisCluster:
        exe = shutil.which("redis-server")
        if exe is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server and redis-cli are not installed")
        for port in self.ports:
            d = os.path.join(self.dir, str(port))
            os.makedirs(d)
            self.procs[port] = subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", d, "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
                 "--cluster-port", str(self.bus[port]),
                 "--cluster-require-full-coverage", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while True:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    if "PONG" in self._cli("-p", str(port), "ping", timeout=2):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {port} did not start")
                time.sleep(0.05)
        self._cli("--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                  "--cluster-replicas", "0", "--cluster-yes")
        while True:
            states = [self._cli("-p", str(p), "cluster", "info", timeout=2) for p in self.ports]
            if all("cluster_state:ok" in s for s in states):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ok in time: {states}")
            time.sleep(0.1)

    def port_of_key(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot."""
        slot = int(self._cli("-p", str(self.ports[0]), "cluster", "keyslot", key).strip())
        for line in self._cli("-p", str(self.ports[0]), "cluster", "nodes").splitlines():
            parts = line.split()
            addr, flags, ranges = parts[1], parts[2], parts[8:]
            if "master" not in flags:
                continue
            for r in ranges:
                lo, _, hi = r.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return int(addr.split("@")[0].rsplit(":", 1)[1])
        raise RuntimeError(f"no master owns slot {slot}")

    def keys(self) -> dict[int, list[str]]:
        return {p: self._cli("-p", str(p), "--scan").split() for p in self.ports
                if p in self.procs}

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
