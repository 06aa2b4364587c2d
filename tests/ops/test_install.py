"""One install, every feature (issue 16.1): every third-party module Helix imports is an
install requirement, and the heavy ones load only when the config enables their feature --
checked in the worker processes of a running Helix and in an App built as a worker builds it."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap

from helix.mock import MockProcess
from tests.helpers import ROOT, HelixProcess, mock_config

# redis-py imports the (tiny) top-level cryptography package to sniff its version; the
# heavy part is cryptography.hazmat (its Rust bindings).
HEAVY = ("opentelemetry", "google.protobuf", "cryptography.hazmat", "redis", "botocore", "boto3")


def install_requires() -> set[str]:
    cp = configparser.ConfigParser()
    cp.read(os.path.join(ROOT, "setup.cfg"))
    names = set()
    for line in cp["options"]["install_requires"].splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[<>=!~;\[ ]", line)[0].lower().replace("_", "-"))
    return names


def third_party_imports() -> dict[str, str]:
    """top-level module -> a file importing it, over helix/ (the mock included)."""
    stdlib = set(sys.stdlib_module_names)
    found: dict[str, str] = {}
    for dirpath, _, files in os.walk(os.path.join(ROOT, "helix")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                else:
                    continue
                for mod in mods:
                    top = mod.split(".")[0]
                    if top not in stdlib and top not in ("helix", "__future__"):
                        found.setdefault(mod if top == "google" else top, path)
    return found


def test_every_imported_package_is_installed_by_pip_install_dot():
    required = install_requires()
    dists = importlib.metadata.packages_distributions()
    assert {"cryptography", "redis"} <= required
    # tracing writes OTLP protobuf itself: the official packages are test-only
    assert not {"opentelemetry-proto", "protobuf"} & required
    for mod, where in third_party_imports().items():
        top = mod.split(".")[0]
        candidates = {d.lower() for d in dists.get(top, [])}
        if mod.startswith("google.protobuf"):
            candidates = {"protobuf"}
        assert candidates & required, f"{mod} (imported by {where}) is not in install_requires"


def _loaded_in_app(config_text: str, tmp_path) -> list[str]:
    """Build the config's App in a fresh interpreter as a worker does (after the master's
    pre-flight); which heavy modules got imported?"""
    path = tmp_path / "cfg.yaml"
    path.write_text(config_text)
    code = textwrap.dedent(f"""
        import asyncio, json, sys
        from helix import checks, config
        cfg = config.load_file({str(path)!r})
        config.check_supported(cfg)
        checks.preflight(cfg)
        from helix.app import create_app
        async def main():
            app = await create_app(cfg, None)
            await app.close()
        asyncio.run(main())
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_config_imports_no_heavy_module(tmp_path):
    base = mock_config("http://127.0.0.1:9")
    assert _loaded_in_app(base, tmp_path) == []
    full = base + textwrap.dedent("""
        observability:
          metrics: {enabled: true}
          tracing: {enabled: true, endpoint: "http://127.0.0.1:9"}
        caching: {backend: redis, redis_url: "redis://127.0.0.1:9"}
    """)
    loaded = _loaded_in_app(full, tmp_path)
    # (redis-py may import opentelemetry's API for its own metrics; tracing imports neither)
    assert "redis" in loaded and "google.protobuf" not in loaded
    assert "cryptography.hazmat" not in loaded and "botocore" not in loaded
    tracing = base + textwrap.dedent("""
        observability:
          tracing: {enabled: true, endpoint: "http://127.0.0.1:9"}
    """)
    assert _loaded_in_app(tracing, tmp_path) == []


def _mapped(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as fh:
        return fh.read()


def test_running_workers_map_heavy_extensions_only_when_enabled(tmp_path):
    """The workers of a running Helix: cryptography's compiled modules are mapped only
    with Vertex configured; protobuf's never (tracing writes OTLP itself)."""
    from tests.ops.test_check import service_account

    with MockProcess() as mock:
        with HelixProcess(mock_config(mock.url), workers=2) as hx:
            pids = hx.worker_pids()
            assert len(pids) == 2
            for pid in pids:
                maps = _mapped(pid)
                assert "cryptography" not in maps and "_upb" not in maps
        extra = textwrap.dedent(f"""
              - name: vx
                type: vertex
                project: p
                credentials_file: {service_account(tmp_path)}
                models: [gemini-2.5-flash]
            observability:
              tracing: {{enabled: true, endpoint: "http://127.0.0.1:9"}}
        """)
        with HelixProcess(mock_config(mock.url) + extra, workers=2) as hx:
            for pid in hx.worker_pids():
                maps = _mapped(pid)
                assert "cryptography" in maps and "_upb" not in maps
