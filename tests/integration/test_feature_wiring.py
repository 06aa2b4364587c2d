"""Features seen through each other: retries in /metrics, balancer health in /status,
the rate-limit backend in /status."""

import json

import openai

from helix.mock import MockProcess
from tests.helpers import HelixProcess, free_port, http_get, metrics_when


def config(mock_url: str) -> str:
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connect refused
    return f"""
providers:
  - {{name: dead, type: openai_compatible, base_url: "{down}", api_key: k, models: [m]}}
  - {{name: live, type: openai_compatible, base_url: "{mock_url}/v1", api_key: k, models: [m]}}
load_balancing: {{strategy: round_robin}}
resilience:
  retries: {{max_attempts: 3, initial_delay: 1ms, max_delay: 5ms}}
rate_limits:
  global: {{requests_per_minute: 100000}}
caching: {{backend: memory}}
observability:
  metrics: {{enabled: true}}
"""


def test_retries_health_and_limits_are_visible():
    with MockProcess() as mock, HelixProcess(config(mock.url), workers=2) as helix:
        with openai.OpenAI(base_url=helix.base_url, api_key="x", max_retries=0) as c:
            for i in [0, 1, 2, 3, 4, 5, 0, 0, 0, 0]:  # six distinct prompts, then repeats
                msgs = [{"role": "user", "content": f"wired {i}"}]
                r = c.chat.completions.with_raw_response.create(model="m", messages=msgs)
                assert r.parse().choices[0].message.content == f"mock reply to: wired {i}"
                if r.headers["helicone-cache"] == "MISS":
                    assert r.headers["x-helix-provider"] == "live"
        body = metrics_when(helix.port, lambda t: "helix_resilience_retries_total{" in t)
        text = body.decode()
        retries = [
            line for line in text.splitlines()
            if line.startswith("helix_resilience_retries_total{")
        ]
        assert retries, text
        assert sum(float(line.rsplit(" ", 1)[1]) for line in retries) >= 1
        assert 'helix_deployment_healthy{provider="live",model="m"} 1' in text
        _, body = http_get(helix.port, "/status")
        doc = json.loads(body)
        health = {d["provider"]: d["health"] for d in doc["deployments"]}
        assert health["live"]["state"] == "healthy"
        assert health["dead"]["state"] in ("cooling", "open")
        assert doc["rate_limits"]["backend"] == "local"
        assert doc["cache"]["backend"] == "memory"
        lookups = {
            line.split('result="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("helix_cache_lookups_total{")
        }
        # Per-worker memory caches: the repeats miss at most once more (on the other worker).
        assert lookups.get("hit", 0) + lookups.get("miss", 0) == 10
        assert 6 <= lookups.get("miss", 0) <= 7
