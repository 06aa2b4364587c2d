"""Prompt-cache writes are priced at the cache-write price, reads at the cache-read price: the
openai SDK -> two-worker helix -> the Anthropic mock's prompt cache (issue 13).

Before, Anthropic's cache_creation_input_tokens were billed at the input price; now the
translation carries them as Usage.cache_write and the registry prices them (claude-sonnet-4-6:
input 3.00, write 3.75, read 0.30 per MTok).  The second request reads back exactly the prefix
the first one wrote, which is how the test knows the written count from the client side.
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
        return r.usage, float(raw.headers["x-helix-cost-usd"])

    first, first_cost = ask("Where is it?")
    second, second_cost = ask("How deep is it?")
    assert first.prompt_tokens_details.cached_tokens == 0
    read = second.prompt_tokens_details.cached_tokens
    assert read > 0  # the prefix the first request wrote, read back
    written = read
    expected = ((first.prompt_tokens - written) * info.input_per_mtok
                + written * info.cache_write_per_mtok
                + first.completion_tokens * info.output_per_mtok) / 1e6
    assert first_cost == pytest.approx(expected, rel=1e-6)
    at_input_price = (first.prompt_tokens * info.input_per_mtok
                      + first.completion_tokens * info.output_per_mtok) / 1e6
    assert first_cost > at_input_price  # the old arithmetic under-charged writes
    expected = ((second.prompt_tokens - read) * info.input_per_mtok
                + read * info.cached_input_per_mtok
                + second.completion_tokens * info.output_per_mtok) / 1e6
    assert second_cost == pytest.approx(expected, rel=1e-6)
