"""``helix models``: what a config serves, with limits, prices and the date of the prices.

The CLI's model names are exactly the ``GET /v1/models`` of a running helix on the same config,
and its price date is the one ``/status`` reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helix.routing.models import prices_as_of
from tests.helpers import ROOT, HelixProcess, http_get

CONFIG = """
providers:
  - name: oa
    type: openai
    api_key: sk-upstream-x
    base_url: http://127.0.0.1:9/v1
    models: [gpt-4o-mini, {name: fast, id: gpt-6-luna}, text-embedding-3-small]
  - name: claude
    type: anthropic
    api_key: sk-ant-upstream-x
    base_url: http://127.0.0.1:9
    models: [{name: fast, id: claude-haiku-5-5}, claude-sonnet-4-6, my-unknown-model]
  - name: local
    type: ollama
    base_url: http://127.0.0.1:9
models:
  - {id: my-unknown-model, provider: anthropic, input_per_mtok: 1.5, output_per_mtok: 6,
     cache_write_per_mtok: 1.9}
"""


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-m", "helix", "models", *args],
        env={**base, **(env or {})}, capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "helix.yaml"
    path.write_text(CONFIG)
    return str(path)


def test_json_lists_every_deployment_with_its_prices(config_file):
    r = run_cli("--config", config_file, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["prices_as_of"] == prices_as_of()
    by_name = {m["model"]: m["deployments"] for m in doc["models"]}
    assert list(by_name) == [
        "gpt-4o-mini", "fast", "text-embedding-3-small", "claude-sonnet-4-6", "my-unknown-model",
    ]
    fast = by_name["fast"]
    assert [(d["provider"], d["model_id"], d["type"]) for d in fast] == [
        ("oa", "gpt-6-luna", "openai"), ("claude", "claude-haiku-5-5", "anthropic"),
    ]
    haiku = fast[1]
    assert haiku["context_window"] == 1_000_000 and haiku["max_output"] == 128_000
    assert (haiku["input_per_mtok"], haiku["output_per_mtok"]) == (0.10, 0.50)
    assert (haiku["cached_input_per_mtok"], haiku["cache_write_per_mtok"]) == (0.01, 0.125)
    assert by_name["text-embedding-3-small"][0]["mode"] == "embedding"
    # a config `models:` entry prices a model the packaged table does not know
    mine = by_name["my-unknown-model"][0]
    assert (mine["input_per_mtok"], mine["cache_write_per_mtok"]) == (1.5, 1.9)
    assert doc["any_model"] == [{"provider": "local", "type": "ollama"}]
    assert "sk-upstream-x" not in r.stdout and "sk-ant-upstream-x" not in r.stdout


def test_table_shows_the_price_date(config_file):
    r = run_cli("--config", config_file)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["MODEL", "DEPLOYMENT", "CONTEXT", "MAX", "OUT", "IN", "OUT",
                                "CACHE", "READ", "CACHE", "WRITE"]
    row = next(ln for ln in lines if "claude/claude-haiku-5-5 (anthropic)" in ln)
    assert row.split()[-6:] == ["1,000,000", "128,000", "0.1", "0.5", "0.01", "0.125"]
    assert any(ln.startswith("local/*") for ln in lines)
    assert f"list prices as of {prices_as_of()}" in r.stdout


def test_env_only_mode_and_config_errors():
    r = run_cli("--json", env={"ANTHROPIC_API_KEY": "sk-ant-x"})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["config"] == "env" and doc["models"]
    assert {d["provider"] for m in doc["models"] for d in m["deployments"]} == {"anthropic"}
    bad = run_cli("--config", "/nonexistent/helix.yaml")
    assert bad.returncode == 2 and "config error" in bad.stderr


def test_names_match_a_running_helix_and_status_shows_the_date(config_file):
    listed = json.loads(run_cli("--config", config_file, "--json").stdout)
    with open(config_file) as fh, HelixProcess(fh.read(), workers=2) as helix:
        status, body = http_get(helix.port, "/v1/models")
        assert status == 200
        served = [m["id"] for m in json.loads(body)["data"]]
        status, body = http_get(helix.port, "/status")
        assert status == 200
        assert json.loads(body)["prices_as_of"] == prices_as_of()
    assert sorted(set(served)) == sorted(m["model"] for m in listed["models"])
