"""`helix try` (helix/devtools.py) against a running Helix in front of the bundled mock."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helix.mock import MockProcess
from tests.helpers import ROOT, HelixProcess, mock_config


@pytest.fixture(scope="module")
def helix_url():
    with MockProcess("--no-record") as mock, HelixProcess(mock_config(mock.url)) as helix:
        yield f"http://127.0.0.1:{helix.port}"


def try_(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "helix.devtools", *args], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))


def test_one_request_prints_answer_and_routing_headers(helix_url):
    out = try_("--url", helix_url, "-m", "ping")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP 200")
    assert "x-helix-provider: mock" in out.stdout
    assert "x-helix-model: gpt-4o-mini" in out.stdout
    assert "ping" in out.stdout and "usage: prompt_tokens=" in out.stdout


def test_stream(helix_url):
    out = try_("--url", helix_url + "/v1", "--stream", "--model", "alias-fast")
    assert out.returncode == 0, out.stderr
    assert "x-helix-model: real-model-id" in out.stdout
    assert "events," in out.stdout


def test_error_is_shown_and_fails(helix_url):
    out = try_("--url", helix_url, "--model", "no-such-model")
    assert out.returncode == 1
    assert "HTTP 404" in out.stdout and "error: invalid_request_error" in out.stdout


def test_unreachable_and_bad_usage():
    out = try_("--url", "http://127.0.0.1:1")
    assert out.returncode == 1 and "helix try:" in out.stderr
    assert try_("--url", "ftp://x").returncode == 2
    assert try_("--run-forever", "--rate", "0").returncode == 2


def test_run_forever_load_mode(helix_url):
    out = try_("--url", helix_url, "--run-forever", "--rate", "100", "--duration", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    summary = next(ln for ln in out.stdout.splitlines() if ln.startswith("summary:"))
    sent = int(summary.split()[1])
    assert 150 <= sent <= 210, summary
    assert " 0 errors" in summary and "routed to: mock=" in out.stdout
    assert "t=  1.0s" in out.stdout
