"""``helix check`` proves a config can run: real redis-server, moto's S3 server, a real HTTP
collector; each failure names its config key and no secret is ever printed.  ``helix`` runs
the offline subset before it binds."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from tests.helpers import ROOT, free_port

SECRETS = ("redispass99", "trace-hdr-secret", "hel-secret-key", "s3-secret-key-zz",
           "sk-upstream-userinfo", "sk-provider-key-1", "aws-secret-bedrock")


def run_helix(*args: str, env: dict | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess:
    e = dict(os.environ if env is None else env)
    e["PYTHONPATH"] = ROOT + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    for var in ("HELIX_CONFIG", "HELIX_PORT", "HELIX_HOST", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS"):
        if env is None or var not in env:
            e.pop(var, None)
    return subprocess.run([sys.executable, "-m", "helix", *args], capture_output=True,
                          text=True, env=e, timeout=timeout, cwd=ROOT)


class Collector:
    """An OTLP/HTTP collector and a Helicone API stand-in: 200 on POST /v1/traces, GET /."""

    def __init__(self) -> None:
        seen = self.seen = []

        class H(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                n = int(self.headers.get("content-length") or 0)
                self.rfile.read(n)
                seen.append((self.command, self.path, dict(self.headers)))
                ok = (self.command, self.path) in (("POST", "/v1/traces"), ("GET", "/"))
                self.send_response(200 if ok else 404)
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def service_account(tmp_path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "client_email": "hx@p.iam",
                                "private_key": pem, "project_id": "p"}))
    return str(path)


@pytest.fixture(scope="module")
def redis_url():
    from tests.limit.redis_server import RedisServer

    with RedisServer() as r:
        # a password, so the check must mask it
        import redis

        redis.Redis(port=r.port).config_set("requirepass", "redispass99")
        yield f"redis://:redispass99@127.0.0.1:{r.port}/0"


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("moto.server")
    from tests.integration.test_cache_backends import S3

    server = S3().start()
    try:
        server.client().create_bucket(Bucket="helix-check")
        yield server
    finally:
        server.stop()


def config(tmp_path, redis_url, s3_endpoint, collector_url, *, bucket="helix-check",
           tracing_path="", upstream="https://127.0.0.1:9/v1") -> str:
    text = f"""
providers:
  - name: up
    type: openai_compatible
    base_url: {upstream}
    api_key: sk-provider-key-1
    models: [m]
  - name: vx
    type: vertex
    project: p
    models: [gemini-2.5-flash]
  - name: br
    type: bedrock
    region: us-east-1
    aws_access_key_id: AKIDEXAMPLE
    aws_secret_access_key: aws-secret-bedrock
    models: [anthropic.claude-3-5-sonnet-20241022-v2:0]
caching:
  backend: s3
  s3_bucket: {bucket}
  s3_endpoint: {s3_endpoint}
  s3_region: us-east-1
  s3_access_key_id: testing
  s3_secret_access_key: s3-secret-key-zz
rate_limits:
  backend: redis
  redis_url: {redis_url}
  global: {{requests_per_minute: 100}}
observability:
  tracing:
    enabled: true
    endpoint: {collector_url}{tracing_path}
    headers: {{authorization: "Bearer trace-hdr-secret"}}
  helicone: {{api_key: hel-secret-key, base_url: {collector_url}}}
"""
    p = tmp_path / "helix.yaml"
    p.write_text(text)
    return str(p)


def no_secrets(r: subprocess.CompletedProcess) -> None:
    for s in SECRETS:
        assert s not in r.stdout and s not in r.stderr, s


def lines(r) -> dict[str, str]:
    """'<kind> <key>' -> the check's whole line."""
    out = {}
    for line in r.stderr.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0] in ("ok", "FAIL", "skip"):
            out[f"{parts[1]} {parts[2].rstrip(':')}"] = line
    return out


def test_everything_answers(tmp_path, redis_url, s3):
    env = dict(os.environ, GOOGLE_APPLICATION_CREDENTIALS=service_account(tmp_path))
    with Collector() as c:
        path = config(tmp_path, redis_url, s3.endpoint, c.url)
        r = run_helix("check", "--config", path, "--port", str(free_port()), env=env)
        assert r.returncode == 0, r.stderr
        got = lines(r)
        for k in ("imports observability.tracing", "imports providers[1]",
                  "credentials providers[1]", "credentials providers[2].aws_access_key_id",
                  "credentials caching.s3_access_key_id", "port server.port",
                  "redis rate_limits.redis_url", "s3 caching.s3_bucket",
                  "tracing observability.tracing.endpoint",
                  "helicone observability.helicone.base_url", "app (whole"):
            assert got[k].startswith("ok"), (k, r.stderr)
        assert "hx@p.iam" in got["credentials providers[1]"]
        # the tracing check really exported (an empty OTLP request with the configured header)
        assert ("POST", "/v1/traces") in [(m, p) for m, p, _ in c.seen]
        hdrs = next(h for m, p, h in c.seen if p == "/v1/traces")
        assert hdrs["authorization"] == "Bearer trace-hdr-secret"
        assert hdrs["content-type"] == "application/x-protobuf"
        assert "config OK" in r.stderr
        no_secrets(r)
        assert "redis://****@127.0.0.1" in r.stdout  # the printed config, masked


