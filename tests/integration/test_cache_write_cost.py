"""Prompt-cache writes are priced at the cache-write price, reads at the cache-read price: the
openai SDK -> two-worker helix -> the Anthropic mock's prompt cache (issue 13).

Before, Anthropic's cache_creation_input_tokens were folded into prompt_tokens and billed at
the input price; now the translation reports them as prompt_tokens_details.cache_write_tokens
and the registry prices them (claude-sonnet-4-6: input 3.00, write 3.75, read 0.30 per MTok).
"""

from __future__ import annotations

import pytest

from helix.mock import MockProcess
from helix.routing.models import lookup
from tests.helpers import HelixProcess

openai = pytest.importorskip("openai")

KEY = "sk-ant-upstream-secret-2468"


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--require-key", KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    config = f"""
providers:
  - name: claude
    type: anthropic
    base_url: {mock.url}
    api_key: {KEY}
    models: [claude-sonnet-4-6]
"""
    with HelixProcess(config, workers=2) as proc:
        yield proc


def test_cache_write_then_read_are_priced_apart(helix, mock):
    info = lookup("claude-sonnet-4-6", "anthropic")
    system = {"role": "system", "content": [{
        "type": "text", "text": "You answer questions about the port of " + mock.url,
        "cache_control": {"type": "ephemeral"}}]}

    def ask(question):
        with openai.OpenAI(base_url=helix.base_url, api_key="x", max_retries=0,
                           timeout=15) as client:
            raw = client.chat.completions.with_raw_response.create(
                model="claude-sonnet-4-6",
                messages=[system, {"role": "user", "content": question}])
        r = raw.parse()
        details = r.usage.prompt_tokens_details.model_dump()
        return r.usage, details, float(raw.headers["x-helix-cost-usd"])

    usage, details, cost = ask("Where is it?")
    written = details["cache_write_tokens"]
    assert written > 0 and details["cached_tokens"] == 0
    fresh = usage.prompt_tokens - written
    expected = (fresh * info.input_per_mtok + written * info.cache_write_per_mtok
                + usage.completion_tokens * info.output_per_mtok) / 1e6
    assert cost == pytest.approx(expected, rel=1e-6)
    at_input_price = (usage.prompt_tokens * info.input_per_mtok
                      + usage.completion_tokens * info.output_per_mtok) / 1e6
    assert cost > at_input_price  # the old arithmetic under-charged writes

    usage, details, cost = ask("How deep is it?")
    read = details["cached_tokens"]
    assert read == written and not details.get("cache_write_tokens")
    expected = ((usage.prompt_tokens - read) * info.input_per_mtok
                + read * info.cached_input_per_mtok
                + usage.completion_tokens * info.output_per_mtok) / 1e6
    assert cost == pytest.approx(expected, rel=1e-6)
