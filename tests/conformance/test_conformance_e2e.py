"""Raw HTTP through a running two-worker helix to the mock: the bytes a client receives from
every translating provider validate against OpenAI's schema, field for field.

Plain ``http.client`` on purpose: an SDK would drop fields it does not know, and those are
exactly what a stricter typed client chokes on.
"""

from __future__ import annotations

import http.client
import json

import pytest

from helix.mock import MockProcess
from tests.conformance.harness import service_account
from tests.conformance.validate import (
    check_completion,
    check_embeddings,
    check_error,
    check_stream,
)
from tests.helpers import HelixProcess

pytest.importorskip("cryptography")

MODELS = {
    "anthropic": ["claude-sonnet-4-6"],
    "gemini": ["gemini-2.5-flash", "{name: gem-embed, id: text-embedding-004}"],
    "vertex": ["{name: vx-gemini, id: gemini-2.5-pro}", "{name: vx-claude, id: claude-opus-4-6}",
               "{name: vx-embed, id: text-embedding-005}"],
    "bedrock": ["anthropic.claude-sonnet-4-6", "amazon.titan-embed-text-v2:0"],
    "cohere": ["command-a-03-2025", "embed-v4.0"],
}
CHAT = ["claude-sonnet-4-6", "gemini-2.5-flash", "vx-gemini", "vx-claude",
        "anthropic.claude-sonnet-4-6", "command-a-03-2025"]
EMBED = ["gem-embed", "vx-embed", "amazon.titan-embed-text-v2:0", "embed-v4.0"]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "3") as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    extra = {
        "vertex": f"project: proj-x\n    location: us-central1\n    token_url: {mock.url}/token\n"
                  f"    credentials_json: {json.dumps(service_account())}",
        "bedrock": "region: us-east-1\n    aws_access_key_id: AKIDEXAMPLE\n"
                   "    aws_secret_access_key: secret",
    }
    providers = "".join(f"""
  - name: {ptype}
    type: {ptype}
    api_key: k
    base_url: {mock.url}
    models: [{", ".join(models)}]
    {extra.get(ptype, "")}""" for ptype, models in MODELS.items())
    with HelixProcess("providers:" + providers, workers=2) as proc:
        yield proc


def post(helix, path: str, doc: dict, raw: bool = False) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", helix.port, timeout=15)
    try:
        conn.request("POST", path, json.dumps(doc), {"content-type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body if raw else json.loads(body)
    finally:
        conn.close()


@pytest.mark.parametrize("model", CHAT)
def test_chat_bytes_conform(helix, model):
    for doc in (
        {"messages": [{"role": "user", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "find it"}], "tools": [TOOL],
         "tool_choice": {"type": "function", "function": {"name": "lookup"}}},
    ):
        status, body = post(helix, "/v1/chat/completions", {"model": model, **doc})
        assert status == 200, body
        assert check_completion(body) == [], body


FILM = {"type": "object", "properties": {"title": {"type": "string"}},
        "required": ["title"], "additionalProperties": False}


@pytest.mark.parametrize("model", CHAT)
def test_stream_bytes_conform(helix, model):
    """Every chunk as OpenAI sends it (service_tier, system_fingerprint, ...), with reasoning
    and structured output where the model has them."""
    docs = [{"messages": [{"role": "user", "content": "hello"}]},
            {"messages": [{"role": "user", "content": "json"}], "response_format": {
                "type": "json_schema", "json_schema": {"name": "film", "schema": FILM}}}]
    if model != "command-a-03-2025":  # Cohere's model does not reason
        docs.append({"messages": [{"role": "user", "content": "think"}],
                     "reasoning_effort": "low"})
    for doc in docs:
        req = {"model": model, **doc, "stream": True, "stream_options": {"include_usage": True}}
        status, body = post(helix, "/v1/chat/completions", req, raw=True)
        assert status == 200, body
        assert check_stream(body, include_usage=True) == [], body


@pytest.mark.parametrize("model", EMBED)
def test_embedding_bytes_conform(helix, model):
    status, body = post(helix, "/v1/embeddings", {"model": model, "input": "hello"})
    assert status == 200, body
    assert check_embeddings(body) == []


def test_error_bytes_conform(helix):
    hello = [{"role": "user", "content": "x"}]
    status, body = post(helix, "/v1/chat/completions", {"model": "nope", "messages": hello})
    assert status == 404 and check_error(body) == []
    status, body = post(helix, "/v1/chat/completions",
                        {"model": "claude-sonnet-4-6", "messages": hello, "n": 3})
    assert status == 400 and check_error(body) == []
    # Anthropic has no embeddings: a clear 400.
    status, body = post(helix, "/v1/embeddings", {"model": "claude-sonnet-4-6", "input": "x"})
    assert status == 400 and check_error(body) == []
