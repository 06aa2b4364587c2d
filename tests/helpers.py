"""Process helpers shared by the integration tests: free ports, a running helix."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def metrics_when(port: int, ready, timeout: float = 10.0) -> bytes:
    """``/metrics`` once ``ready(text)`` holds (bounded).  A worker records a request's
    metrics just after the answer's last byte, and with two workers the scrape can reach
    the other one first: asserting on the first scrape races that."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_get(port, "/metrics")
        if status == 200 and ready(body.decode()):
            return body
        if time.monotonic() > deadline:
            return body  # the caller's assertion says what is missing
        time.sleep(0.05)


class HelixProcess:
    """``helix --config <tmp> --port <free>`` in its own process group.

    Output is drained by a thread into ``self.output`` (so a chatty process can
    never block on a full pipe); every wait has a timeout; stop() always kills.
    """

    def __init__(
        self,
        config_text: str,
        *,
        workers: int = 2,
        env: dict | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        fd, self.config_path = tempfile.mkstemp(suffix=".yaml", prefix="helix-test-")
        with os.fdopen(fd, "w") as fh:
            fh.write(config_text)
        self.workers = workers
        self.env = env
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 20.0) -> HelixProcess:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for var in ("OPENAI_API_KEY", "HELIX_CONFIG", "HELIX_PORT", "HELIX_HOST"):
            if self.env is None:
                env.pop(var, None)
        cmd = [
            sys.executable,
            "-m",
            "helix",
            "--config",
            self.config_path,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            text=True,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self.wait_healthy(timeout)
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"helix exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                status, _ = http_get(self.port, "/health", timeout=1.0)
                if status == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"helix not healthy after {timeout}s:\n{self.log()}")

    def wait_log(self, text: str, timeout: float = 5.0) -> bool:
        """Whether ``text`` appears in the output within ``timeout`` (output is drained by a
        thread: a line a worker just wrote may not be here yet)."""
        deadline = time.monotonic() + timeout
        while True:
            if text in self.log():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def log(self) -> str:
        return "".join(self.output[-200:])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def worker_pids(self) -> list[int]:
        """Live children of the master (read from /proc, no procps needed)."""
        assert self.proc is not None
        master = self.proc.pid
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may contain spaces, so split after ")".
            rest = stat.rsplit(")", 1)[1].split()
            if rest[0] != "Z" and int(rest[1]) == master:
                pids.append(int(entry))
        return sorted(pids)

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
        if self._reader is not None:
            self._reader.join(timeout=5)
        with contextlib.suppress(OSError):
            os.unlink(self.config_path)
        self.proc = None

    def __enter__(self) -> HelixProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mock_config(
    mock_url: str,
    *,
    name: str = "mock",
    key: str = "sk-upstream-secret-1234",
    models: str = "[gpt-4o-mini, text-embedding-3-small, {name: alias-fast, id: real-model-id}]",
    extra: str = "",
) -> str:
    return f"""
providers:
  - name: {name}
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: {key}
    models: {models}
{extra}
"""
