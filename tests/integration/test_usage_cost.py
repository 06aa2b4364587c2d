"""Usage and cost of every response, seen through a real helix's access log.

The forward phase fills ``ctx.usage`` / ``ctx.cost``; the access log prints
them as ``tokens=<prompt>/<completion> cost=<usd>``, so these tests prove the
whole path: the mock's usage -> helix's decode -> the model table's prices
(packaged, and a ``models:`` config entry) -> the log line.
"""

import re
import time

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess

openai = pytest.importorskip("openai")

KEY = "sk-upstream-secret-1234"
MSGS = [{"role": "user", "content": "count my tokens please"}]
LINE = re.compile(
    r'helix\.access: \S+ "(?P<method>\S+) (?P<path>\S+)" (?P<status>\d+) \S+ '
    r"model=(?P<model>\S+) provider=(?P<provider>\S+) "
    r"tokens=(?P<tokens>\S+) cost=(?P<cost>\S+)"
)

# Prices the test relies on: packaged gpt-4o-mini and text-embedding-3-small, and a
# config-only model.
GPT_4O_MINI = (0.15, 0.60)
HOUSE = (1.0, 2.0)
EMBED_SMALL = 0.02


def _config(mock_url: str) -> str:
    return f"""
providers:
  - name: mock
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: {KEY}
    models: [gpt-4o-mini, text-embedding-3-small, {{name: house, id: house-model-v1}}]
  - name: oai
    type: openai
    base_url: {mock_url}/v1
    api_key: {KEY}
    models: [{{name: oai-mini, id: gpt-4o-mini}}]
models:
  - {{id: house-model-v1, input_per_mtok: {HOUSE[0]}, output_per_mtok: {HOUSE[1]}}}
observability:
  logging:
    access_log: true
"""


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "4", "--require-key", KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    with HelixProcess(_config(mock.url), workers=1) as proc:
        yield proc


@pytest.fixture
def client(helix):
    with openai.OpenAI(base_url=helix.base_url, api_key="k", max_retries=0, timeout=15) as c:
        yield c


def _access_line(helix: HelixProcess, since: int, timeout: float = 5.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in helix.output[since:]:
            m = LINE.search(line)
            if m:
                return m
        time.sleep(0.02)
    raise AssertionError(f"no access-log line after the request:\n{helix.log()}")


def _expected(prices, prompt: int, completion: int) -> float:
    return (prompt * prices[0] + completion * prices[1]) / 1_000_000


def test_non_stream_usage_cost_and_header(helix, client):
    since = len(helix.output)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS)
    r = raw.parse()
    u = r.usage
    assert u.prompt_tokens > 0 and u.completion_tokens > 0
    line = _access_line(helix, since)
    assert line["status"] == "200" and line["provider"] == "mock"
    assert line["tokens"] == f"{u.prompt_tokens}/{u.completion_tokens}"
    expected = _expected(GPT_4O_MINI, u.prompt_tokens, u.completion_tokens)
    assert float(line["cost"]) == pytest.approx(expected, abs=1e-8)
    assert float(raw.headers["x-helix-cost-usd"]) == pytest.approx(expected, rel=1e-6)


def test_stream_with_include_usage(helix, client):
    since = len(helix.output)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    u = chunks[-1].usage
    assert u is not None and u.completion_tokens > 0
    line = _access_line(helix, since)
    assert line["tokens"] == f"{u.prompt_tokens}/{u.completion_tokens}"
    expected = _expected(GPT_4O_MINI, u.prompt_tokens, u.completion_tokens)
    assert float(line["cost"]) == pytest.approx(expected, abs=1e-8)


def test_stream_without_include_usage_leaves_usage_unknown(helix, client, mock):
    mock.clear()
    since = len(helix.output)
    stream = client.chat.completions.create(model="oai-mini", messages=MSGS, stream=True)
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    line = _access_line(helix, since)
    assert line["provider"] == "oai" and line["status"] == "200"
    assert line["tokens"] == "-" and line["cost"] == "-"
    # Helix never asks the provider for usage the client did not ask for.
    [rec] = mock.requests()
    assert "stream_options" not in rec["body"]


def test_config_model_entry_prices_a_custom_model(helix, client):
    since = len(helix.output)
    r = client.chat.completions.create(model="house", messages=MSGS)
    line = _access_line(helix, since)
    assert line["model"] == "house-model-v1"
    expected = _expected(HOUSE, r.usage.prompt_tokens, r.usage.completion_tokens)
    assert float(line["cost"]) == pytest.approx(expected, abs=1e-8)


def test_embeddings_usage_and_cost(helix, client):
    since = len(helix.output)
    r = client.embeddings.create(model="text-embedding-3-small", input=["one two three", "four"])
    line = _access_line(helix, since)
    assert line["path"] == "/v1/embeddings"
    assert line["tokens"] == f"{r.usage.prompt_tokens}/0"  # embeddings complete nothing
    expected = r.usage.prompt_tokens * EMBED_SMALL / 1_000_000
    assert float(line["cost"]) == pytest.approx(expected, abs=1e-8)


def test_unknown_model_is_served_with_unknown_cost(helix, client):
    since = len(helix.output)
    raw = client.chat.completions.with_raw_response.create(
        model="mock/a-model-nobody-priced", messages=MSGS
    )
    assert raw.status_code == 200
    r = raw.parse()
    line = _access_line(helix, since)
    assert line["tokens"] == f"{r.usage.prompt_tokens}/{r.usage.completion_tokens}"
    assert line["cost"] == "-"
    assert "x-helix-cost-usd" not in raw.headers
