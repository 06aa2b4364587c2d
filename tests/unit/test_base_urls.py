"""Base URLs written with the provider's API version (issue 13): every form reaches the same path.

Each case builds the deployment the way a running Helix does (config -> ModelRegistry ->
the adapter's request) and checks the request target, so a doubled ``/v1beta/v1beta`` or a
missing ``/v1`` shows up here, per provider type.
"""

from __future__ import annotations

import pytest

from helix import config as cfgmod
from helix.providers.catalog import normalize_base_url
from helix.routing.registry import ModelRegistry
from helix.schema.openai import chat_request_decoder

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
EXTRA = {
    "bedrock": "region: us-east-1\n    aws_access_key_id: AKIDEXAMPLE\n"
    "    aws_secret_access_key: secret",
    "azure": "api_version: '2024-10-21'",
}


def target(tmp_path, ptype: str, base_url: str, model: str = "m") -> tuple[str, str]:
    extra = EXTRA.get(ptype, "")
    text = f"""
providers:
  - name: p
    type: {ptype}
    api_key: k
    base_url: "{base_url}"
    models: [{model}]
    {extra}
"""
    path = tmp_path / "helix.yaml"
    path.write_text(text)
    cfg = cfgmod.load_file(str(path), {})
    dep = ModelRegistry(cfg).resolve(model)[0]
    up = dep.adapter.chat_request(dep, chat_request_decoder.decode(BODY), BODY)
    return f"{dep.origin.scheme}://{dep.origin.host}:{dep.origin.port}", up.target.decode()


GEMINI = "/v1beta/models/gemini-2.5-flash:generateContent"


@pytest.mark.parametrize(
    ("ptype", "written", "model", "path"),
    [
        ("gemini", "https://generativelanguage.googleapis.com", "gemini-2.5-flash", GEMINI),
        ("gemini", "https://generativelanguage.googleapis.com/v1beta", "gemini-2.5-flash", GEMINI),
        ("gemini", "https://generativelanguage.googleapis.com/v1beta/", "gemini-2.5-flash", GEMINI),
        ("gemini", "https://generativelanguage.googleapis.com/v1", "gemini-2.5-flash", GEMINI),
        # Google's OpenAI-compatibility docs write this one
        ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai/", "gemini-2.5-flash",
         GEMINI),
        ("anthropic", "https://api.anthropic.com", "claude-x", "/v1/messages"),
        ("anthropic", "https://api.anthropic.com/v1", "claude-x", "/v1/messages"),
        ("anthropic", "https://api.anthropic.com/v1/", "claude-x", "/v1/messages"),
        ("anthropic", "https://proxy.example/anthropic/v1", "claude-x", "/anthropic/v1/messages"),
        ("cohere", "https://api.cohere.com", "command-a", "/v2/chat"),
        ("cohere", "https://api.cohere.com/v2", "command-a", "/v2/chat"),
        ("cohere", "https://api.cohere.com/v1/", "command-a", "/v2/chat"),
        ("cohere", "https://api.cohere.ai/compatibility/v1", "command-a", "/v2/chat"),
        ("azure", "https://x.openai.azure.com", "dep1",
         "/openai/deployments/dep1/chat/completions?api-version=2024-10-21"),
        ("azure", "https://x.openai.azure.com/openai/", "dep1",
         "/openai/deployments/dep1/chat/completions?api-version=2024-10-21"),
        ("azure", "https://x.openai.azure.com/openai/v1", "dep1",
         "/openai/deployments/dep1/chat/completions?api-version=2024-10-21"),
        ("ollama", "http://127.0.0.1:11434", "llama3", "/v1/chat/completions"),
        ("ollama", "http://127.0.0.1:11434/", "llama3", "/v1/chat/completions"),
        ("ollama", "http://127.0.0.1:11434/v1", "llama3", "/v1/chat/completions"),
        ("ollama", "http://127.0.0.1:11434/api", "llama3", "/v1/chat/completions"),
        ("vllm", "http://127.0.0.1:8000", "m", "/v1/chat/completions"),
        ("vllm", "http://127.0.0.1:8000/v1", "m", "/v1/chat/completions"),
        ("openai", "https://api.openai.com", "gpt-4o", "/v1/chat/completions"),
        ("openai", "https://api.openai.com/v1/", "gpt-4o", "/v1/chat/completions"),
        ("groq", "https://api.groq.com", "m", "/openai/v1/chat/completions"),
        # A proxy at its root is taken as written: Helix cannot know its layout.
        ("openai", "https://proxy.example", "gpt-4o", "/chat/completions"),
        ("openai_compatible", "http://127.0.0.1:9000", "m", "/chat/completions"),
        ("bedrock", "http://127.0.0.1:9000/", "m", "/model/m/converse"),
    ],
)
def test_every_written_form_reaches_the_api_path(tmp_path, ptype, written, model, path):
    _, got = target(tmp_path, ptype, written, model)
    assert got == path


def test_vertex_version_suffix():
    for written in (
        "https://us-central1-aiplatform.googleapis.com",
        "https://us-central1-aiplatform.googleapis.com/v1",
        "https://us-central1-aiplatform.googleapis.com/v1/",
        "https://us-central1-aiplatform.googleapis.com/v1beta1",
    ):
        assert normalize_base_url("vertex", written) == "https://us-central1-aiplatform.googleapis.com"


def test_origin_and_port_are_kept():
    assert normalize_base_url("gemini", "http://127.0.0.1:8123/v1beta/") == "http://127.0.0.1:8123"
    assert normalize_base_url("anthropic", "http://[::1]:9/v1") == "http://[::1]:9"
    # only a trailing version is a suffix; the same letters elsewhere are the user's path
    assert normalize_base_url("anthropic", "https://h/v1/proxy") == "https://h/v1/proxy"
