"""The master/worker life cycle, seen from outside: signals, crashes, reloads, start-up."""

import os
import signal
import subprocess
import sys
import threading
import time

import openai
import pytest

from helix.mock import MockProcess
from tests.helpers import ROOT, HelixProcess, free_port, http_get, mock_config

MSGS = [{"role": "user", "content": "life"}]


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "4") as proc:
        yield proc


def sdk(helix, timeout=15):
    return openai.OpenAI(base_url=helix.base_url, api_key="x", max_retries=0, timeout=timeout)


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_worker_is_respawned_and_traffic_flows(mock):
    with HelixProcess(mock_config(mock.url), workers=2) as helix, sdk(helix) as c:
        pids = helix.worker_pids()
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        wait_for(
            lambda: len(helix.worker_pids()) == 2 and pids[0] not in helix.worker_pids(),
            10,
            "respawn",
        )
        for _ in range(20):
            assert c.chat.completions.create(model="gpt-4o-mini", messages=MSGS).choices


def test_sigterm_during_stream_completes_the_stream(mock):
    cfg = mock_config(mock.url, extra="") + (
        "  - name: slowstream\n    type: openai_compatible\n"
        f"    base_url: {mock.url}/v1\n    api_key: k\n"
        "    headers: {x-mock-chunks: '8', x-mock-chunk-interval-ms: '250'}\n"
    )
    with HelixProcess(cfg, workers=1) as helix, sdk(helix) as c:
        stream = c.chat.completions.create(
            model="slowstream/gpt-4o-mini", messages=MSGS, stream=True
        )
        first = next(iter(stream))
        helix.signal(signal.SIGTERM)
        rest = list(stream)
        text = "".join(ch.choices[0].delta.content or "" for ch in [first, *rest] if ch.choices)
        assert text == "mock reply to: life"
        assert helix.wait(20) == 0
        # ...and new connections are refused once drained.
        with pytest.raises(OSError):
            http_get(helix.port, "/health", timeout=1)


def test_sighup_under_load_fails_no_request(mock):
    with HelixProcess(mock_config(mock.url), workers=2) as helix:
        failures, done = [], []
        stop = threading.Event()

        def hammer():
            with sdk(helix, timeout=10) as c:
                while not stop.is_set():
                    try:
                        c.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
                        done.append(1)
                    except Exception as exc:
                        failures.append(repr(exc))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            old = set(helix.worker_pids())
            helix.signal(signal.SIGHUP)
            wait_for(
                lambda: not (old & set(helix.worker_pids())) and len(helix.worker_pids()) == 2,
                20,
                "new generation",
            )
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        assert failures == []
        assert len(done) > 20


def test_starts_without_config_or_keys_and_explains(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(PYTHONPATH=ROOT, HELIX_PORT=str(port), HELIX_WORKERS="1")
    env.pop("HELIX_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "helix"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _healthy(port) or proc.poll() is not None, 20, "start")
        assert proc.poll() is None
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as ei:
            c.chat.completions.create(model="gpt-4o", messages=MSGS)
        assert ei.value.status_code == 503 and "OPENAI_API_KEY" in ei.value.message
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert "no providers configured" in out


def _healthy(port):
    try:
        return http_get(port, "/health", timeout=0.5)[0] == 200
    except OSError:
        return False


def run_helix(*args, env=None, timeout=20):
    e = dict(os.environ, PYTHONPATH=ROOT)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "helix", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
    )


def test_bad_config_exits_nonzero_before_binding(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("server: {port: 'eighty'}\n")
    r = run_helix("--config", str(p))
    assert r.returncode == 2
    assert "server.port" in r.stderr and "eighty" in r.stderr


def test_config_that_could_not_take_effect_is_refused(tmp_path):
    # A per-key limit with no gateway keys would silently limit nothing: refused at start.
    p = tmp_path / "c.yaml"
    p.write_text("rate_limits:\n  per_key: {requests_per_minute: 10}\n")
    r = run_helix("--config", str(p))
    assert r.returncode == 2 and "rate_limits.per_key" in r.stderr


def test_port_in_use_fails_cleanly(mock):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = mock_config(mock.url)
        p = os.path.join(ROOT, ".pytest-port-in-use.yaml")
        with open(p, "w") as fh:
            fh.write(cfg)
        try:
            r = run_helix("--config", p, "--port", str(port), "--workers", "1")
        finally:
            os.unlink(p)
    assert r.returncode != 0 and str(port) in r.stderr


def test_check_masks_secrets(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("providers:\n  - {name: o, type: openai, api_key: sk-verysecretvalue1234}\n")
    r = run_helix("check", "--config", str(p))
    assert r.returncode == 0
    assert "verysecret" not in r.stdout and "1234" in r.stdout


def test_version_names_the_extension_state():
    r = run_helix("--version")
    assert r.returncode == 0 and "extensions:" in r.stdout
    r2 = run_helix("--version", env={"HELIX_NO_EXTENSIONS": "1"})
    assert "pure-python" in r2.stdout
