"""Redis Cluster (issue 16.6): a real 3-master cluster on local ports, two Helix instances
sharing it through ``redis+cluster://``.  Limits are exact across both, the cache is
shared, and when the master holding the limits is killed mid-run each instance applies
its ``failure_policy`` (fail_closed: 503; fail_open: served) while cache keys on the
other masters keep working."""

from __future__ import annotations

import http.client
import json
import shutil

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, mock_config
from tests.ops.redis_cluster import RedisCluster

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None
                                or shutil.which("redis-cli") is None,
                                reason="needs redis-server and redis-cli (.ci/run installs them)")


def chat(port: int, content: str, user: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        body = json.dumps({"model": "gpt-4o-mini",
                           "messages": [{"role": "user", "content": content}]})
        conn.request("POST", "/v1/chat/completions", body,
                     {"content-type": "application/json", "helicone-user-id": user})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def config(mock_url: str, url: str, policy: str) -> str:
    return mock_config(mock_url, extra=f"""
rate_limits:
  backend: redis
  redis_url: {url}
  redis_timeout: 500ms
  failure_policy: {policy}
  per_user: {{requests_per_minute: 10}}
caching:
  backend: redis
  redis_url: {url}
  redis_timeout: 500ms
""")


def test_limits_exact_cache_shared_and_a_killed_master(tmp_path):
    with RedisCluster() as cluster, MockProcess() as mock:
        a = HelixProcess(config(mock.url, cluster.url, "fail_closed"), workers=2)
        b = HelixProcess(config(mock.url, cluster.url, "fail_open"), workers=2)
        with a, b:
            # Limits: 30 requests of one user alternating over both instances -> exactly 10.
            codes = [chat((a, b)[i % 2].port, f"limit {i}", "alice")[0] for i in range(30)]
            assert codes.count(200) == 10 and codes.count(429) == 20, codes
            # Every limit key carries the {helix:rl} hash tag: one slot, one master.
            keys = cluster.keys()
            rl_ports = {p for p, ks in keys.items() for k in ks if k.startswith("{helix:rl}")}
            assert rl_ports == {cluster.port_of_key("{helix:rl}")}

            # Cache: a miss on A is a hit on B; entries spread over the masters.
            prompts = [f"shared cache {i}" for i in range(12)]
            for i, p in enumerate(prompts):
                status, h, _ = chat(a.port, p, f"user-{i}")
                assert status == 200 and h["helicone-cache"] == "MISS"
            hits = [chat(b.port, p, f"user-{i}")[1]["helicone-cache"]
                    for i, p in enumerate(prompts)]
            assert hits == ["HIT"] * len(prompts)
            cache_ports = {p for p, ks in cluster.keys().items() for k in ks
                           if k.startswith("helix:cache:")}
            assert len(cache_ports) >= 2  # not pinned to one slot

            # Kill the master that holds the limits, mid-run.
            dead = cluster.port_of_key("{helix:rl}")
            cluster.kill(dead)
            for i in range(3):
                status, h, body = chat(a.port, f"after kill {i}", "bob")
                assert status == 503, body  # fail_closed
                assert json.loads(body)["error"]["code"] == "rate_limiter_unavailable"
                status, h, body = chat(b.port, f"after kill {i}", "bob")
                assert status == 200, body  # fail_open: served without limits
            # Cache entries on the surviving masters are still served.  (A lookup that
            # fails on the dead master is a miss and pauses the backend for 1 s, by design:
            # an outage costs one timeout per second, so lookups here are spaced by that.)
            import time

            seen = []
            for i, p in enumerate(prompts):
                time.sleep(1.1)
                status, h, _ = chat(b.port, p, f"user-{i}")
                assert status == 200
                seen.append(h["helicone-cache"])
                if seen[-1] == "HIT":
                    break
            assert seen[-1] == "HIT", seen
            for hx in (a, b):
                assert hx.proc.poll() is None  # nobody crashed
