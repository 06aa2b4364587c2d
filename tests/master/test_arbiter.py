"""The master in a real subprocess, driven by signals, with stand-in workers."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from helix.master.arbiter import MIGRATE_REQ_PATH

HARNESS = pathlib.Path(__file__).with_name("arbiter_harness.py")
REPO = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def proc_children(ppid: int) -> dict[int, str]:
    """Live (non-zombie) children of ppid -> their process title."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) != ppid or fields[0] == "Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").strip().decode()
        except (OSError, IndexError, ValueError):
            continue
        out[int(entry)] = title
    return out


class Master:
    def __init__(self, tmp_path: pathlib.Path, server=None, arbiter=None, **config) -> None:
        self.tmp = tmp_path
        self.cfg_path = tmp_path / "helix.json"
        self.events_path = tmp_path / "events.jsonl"
        self.log_path = tmp_path / "master.log"
        self.port = free_port()
        self.data = {
            "server": {
                "host": "127.0.0.1",
                "port": self.port,
                "workers": 2,
                "graceful_timeout": 5.0,
                "heartbeat_timeout": 5.0,
                "backlog": 1024,
                **(server or {}),
            },
            "mode": "sleep",
            "events": str(self.events_path),
            # migrate_req off unless a test asks: it is a host-wide sysctl.
            "arbiter": {"tick": 0.1, "migrate_req": False, **(arbiter or {})},
            **config,
        }
        self.write()
        self.proc: subprocess.Popen | None = None
        self.seen: set[int] = set()

    def write(self, **changes) -> None:
        self.data.update(changes)
        self.cfg_path.write_text(json.dumps(self.data))

    def start(self) -> Master:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in cleanup()
        self.proc = subprocess.Popen(
            [sys.executable, str(HARNESS), str(self.cfg_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.tmp),
        )
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> dict[int, str]:
        kids = proc_children(self.pid)
        self.seen.update(kids)
        return kids

    def workers(self, gen: int | None = None) -> dict[int, str]:
        suffix = f"(gen {gen})" if gen is not None else ")"
        return {
            pid: t
            for pid, t in self.children().items()
            if t.startswith("helix: worker") and t.endswith(suffix)
        }

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; master rc={self.proc.poll()}\n{self.log()}"
        )

    def wait_workers(self, n: int, gen: int | None = None, timeout: float = 10.0):
        return self.wait(
            lambda: (w := self.workers(gen)) and len(w) == n and w, timeout, f"{n} workers"
        )

    def wait_ready(self, n: int, timeout: float = 10.0) -> None:
        self.wait(lambda: self.log().count(") ready") >= n, timeout, f"{n} ready workers")

    def kill(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"master did not exit\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, ev: str | None = None) -> list[dict]:
        if not self.events_path.exists():
            return []
        out = [json.loads(line) for line in self.events_path.read_text().splitlines()]
        return [e for e in out if ev is None or e["ev"] == ev]

    def cleanup(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.children()
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()


@pytest.fixture
def master(tmp_path):
    made: list[Master] = []

    def make(**kw) -> Master:
        m = Master(tmp_path, **kw)
        made.append(m)
        return m.start()

    yield make
    for m in made:
        m.cleanup()


@pytest.fixture
def migrate_sysctl():
    """Restore net.ipv4.tcp_migrate_req after a test (the master may turn it on)."""
    try:
        with open(MIGRATE_REQ_PATH) as f:
            before = f.read().strip()
    except OSError:
        yield None
        return
    yield before
    try:
        with open(MIGRATE_REQ_PATH, "w") as f:
            f.write(before)
    except OSError:
        pass


def read_sysctl() -> str | None:
    try:
        with open(MIGRATE_REQ_PATH) as f:
            return f.read().strip()
    except OSError:
        return None


# -- lifecycle ---------------------------------------------------------------


def test_spawns_workers_and_graceful_stop(master):
    m = master(server={"workers": 3}, drain=0.5)
    workers = m.wait_workers(3, gen=1)
    assert sorted(workers.values()) == [f"helix: worker {i} (gen 1)" for i in range(3)]
    with open(f"/proc/{m.pid}/cmdline", "rb") as f:
        assert f.read().startswith(f"helix: master [{m.cfg_path}]".encode())
    m.wait_ready(3)
    t0 = time.monotonic()
    m.kill(signal.SIGTERM)
    assert m.wait_exit() == 0
    assert time.monotonic() - t0 >= 0.5  # waited for the drain
    exits = m.events("exit")
    assert sorted(e["pid"] for e in exits) == sorted(workers)
    assert all(pid not in proc_children(m.pid) for pid in workers)
    assert "SIGTERM: graceful stop" in m.log()


def test_sigint_twice_is_a_fast_stop(master):
    m = master(drain=30.0, server={"graceful_timeout": 30.0})
    workers = m.wait_workers(2)
    m.wait_ready(2)
    m.kill(signal.SIGINT)
    m.wait(lambda: len(m.events("drain")) == 2, 5, "drain")
    t0 = time.monotonic()
    m.kill(signal.SIGINT)
    assert m.wait_exit(timeout=8) == 0
    assert time.monotonic() - t0 < 5
    assert m.events("exit") == []  # cut short, never finished draining
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}/stat") or pid not in proc_children(m.pid)


def test_kill_9_worker_is_respawned(master):
    m = master()
    workers = m.wait_workers(2)
    victim = min(workers)
    number = workers[victim]
    os.kill(victim, signal.SIGKILL)

    def respawned():
        now = m.workers()
        return victim not in now and len(now) == 2 and number in now.values() and now

    now = m.wait(respawned, 10, "respawn")
    assert set(now) - set(workers)
    assert "killed by SIGKILL - out of memory?" in m.log()
    m.kill(signal.SIGTERM)
    assert m.wait_exit() == 0


def test_boot_error_stops_master_quickly(master):
    m = master(mode="boot_error")
    t0 = time.monotonic()
    assert m.wait_exit(timeout=10) == 3
    assert time.monotonic() - t0 < 5
    log = m.log()
    assert "cannot start: config/app error" in log
    assert "workers cannot start; stopping the master" in log
    assert len(m.events("boot_error")) <= 4  # no respawn spinning


def test_crash_loop_stops_master(master):
    m = master(mode="crash", server={"workers": 1})
    assert m.wait_exit(timeout=15) == 1
    assert "crash loop" in m.log()
    assert 5 <= len(m.events("crash")) <= 6


def test_hung_worker_is_aborted_and_respawned(master):
    m = master(
        hang_after=0.3,
        server={"workers": 1, "heartbeat_timeout": 1.0},
        arbiter={"ABORT_GRACE": 1.0},
    )
    first = m.wait_workers(1)
    (pid,) = first
    m.wait(lambda: m.events("hang"), 5, "hang")
    m.wait(lambda: (w := m.workers()) and pid not in w and w, 10, "replacement")
    log = m.log()
    assert "missed its heartbeat" in log
    assert f"(pid {pid}, gen 1) killed by SIGABRT" in log
    m.kill(signal.SIGTERM)
    assert m.wait_exit() == 0


def test_port_in_use_fails_before_forking(master, tmp_path):
    squatter = socket.socket()
    try:
        m = Master(tmp_path)
        squatter.bind(("127.0.0.1", m.port))
        squatter.listen(1)
        m.start()
        try:
            assert m.wait_exit(timeout=10) == 1
            assert f"cannot bind 127.0.0.1:{m.port}: address already in use" in m.log()
            assert m.events() == []
        finally:
            m.cleanup()
    finally:
        squatter.close()


def test_ttin_ttou(master):
    m = master(server={"workers": 1})
    m.wait_workers(1)
    m.kill(signal.SIGTTIN)
    m.wait_workers(2)
    m.kill(signal.SIGTTOU)
    m.wait_workers(1)
    assert "worker 1 (gen 1)" not in " ".join(m.workers().values())
    m.kill(signal.SIGTERM)
    assert m.wait_exit() == 0


# -- reload --------------------------------------------------------------------


def test_hup_starts_new_generation_before_retiring_old(master):
    m = master(boot_delay=0.4, drain=0.3)
    old = m.wait_workers(2, gen=1)
    m.wait_ready(2)
    m.write(tag="v2")
    m.kill(signal.SIGHUP)
    new = m.wait_workers(2, gen=2)
    m.wait(lambda: not m.workers(gen=1), 10, "old generation gone")
    assert not set(new) & set(old)
    ready2 = [e["t"] for e in m.events("ready") if e["gen"] == 2]
    drain1 = [e["t"] for e in m.events("drain") if e["gen"] == 1]
    assert len(ready2) == 2 and len(drain1) == 2
    assert max(ready2) < min(drain1)
    assert "reload: generation 2 ready; retiring generation 1" in m.log()
    m.kill(signal.SIGTERM)
    assert m.wait_exit() == 0


def test_hup_with_bad_config_keeps_old_workers(master):
    m = master()
    old = m.wait_workers(2)
    m.wait_ready(2)
    m.write(broken=True)
    m.kill(signal.SIGHUP)
    m.wait(lambda: "reload failed" in m.log(), 5, "reload failure logged")
    time.sleep(0.5)
    assert m.workers() == old
    assert m.proc.poll() is None
    # fixed config: the next SIGHUP works
    del m.data["broken"]
    m.write()
    m.kill(signal.SIGHUP)
    m.wait_workers(2, gen=2)
    m.kill(signal.SIGTERM)
    assert m.wait_exit() == 0


def test_hup_with_failing_new_generation_keeps_old_workers(master):
    m = master()
    old = m.wait_workers(2, gen=1)
    m.wait_ready(2)
    m.write(mode="boot_error")
    m.kill(signal.SIGHUP)
    m.wait(lambda: "reload to generation 2 aborted" in m.log(), 10, "reload aborted")
    m.wait(lambda: not m.workers(gen=2), 10, "new generation gone")
    assert m.workers(gen=1) == old
    assert m.proc.poll() is None
    m.kill(signal.SIGTERM)
    assert m.wait_exit() == 0


class Hammer:
    """Client threads opening short HTTP connections as fast as they can."""

    def __init__(self, port: int, threads: int = 8) -> None:
        self.port = port
        self.stop = threading.Event()
        self.results = [{"ok": 0, "fail": [], "gens": Counter()} for _ in range(threads)]
        self.threads = [
            threading.Thread(target=self._run, args=(r,), daemon=True) for r in self.results
        ]

    def _run(self, res) -> None:
        while not self.stop.is_set():
            try:
                reply = http_get(self.port)
            except OSError as exc:
                res["fail"].append(repr(exc))
                continue
            if not reply.startswith(b"HTTP/1.1 200 OK") or b"gen=" not in reply:
                res["fail"].append(reply[:80])
                continue
            res["ok"] += 1
            res["gens"][int(reply.split(b"gen=")[1].split()[0])] += 1

    def __enter__(self) -> Hammer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)

    @property
    def ok(self) -> int:
        return sum(r["ok"] for r in self.results)

    @property
    def failures(self) -> list:
        return [f for r in self.results for f in r["fail"]]

    @property
    def gens(self) -> Counter:
        total = Counter()
        for r in self.results:
            total.update(r["gens"])
        return total


