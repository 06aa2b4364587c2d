"""Features seen through each other: retries in /metrics, balancer health in /status,
the rate-limit backend in /status."""

import json

import openai

from helix.mock import MockProcess
from tests.helpers import HelixProcess, free_port, http_get

MSGS = [{"role": "user", "content": "wired"}]


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
observability:
  metrics: {{enabled: true}}
"""


def test_retries_health_and_limits_are_visible():
    with MockProcess() as mock, HelixProcess(config(mock.url), workers=2) as helix:
        with openai.OpenAI(base_url=helix.base_url, api_key="x", max_retries=0) as c:
            for _ in range(6):
                r = c.chat.completions.with_raw_response.create(model="m", messages=MSGS)
                assert r.parse().choices[0].message.content == "mock reply to: wired"
                assert r.headers["x-helix-provider"] == "live"
        status, body = http_get(helix.port, "/metrics")
        assert status == 200
        text = body.decode()
        retries = [
            line for line in text.splitlines()
            if line.startswith("helix_resilience_retries_total{")
        ]
        assert retries, text
        assert sum(float(line.rsplit(" ", 1)[1]) for line in retries) >= 1
        assert 'helix_deployment_healthy{provider="live",model="m"} 1' in text
        status, body = http_get(helix.port, "/status")
        doc = json.loads(body)
        health = {d["provider"]: d["health"] for d in doc["deployments"]}
        assert health["live"]["state"] == "healthy"
        assert health["dead"]["state"] in ("cooling", "open")
        assert doc["rate_limits"]["backend"] == "local"
