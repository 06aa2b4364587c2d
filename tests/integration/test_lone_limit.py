"""A lone global request limit (the one-call admission, helix._fast.gate) through a real
2-worker helix: exact across workers, the 429 in each client's dialect with Retry-After and
x-ratelimit-* headers, counted in /metrics."""

from __future__ import annotations

import concurrent.futures

import anthropic
import openai
import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, metrics_when

LIMIT = 6


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "3") as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    config = f"""
providers:
  - {{name: oai, type: openai_compatible, base_url: "{mock.url}/v1", api_key: sk-up,
     models: [gpt-4o-mini]}}
  - {{name: claude, type: anthropic, base_url: "{mock.url}", api_key: sk-up,
     models: [claude-sonnet-4-5]}}
rate_limits:
  global: {{requests_per_hour: {LIMIT}}}
observability:
  metrics: {{enabled: true}}
"""
    with HelixProcess(config, workers=2) as proc:
        yield proc


def test_exact_across_workers_and_refused_in_each_dialect(helix):
    oai = openai.OpenAI(base_url=helix.base_url, api_key="x", max_retries=0,
                        timeout=20)

    def one(_):
        try:
            raw = oai.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            return 200, raw.headers, raw.parse()
        except openai.RateLimitError as exc:
            return 429, exc.response.headers, exc

    with concurrent.futures.ThreadPoolExecutor(3 * LIMIT) as pool:
        results = list(pool.map(one, range(3 * LIMIT)))
    statuses = [r[0] for r in results]
    assert statuses.count(200) == LIMIT, statuses
    ok = next(r for r in results if r[0] == 200)
    assert ok[2].choices[0].message.content.startswith("mock reply")
    assert ok[1]["x-ratelimit-limit-requests"] == str(LIMIT)
    assert int(ok[1]["x-ratelimit-remaining-requests"]) < LIMIT
    _, headers, exc = next(r for r in results if r[0] == 429)
    assert exc.body["type"] == "rate_limit_error" and exc.body["code"] == "rate_limit_exceeded"
    assert "Rate limit reached (global)" in exc.body["message"]
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert len(helix.worker_pids()) == 2

    claude = anthropic.Anthropic(base_url=helix.base_url.removesuffix("/v1"), api_key="x",
                                 max_retries=0, timeout=20)
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=16,
                               messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert int(info.value.response.headers["retry-after"]) >= 1

    want = f'helix_ratelimit_rejected_requests_total{{scope="global"}} {2 * LIMIT + 1}'
    body = metrics_when(helix.port, lambda text: want + ".0" in text or want in text)
    assert want in body.decode(), body.decode()[-3000:]