def _reload_under_load(m: Master, reloads: int) -> Hammer:
    m.wait_workers(2, gen=1)
    m.wait_ready(2)
    assert http_get(m.port).startswith(b"HTTP/1.1 200 OK")
    with Hammer(m.port) as hammer:
        time.sleep(0.5)
        for gen in range(2, 2 + reloads):
            m.kill(signal.SIGHUP)
            m.wait_workers(2, gen=gen)
            m.wait(lambda g=gen: not m.workers(gen=g - 1), 15, f"gen {gen - 1} retired")
            time.sleep(0.3)
    return hammer


@pytest.mark.parametrize("migrate", [True, False], ids=["migrate_req", "no_migrate_req"])
def test_zero_failed_connections_across_hup(master, migrate_sysctl, migrate, capsys):
    if migrate_sysctl is None:
        pytest.skip("kernel has no net.ipv4.tcp_migrate_req")
    if not migrate:
        if not os.environ.get("HELIX_MEASURE_RESETS"):
            pytest.skip("measurement only; set HELIX_MEASURE_RESETS=1")
        try:
            with open(MIGRATE_REQ_PATH, "w") as f:
                f.write("0")
        except OSError:
            pytest.skip("cannot change net.ipv4.tcp_migrate_req")
    m = master(mode="http", arbiter={"migrate_req": migrate})
    hammer = _reload_under_load(m, reloads=3)
    if migrate and read_sysctl() != "1":
        pytest.skip("net.ipv4.tcp_migrate_req could not be enabled (not root?)")
    m.kill(signal.SIGTERM)
    assert m.wait_exit() == 0
    with capsys.disabled():
        print(
            f"\n[reload under load, tcp_migrate_req={read_sysctl()}] ok={hammer.ok} "
            f"failed={len(hammer.failures)} gens={dict(hammer.gens)} "
            f"sample={Counter(hammer.failures).most_common(3)}"
        )
    assert hammer.ok > 200
    assert set(hammer.gens) >= {1, 2, 3, 4}
    if migrate:
        assert hammer.failures == []
