"""The official anthropic SDK -> a multi-worker helix (/v1/messages) -> every provider's mock.

Claude deployments (Anthropic, Claude on Vertex, Claude on Bedrock) are native: the body
reaches the provider as the client sent it (model resolved, plus Vertex's / Bedrock's
envelope), with the client's anthropic-beta header; answers, streams and Anthropic
errors come back as sent.  Every other provider is translated both ways.  Each test
asserts what the client got and what reached the upstream.
"""

from __future__ import annotations

import base64
import http.client
import json

import anthropic
import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess

KEY = "sk-upstream-messages-4242"
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5"
       "ErkJggg==")
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
TRANSLATED = ["gpt-4o-mini", "gemini-2.5-flash", "llama", "command-a"]
NATIVE = ["claude-sonnet-4-5", "vertex-claude", "bedrock-claude"]


def config(mock_url: str) -> str:
    return f"""
providers:
  - name: anthropic
    type: anthropic
    base_url: {mock_url}
    api_key: {KEY}
    models: [claude-sonnet-4-5, {{name: claude-alias, id: claude-sonnet-4-5-20250929}}]
  - name: overloaded
    type: anthropic
    base_url: {mock_url}
    api_key: {KEY}
    headers: {{x-mock-status: "529"}}
    models: [claude-overloaded]
  - name: oai
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: {KEY}
    models: [gpt-4o-mini]
  - name: oai-broken
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: {KEY}
    headers: {{x-mock-fail: reset-mid-stream}}
    models: [gpt-broken]
  - name: oai-limited
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: {KEY}
    headers: {{x-mock-status: "429", x-mock-retry-after: "7"}}
    models: [gpt-limited]
  - name: gem
    type: gemini
    base_url: {mock_url}
    api_key: {KEY}
    models: [gemini-2.5-flash]
  - name: cohere
    type: cohere
    base_url: {mock_url}
    api_key: {KEY}
    models: [{{name: command-a, id: command-a-03-2025}}]
  - name: aws
    type: bedrock
    region: us-east-1
    base_url: {mock_url}
    aws_access_key_id: AKIDEXAMPLE
    aws_secret_access_key: {KEY}
    models:
      - {{name: bedrock-claude, id: anthropic.claude-3-5-sonnet-20241022-v2:0}}
      - {{name: llama, id: meta.llama3-70b-instruct-v1:0}}
"""


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "4") as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock, tmp_path_factory):
    sa = _service_account(tmp_path_factory.mktemp("vertex"), mock)
    vertex = f"""
  - name: vertex
    type: vertex
    project: proj
    location: us-east5
    base_url: {mock.url}
    credentials_file: {sa}
    token_url: {mock.url}/token
    models: [{{name: vertex-claude, id: claude-sonnet-4-5@20250929}}]
"""
    with HelixProcess(config(mock.url) + vertex, workers=2) as proc:
        yield proc


