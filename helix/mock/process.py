"""Run the mock provider as a subprocess (for tests): ``with MockProcess() as mock: mock.url``."""

from __future__ import annotations

import contextlib
import http.client
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Any

import orjson


class MockProcess:
    """Start ``python -m helix.mock --port 0 ...`` and read the port it prints.

    Every wait has a timeout and the process (group) is always killed on exit.
    """

    def __init__(self, *args: str, host: str = "127.0.0.1", start_timeout: float = 15.0) -> None:
        self.args = list(args)
        self.host = host
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> MockProcess:
        cmd = [sys.executable, "-m", "helix.mock", "--host", self.host, "--port", "0", *self.args]
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
        )
        assert self.proc.stdout is not None
        line = b""
        deadline = time.monotonic() + self.start_timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop()
                    raise RuntimeError("mock did not report its port in time")
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    err = self.proc.stderr.read() if self.proc.stderr else b""
                    self.stop()
                    raise RuntimeError(f"mock exited early: {err.decode(errors='replace')}")
                line += ch
        self.port = int(line.decode().strip().rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        self.proc = None

    def __enter__(self) -> MockProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, method: str, path: str) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{method} {path}: {resp.status} {data!r}")
            return orjson.loads(data)
        finally:
            conn.close()

    def requests(self) -> list[dict[str, Any]]:
        """Requests the mock has recorded (method, path, query, headers, body)."""
        return self._call("GET", "/_mock/requests")

    def clear(self) -> int:
        return self._call("DELETE", "/_mock/requests")["cleared"]
