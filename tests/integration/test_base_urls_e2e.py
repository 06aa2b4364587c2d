"""Base URLs written with their API version, through a running helix to the mock (issue 13).

Gemini with ``/v1beta`` (and Google's OpenAI-compatibility ``/v1beta/openai/``), Anthropic with
``/v1``, Cohere with ``/v2``, Ollama at its native address without ``/v1``: each answers, and the
mock saw the one path the provider serves (no ``/v1beta/v1beta``).
"""

from __future__ import annotations

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess

openai = pytest.importorskip("openai")

KEY = "upstream-secret-4321"


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--require-key", KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    def provider(name, ptype, suffix, model):
        return f"""
  - name: {name}
    type: {ptype}
    base_url: {mock.url}{suffix}
    api_key: {KEY}
    models: [{model}]"""

    config = "providers:" + "".join(
        [
            provider("gem", "gemini", "/v1beta", "gemini-2.5-flash"),
            provider("gem-compat", "gemini", "/v1beta/openai/", "gemini-2.5-flash-lite"),
            provider("claude", "anthropic", "/v1", "claude-haiku-4-5"),
            provider("co", "cohere", "/v2/", "command-a-03-2025"),
            provider("local", "ollama", "", "llama3.2"),
        ]
    )
    with HelixProcess(config, workers=2) as proc:
        yield proc


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent"),
        ("gemini-2.5-flash-lite", "/v1beta/models/gemini-2.5-flash-lite:generateContent"),
        ("claude-haiku-4-5", "/v1/messages"),
        ("command-a-03-2025", "/v2/chat"),
        ("llama3.2", "/v1/chat/completions"),
    ],
)
def test_versioned_base_urls_reach_the_provider_path(helix, mock, model, path):
    mock.clear()
    with openai.OpenAI(base_url=helix.base_url, api_key="x", max_retries=0, timeout=15) as client:
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello there"}]
        )
    assert r.choices[0].message.content.startswith("mock reply to: hello there")
    assert [q["path"] for q in mock.requests()] == [path]