def _service_account(tmp, mock) -> str:
    """A service-account file whose key the mock's token endpoint knows."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=5)
    conn.request("POST", "/token/keys", json.dumps({
        "client_email": "helix@proj.iam.gserviceaccount.com", "public_key": public.decode()}),
        {"content-type": "application/json"})
    assert conn.getresponse().status == 200
    conn.close()
    path = tmp / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "proj", "private_key_id": "k1",
        "private_key": pem, "client_email": "helix@proj.iam.gserviceaccount.com",
        "token_uri": f"{mock.url}/token",
    }))
    return str(path)


@pytest.fixture
def client(helix, mock):
    mock.clear()
    with anthropic.Anthropic(base_url=f"http://127.0.0.1:{helix.port}",
                             api_key="client-own-key-never-upstream", max_retries=0,
                             timeout=20) as c:
        yield c


def upstream(mock, path_part: str) -> list[dict]:
    return [r for r in mock.requests() if path_part in r["path"] and not
            r["path"].startswith("/token")]


def _no_client_key(reqs: list[dict]) -> None:
    for r in reqs:
        assert "client-own-key-never-upstream" not in json.dumps(r["headers"])


# --- native: the body as sent ------------------------------------------------------------


def _raw_post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "application/json",
                                                       **headers})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


CLAUDE_CODE_BODY = {
    "model": "claude-alias",
    "max_tokens": 32000,
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
            {"type": "text", "text": "Hello Claude", "cache_control": {"type": "ephemeral"}},
        ]},
    ],
    "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be precise.\u00e9", "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [{**WEATHER, "cache_control": {"type": "ephemeral"}},
              {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
    "metadata": {"user_id": "user_abc_account_def_session_123"},
    "thinking": {"type": "enabled", "budget_tokens": 4000},
    "temperature": 1,
    "stream": True,
    "future_field": {"kept": [1, 2.50, "x"]},
}


def test_claude_code_request_reaches_anthropic_byte_for_byte(helix, mock):
    mock.clear()
    raw = json.dumps(CLAUDE_CODE_BODY, indent=1, ensure_ascii=True).encode()
    headers = {"x-api-key": "client-own-key-never-upstream", "anthropic-version": "2023-06-01",
               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"}
    status, _, body = _raw_post(helix.port, "/v1/messages?beta=true", raw, headers)
    # The mock refuses unknown fields: future_field is refused by it, as Anthropic would.
    assert status == 400, body
    assert json.loads(body)["type"] == "error"
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert "future_field" in json.loads(body)["error"]["message"]  # Anthropic's text, as sent
    (req,) = upstream(mock, "/v1/messages")
    assert req["query"] == "beta=true"
    sent = base64.b64decode(req["body_b64"])
    expected = raw.replace(b'"model": "claude-alias"', b'"model": "claude-sonnet-4-5-20250929"')
    assert sent == expected  # byte for byte: only the model resolved
    h = req["headers"]
    assert h["anthropic-beta"] == "claude-code-20250219,interleaved-thinking-2025-05-14"
    assert h["anthropic-version"] == "2023-06-01"
    assert h["x-api-key"] == KEY
    _no_client_key([req])


def test_claude_code_stream_relayed_event_for_event(client, mock):
    body = {k: v for k, v in CLAUDE_CODE_BODY.items()
            if k not in ("future_field", "temperature", "stream")}
    with client.messages.stream(
        **body,
        extra_headers={"anthropic-beta": "claude-code-20250219"},
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    # Claude Code asks for thinking: the (signed) thinking block comes first, then the text
    assert final.content[0].type == "thinking" and final.content[0].signature
    assert final.content[1].text.startswith("mock reply to: <system-reminder>ctx</system-")
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    assert events[0] == "message_start" and events[-1] == "message_stop"
    (req,) = upstream(mock, "/v1/messages")
    sent = req["body"]
    assert sent["system"] == body["system"] and sent["tools"] == body["tools"]
    assert sent["thinking"] == body["thinking"] and sent["metadata"] == body["metadata"]
    assert sent["messages"] == body["messages"]


@pytest.mark.parametrize("model", NATIVE)
def test_native_text_and_usage(client, mock, model):
    msg = client.messages.create(model=model, max_tokens=50, system="be brief",
                                 messages=[{"role": "user", "content": "Hello native"}])
    assert msg.content[0].text == "mock reply to: Hello native"
    if model == "claude-sonnet-4-5":
        assert msg._request_id and msg._request_id.startswith("req_")
    assert msg.stop_reason == "end_turn" and msg.usage.input_tokens > 0
    reqs = [r for r in mock.requests() if not r["path"].startswith("/token")]
    (req,) = reqs
    _no_client_key(reqs)
    if model == "vertex-claude":
        assert req["path"].endswith("/publishers/anthropic/models/claude-sonnet-4-5@20250929"
                                    ":rawPredict")
        assert req["body"]["anthropic_version"] == "vertex-2023-10-16"
        assert "model" not in req["body"]
    elif model == "bedrock-claude":
        assert req["path"].endswith("/invoke")
        assert req["body"]["anthropic_version"] == "bedrock-2023-05-31"
        assert "model" not in req["body"] and req["headers"]["authorization"].startswith(
            "AWS4-HMAC-SHA256")
    else:
        assert req["path"] == "/v1/messages" and req["body"]["model"] == model


@pytest.mark.parametrize("model", NATIVE)
def test_native_stream_and_beta_header(client, mock, model):
    with client.messages.stream(model=model, max_tokens=50,
                                messages=[{"role": "user", "content": "Hello stream"}],
                                extra_headers={"anthropic-beta": "beta-one,beta-two"}) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "mock reply to: Hello stream" and final.usage.output_tokens > 0
    (req,) = [r for r in mock.requests() if not r["path"].startswith("/token")]
    if model == "bedrock-claude":
        assert req["path"].endswith("/invoke-with-response-stream")
        assert req["body"]["anthropic_beta"] == ["beta-one", "beta-two"]
    else:
        assert req["headers"]["anthropic-beta"] == "beta-one,beta-two"


# --- translated: every other provider ------------------------------------------------------


@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_text_system_blocks_and_image(client, mock, model):
    msg = client.messages.create(
        model=model, max_tokens=60,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}},
            {"type": "text", "text": "Describe this"},
        ]}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text" and "Describe this" in msg.content[0].text
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg.id.startswith("msg_")
    _no_client_key(mock.requests())


@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_stream_events(client, model):
    with client.messages.stream(model=model, max_tokens=60,
                                messages=[{"role": "user", "content": "Hello translated"}]) as s:
        kinds = [e.type for e in s]
        final = s.get_final_message()
    assert final.content[0].text == "mock reply to: Hello translated"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", TRANSLATED + NATIVE)
def test_tool_use_round_trip(client, mock, model):
    first = client.messages.create(
        model=model, max_tokens=200, tools=[WEATHER],
        messages=[{"role": "user", "content": "call tool please"}],
    )
    assert first.stop_reason == "tool_use"
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather" and set(call.input) >= {"city", "days"}
    second = client.messages.create(
        model=model, max_tokens=200, tools=[WEATHER],
        messages=[
            {"role": "user", "content": "call tool please"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                              for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                          "content": "sunny, 21C"}]},
        ],
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"


@pytest.mark.parametrize("model", TRANSLATED)
def test_streamed_tool_input(client, model):
    with client.messages.stream(model=model, max_tokens=200, tools=[WEATHER],
                                messages=[{"role": "user", "content": "call tool now"}]) as s:
        deltas = [e for e in s if e.type == "input_json"]
        final = s.get_final_message()
    (call,) = [b for b in final.content if b.type == "tool_use"]
    assert call.name == "get_weather" and isinstance(call.input, dict) and call.input
    assert deltas  # the arguments arrived as input_json_delta
    assert final.stop_reason == "tool_use"


def test_translated_request_reaches_openai_as_valid_chat(client, mock):
    client.messages.create(
        model="gpt-4o-mini", max_tokens=77, stop_sequences=["END"],
        extra_body={"temperature": 0.5, "top_k": 5}, metadata={"user_id": "u-1"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        system=[{"type": "text", "text": "sys one"}, {"type": "text", "text": "sys two"}],
        tools=[WEATHER], tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "Hello"}],
    )
    (req,) = upstream(mock, "/chat/completions")
    body = req["body"]
    assert body["model"] == "gpt-4o-mini" and body["max_tokens"] == 77
    assert body["stop"] == ["END"] and body["temperature"] == 0.5 and body["user"] == "u-1"
    assert body["messages"][0] == {"role": "system", "content": "sys one\n\nsys two"}
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert "top_k" not in body and "thinking" not in body and "metadata" not in body


def test_max_tokens_stop_reason(client):
    msg = client.messages.create(model="gpt-4o-mini", max_tokens=2,
                                 messages=[{"role": "user", "content": "a long answer please"}])
    assert msg.stop_reason == "max_tokens"


def test_server_tool_to_non_claude_is_a_clear_400(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.messages.create(
            model="gpt-4o-mini", max_tokens=50,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
            messages=[{"role": "user", "content": "hi"}],
        )
    assert ei.value.body["error"]["type"] == "invalid_request_error"
    assert "web_search_20250305" in ei.value.body["error"]["message"]


# --- errors in Anthropic's shape -------------------------------------------------------------


def test_unknown_model_is_not_found_error(client):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.messages.create(model="no-such-model", max_tokens=5,
                               messages=[{"role": "user", "content": "hi"}])
    assert ei.value.body["type"] == "error"
    assert ei.value.body["error"]["type"] == "not_found_error"


def test_missing_max_tokens_is_invalid_request(helix):
    status, _, body = _raw_post(helix.port, "/v1/messages",
                                b'{"model":"gpt-4o-mini","messages":[]}', {})
    assert status == 400
    doc = json.loads(body)
    assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in doc["error"]["message"]


def test_anthropic_error_passes_through_verbatim(client):
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.messages.create(model="claude-overloaded", max_tokens=5,
                               messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 529
    assert ei.value.body["error"]["type"] == "overloaded_error"


def test_openai_rate_limit_becomes_rate_limit_error_with_retry_after(client):
    with pytest.raises(anthropic.RateLimitError) as ei:
        client.messages.create(model="gpt-limited", max_tokens=5,
                               messages=[{"role": "user", "content": "hi"}])
    assert ei.value.body["error"]["type"] == "rate_limit_error"
    assert ei.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(("model", "etype"), [("claude-sonnet-4-5", "overloaded_error"),
                                             ("gpt-broken", "api_error")])
def test_mid_stream_error_is_raised_by_the_sdk(client, model, etype):
    """A stream that fails after it started ends with an ``error`` event the SDK raises:
    Anthropic's own event relayed as sent, or Helix's for a provider that broke off."""
    messages = [{"role": "user", "content": "mock stream error please"}]
    with (pytest.raises(anthropic.APIStatusError) as ei,
          client.messages.stream(model=model, max_tokens=50, messages=messages) as s):
        for _ in s:
            pass
    assert ei.value.body["error"]["type"] == etype


# --- count_tokens and the model list ---------------------------------------------------------


@pytest.mark.parametrize("model", NATIVE)
def test_count_tokens_from_the_provider(helix, client, mock, model):
    n = client.messages.count_tokens(model=model,
                                     messages=[{"role": "user", "content": "one two three"}])
    assert n.input_tokens >= 3
    reqs = [r for r in mock.requests() if not r["path"].startswith("/token")]
    (req,) = reqs
    assert "count" in req["path"]


def test_count_tokens_estimate_is_marked(helix, client, mock):
    raw = client.messages.with_raw_response.count_tokens(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 400}])
    assert raw.headers["x-helix-token-count"] == "estimate"
    assert raw.parse().input_tokens == 101  # 400 characters / 4, and the role's "user" / 4
    assert upstream(mock, "/chat") == []


def test_models_list_in_both_shapes(helix, client):
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert "claude-sonnet-4-5" in ids and "gpt-4o-mini" in ids
    assert all(m.type == "model" and m.display_name for m in page.data)
    conn = http.client.HTTPConnection("127.0.0.1", helix.port, timeout=10)
    conn.request("GET", "/v1/models")
    openai_shape = json.loads(conn.getresponse().read())
    conn.close()
    assert openai_shape["object"] == "list" and openai_shape["data"][0]["object"] == "model"
