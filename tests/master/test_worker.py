import errno
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import arbiter_harness as harness
import pytest

from helix.master import shm
from helix.master.shm import WORKER_FIELDS, WORKER_TABLE, SharedMemory, ShmLayout
from helix.master.worker import BOOT_ERROR, WorkerContext, bind_socket, check_bindable, run_worker


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def http_get(port: int, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_bind_socket_reuseport_group():
    port = free_port()
    a = bind_socket("127.0.0.1", port, 16)
    b = bind_socket("127.0.0.1", port, 16)
    try:
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert not a.getblocking()
        assert a.getsockname()[1] == b.getsockname()[1] == port
    finally:
        a.close()
        b.close()


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_bind_socket_ipv6():
    port = free_port("::1")
    for host in ("::1", "[::1]"):
        s = bind_socket(host, port, 16)
        try:
            assert s.family == socket.AF_INET6
        finally:
            s.close()


def test_check_bindable_reports_busy_port_clearly():
    port = free_port()
    check_bindable("127.0.0.1", port)  # free: no error
    listener = bind_socket("127.0.0.1", port, 16)
    try:
        with pytest.raises(OSError) as info:
            check_bindable("127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE
        assert str(info.value).endswith(f"cannot bind 127.0.0.1:{port}: address already in use")
    finally:
        listener.close()


def test_check_bindable_leaves_no_listener():
    port = free_port()
    check_bindable("127.0.0.1", port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_check_bindable_bad_host():
    with pytest.raises(OSError, match="cannot bind"):
        check_bindable("no-such-host.invalid", 8080)


# -- run_worker in a real forked child, with the tiny app/server stand-ins ----


@pytest.fixture
def mem():
    layout = ShmLayout()
    layout.alloc(WORKER_TABLE, rows=2, cols=len(WORKER_FIELDS), dtype="Q")
    m = SharedMemory(layout)
    yield m
    m.close()


def fork_worker(mem, config, **kwargs) -> int:
    mem.workers.prepare(0, generation=1)
    master_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ctx = WorkerContext(
                index=0,
                number=0,
                generation=1,
                pid=os.getpid(),
                master_pid=master_pid,
                shm=mem,
                slot=mem.workers.slot(0),
                log=logging.getLogger("test.worker"),
            )
            target = functools.partial(
                run_worker,
                create_app=harness.tiny_create_app,
                server_factory=harness.TinyServer,
                **kwargs,
            )
            code = target(ctx, config)
        finally:
            os._exit(code)
    return pid


def wait_exit(pid: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("worker did not exit")


def wait_state(mem, state: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while mem.workers.state(0) != state:
        assert time.monotonic() < deadline, f"slot state {mem.workers.state(0)} != {state}"
        time.sleep(0.02)


def make_config(tmp_path, **kw):
    server = harness.ServerConfig(port=free_port(), workers=1, graceful_timeout=3.0)
    return harness.Config(server=server, mode="http", events=str(tmp_path / "ev.jsonl"), **kw)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_run_worker_serves_then_drains(tmp_path, mem, signame):
    config = make_config(tmp_path, tag="w")
    pid = fork_worker(mem, config)
    try:
        wait_state(mem, shm.READY)
        reply = http_get(config.server.port)
        assert reply.startswith(b"HTTP/1.1 200 OK")
        assert f"pid={pid} gen=1 tag=w".encode() in reply
        info = mem.workers.read(0)
        assert info["pid"] == pid
        # heartbeat keeps moving and publishes the server counters
        time.sleep(1.3)
        info = mem.workers.read(0)
        assert time.monotonic_ns() - info["heartbeat"] < 1.2e9
        assert info["requests_total"] == 1
        os.kill(pid, getattr(signal, signame))
        assert wait_exit(pid) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert mem.workers.state(0) == shm.DRAINING
    assert "app_close" in (tmp_path / "ev.jsonl").read_text()
    with pytest.raises(ConnectionRefusedError):
        http_get(config.server.port)


def test_run_worker_app_error_is_boot_error(tmp_path, mem):
    config = make_config(tmp_path, app_error=True)
    pid = fork_worker(mem, config)
    assert wait_exit(pid) == BOOT_ERROR


def test_run_worker_bind_error_is_boot_error(tmp_path, mem):
    config = make_config(tmp_path)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", config.server.port))  # no SO_REUSEPORT: blocks the group
    squatter.listen(1)
    try:
        pid = fork_worker(mem, config)
        assert wait_exit(pid) == BOOT_ERROR
    finally:
        squatter.close()


def test_master_side_imports_stay_small():
    code = (
        "import sys, helix.master, helix.master.arbiter;"
        "bad = [m for m in ('helix.app', 'helix.server', 'helix.server.server', 'uvloop')"
        " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