def test_each_failure_names_its_key_and_what_to_do(tmp_path, redis_url, s3):
    dead = f"redis://:redispass99@127.0.0.1:{free_port()}/0"
    env = dict(os.environ, GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json"))
    with Collector() as c:
        path = config(tmp_path, dead, s3.endpoint, c.url, bucket="no-such-bucket",
                      tracing_path="/wrong/path",
                      upstream="https://user:sk-upstream-userinfo@127.0.0.1:9/v1")
        r = run_helix("check", "--config", path, "--port", str(free_port()), env=env)
    assert r.returncode == 1
    got = lines(r)
    assert got["credentials providers[1]"].startswith("FAIL")
    assert "missing.json" in got["credentials providers[1]"]
    assert "GOOGLE_APPLICATION_CREDENTIALS" in got["credentials providers[1]"]
    assert got["redis rate_limits.redis_url"].startswith("FAIL")
    assert "start Redis there or fix rate_limits.redis_url" in got["redis rate_limits.redis_url"]
    assert got["s3 caching.s3_bucket"].startswith("FAIL")
    assert "404" in got["s3 caching.s3_bucket"] and "create it" in got["s3 caching.s3_bucket"]
    assert got["tracing observability.tracing.endpoint"].startswith("FAIL")
    assert "404" in got["tracing observability.tracing.endpoint"]
    assert got["helicone observability.helicone.base_url"].startswith("ok")
    # a worker would refuse this config at start: check builds the app and says so
    assert got["app (whole"].startswith("FAIL") and "credentials in upstream URLs" in r.stderr
    assert "https://****@127.0.0.1:9/v1" in r.stdout
    no_secrets(r)

    # --offline: the network checks are skipped, the offline failure still counts
    r = run_helix("check", "--config", path, "--offline", "--port", str(free_port()), env=env)
    got = lines(r)
    assert r.returncode == 1 and got["redis rate_limits.redis_url"].startswith("skip")
    assert got["credentials providers[1]"].startswith("FAIL")
    no_secrets(r)


def test_bedrock_without_credentials_and_a_busy_port(tmp_path):
    import socket

    p = tmp_path / "b.yaml"
    p.write_text("providers:\n  - {name: br, type: bedrock, region: us-east-1, "
                 "models: [m]}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        r = run_helix("check", "--config", str(p), "--port", str(busy), "-q")
    got = lines(r)
    assert r.returncode == 1
    assert "AWS_ACCESS_KEY_ID" in got["credentials providers[0].aws_access_key_id"]
    assert got["port server.port"].startswith("FAIL") and "server.port" in got["port server.port"]
    assert r.stdout == ""  # -q: no config dump


def test_helix_refuses_to_start_what_check_refuses(tmp_path):
    """A module that fails to import (a broken install) stops helix before it binds, with the
    key that needs it, instead of crashing every worker at start."""
    broken = tmp_path / "site"
    (broken / "redis").mkdir(parents=True)
    (broken / "redis" / "__init__.py").write_text(
        "raise ImportError('simulated broken install')\n")
    p = tmp_path / "t.yaml"
    p.write_text("caching: {backend: redis, redis_url: 'redis://127.0.0.1:9'}\n")
    env = dict(os.environ, PYTHONPATH=str(broken))
    port = free_port()
    r = run_helix("check", "--config", str(p), "--offline", "--port", str(port), env=env)
    assert r.returncode == 1
    assert "simulated broken install" in lines(r)["imports caching.backend"]
    r = run_helix("--config", str(p), "--port", str(port), "--workers", "1", env=env, timeout=30)
    assert r.returncode == 2
    assert "caching.backend" in r.stderr and "simulated broken install" in r.stderr
    assert "worker" not in r.stderr.lower()  # refused before any worker was forked


def test_responses_store_directory_and_redis_are_checked(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    cfg = tmp_path / "h.yaml"
    cfg.write_text(f"responses: {{state_dir: {ro}/helix}}\n")
    if os.geteuid() != 0:  # root writes anywhere: the directory case needs a user
        out = run_helix("check", "--config", str(cfg), "--offline")
        assert out.returncode != 0 and "responses.state_dir" in out.stdout + out.stderr
    cfg.write_text(f"responses: {{state_dir: {tmp_path}/state}}\n")
    out = run_helix("check", "--config", str(cfg), "--offline")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "responses.state_dir" in out.stdout + out.stderr
    assert not (tmp_path / "state").exists()  # checked, not created
    port = free_port()  # nothing listens there
    cfg.write_text(f"responses: {{store: redis, redis_url: 'redis://127.0.0.1:{port}/0'}}\n")
    out = run_helix("check", "--config", str(cfg), "--timeout", "1")
    assert out.returncode != 0 and "responses.redis_url" in out.stdout + out.stderr
