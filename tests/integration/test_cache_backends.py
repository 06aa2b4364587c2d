"""Shared cache backends end to end: real Redis (redis-server) and S3 (moto's server mode),
2 helix workers, the openai SDK.  Each backend is stopped mid-test: requests then miss (no
client errors) and the cache works again once the backend is back."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import uuid

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, free_port

openai = pytest.importorskip("openai")

MODEL = "gpt-4o-mini"


def config(mock_url: str, caching: str) -> str:
    return f"""
providers:
  - name: mock
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: sk-upstream
    models: [{MODEL}]
caching:
{caching}
"""


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    client.close()
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "5") as proc:
        yield proc


def calls(mock, text: str) -> int:
    return sum(1 for r in mock.requests() if text in json.dumps(r.get("body")))


def prompt():
    return [{"role": "user", "content": f"hello {uuid.uuid4().hex}"}]


def ask(base_url: str, messages, *, stream=False, api_key="tenant-a", usage=False):
    """A fresh SDK client per call: a new connection, so any worker may answer."""
    with openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=10) as c:
        kw = {"stream_options": {"include_usage": True}} if stream and usage else {}
        raw = c.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, stream=stream, **kw
        )
        out = raw.parse()
        if stream:
            parts, u = [], None
            for ch in out:
                if ch.choices:
                    parts.append(ch.choices[0].delta.content or "")
                if ch.usage is not None:
                    u = ch.usage.model_dump()
            return "".join(parts), u, raw.headers.get("helicone-cache")
        return (out.choices[0].message.content, out.usage.model_dump(),
                raw.headers.get("helicone-cache"))


def wait_hit(base_url, messages, timeout=5.0):
    """The write is off the response path: poll until it is visible."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = ask(base_url, messages)
        if out[2] == "HIT":
            return out
        time.sleep(0.05)
    raise AssertionError("no HIT within the timeout")


def shared_backend_behaviour(hx, mock, stop, start):
    # miss, then hits from every worker (fresh connections): one upstream call in all
    m = prompt()
    text, usage, state = ask(hx.base_url, m)
    assert state == "MISS"
    wait_hit(hx.base_url, m)
    for _ in range(10):
        assert ask(hx.base_url, m)[:3] == (text, usage, "HIT")
    assert calls(mock, m[0]["content"]) == 1
    # stream <-> non-stream, identical content, across workers
    assert ask(hx.base_url, m, stream=True, usage=True) == (text, usage, "HIT")
    s = prompt()
    s_text, s_usage, state = ask(hx.base_url, s, stream=True, usage=True)
    assert state == "MISS"
    assert wait_hit(hx.base_url, s)[:2] == (s_text, s_usage)
    # tenants do not share
    assert ask(hx.base_url, m, api_key="tenant-b")[2] == "MISS"
    # the backend goes away: misses, never errors
    stop()
    for _ in range(5):
        out = ask(hx.base_url, m)
        assert out[0] == text and out[2] == "MISS"
    # ...and comes back: the cache works again
    start()
    n = prompt()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ask(hx.base_url, n)
        with contextlib.suppress(AssertionError):
            wait_hit(hx.base_url, n, timeout=1.0)
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the cache did not recover")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_redis_backend_shared_across_workers_and_survives_an_outage(mock):
    redis = RedisServer().start()
    try:
        caching = f"  backend: redis\n  redis_url: {redis.url}\n  redis_timeout: 200ms\n"
        with HelixProcess(config(mock.url, caching), workers=2) as hx:
            shared_backend_behaviour(hx, mock, redis.stop, redis.start)
    finally:
        redis.stop()


class S3:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._factory = ThreadedMotoServer
        self.server = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3:
        self.server = self._factory(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )


def test_s3_backend_shared_across_workers_and_survives_an_outage(mock):
    pytest.importorskip("moto.server")
    s3 = S3().start()
    try:
        s3.client().create_bucket(Bucket="helix-cache")
        caching = f"""  backend: s3
  s3_bucket: helix-cache
  s3_endpoint: {s3.endpoint}
  s3_region: us-east-1
  s3_prefix: tests/cache
  s3_access_key_id: testing
  s3_secret_access_key: testing
  s3_timeout: 1s
  admin_api_key: admin-key-0123456789abcdef
"""
        with HelixProcess(config(mock.url, caching), workers=2) as hx:
            m = prompt()
            ask(hx.base_url, m)
            wait_hit(hx.base_url, m)
            keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="helix-cache")["Contents"]]
            assert keys and all(k.startswith("tests/cache/_/") for k in keys)
            # purge everything through the admin endpoint (shared backend: every worker)
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", hx.port, timeout=10)
            conn.request("POST", "/admin/cache/purge", body=b'{"all": true}',
                         headers={"authorization": "Bearer admin-key-0123456789abcdef"})
            resp = conn.getresponse()
            body = json.loads(resp.read())
            conn.close()
            assert resp.status == 200 and body["purged"] == len(keys)
            assert ask(hx.base_url, m)[2] == "MISS"

            def restart():
                s3.start()
                s3.client().create_bucket(Bucket="helix-cache")

            shared_backend_behaviour(hx, mock, s3.stop, restart)
    finally:
        s3.stop()
