"""The official openai SDK -> multi-worker helix -> the mock provider (Anthropic wire format).

Error passthrough: an Anthropic 529 ``overloaded_error`` reaches the client as
HTTP 529 (the provider's own status is kept), OpenAI-shaped, with
``code: "overloaded_error"``; the openai SDK raises it as an InternalServerError.
"""

import json

import openai
import pytest

from helix.mock import MockProcess
from helix.providers.anthropic import default_max_tokens
from tests.helpers import HelixProcess

KEY = "sk-ant-upstream-secret-5678"
MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello Claude!"}]
EXPECTED = "mock reply to: Hello Claude!"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def config(mock_url: str) -> str:
    return f"""
providers:
  - name: anthropic
    type: anthropic
    base_url: {mock_url}
    api_key: {KEY}
    models: [claude-3-5-sonnet]
  - name: pinned
    type: anthropic
    base_url: {mock_url}
    api_key: {KEY}
    anthropic_version: "2099-01-01"
    models: [{{name: claude-alias, id: claude-3-5-sonnet-20241022}}]
  - name: overloaded
    type: anthropic
    base_url: {mock_url}
    api_key: {KEY}
    headers: {{x-mock-status: "529"}}
  - name: streamy
    type: anthropic
    base_url: {mock_url}
    api_key: {KEY}
    headers: {{x-mock-chunk-interval-ms: "40"}}
  - name: limited
    type: anthropic
    base_url: {mock_url}
    api_key: {KEY}
    headers: {{x-mock-status: "429", x-mock-retry-after: "7"}}
"""


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "4", "--require-key", KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    with HelixProcess(config(mock.url), workers=2) as proc:
        yield proc


@pytest.fixture
def client(helix, mock):
    mock.clear()
    with openai.OpenAI(
        base_url=helix.base_url, api_key="client-own-key-must-not-leak", max_retries=0, timeout=15
    ) as c:
        yield c


def test_chat_non_stream(client, mock):
    r = client.chat.completions.create(model="claude-3-5-sonnet", messages=MSGS, user="u-42")
    assert r.choices[0].message.content == EXPECTED
    assert r.choices[0].finish_reason == "stop"
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-msg_")
    assert r.model == "claude-3-5-sonnet"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    [rec] = mock.requests()
    assert rec["path"] == "/v1/messages"
    assert rec["headers"]["x-api-key"] == KEY
    assert rec["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in rec["headers"]
    assert "client-own-key-must-not-leak" not in json.dumps(rec)
    assert rec["body"] == {
        "model": "claude-3-5-sonnet",
        "max_tokens": default_max_tokens("claude-3-5-sonnet"),  # model registry, else 4096
        "system": "be brief",
        "messages": [{"role": "user", "content": "Hello Claude!"}],
        "metadata": {"user_id": "u-42"},
    }


def test_alias_version_and_params(client, mock):
    r = client.chat.completions.create(
        model="claude-alias",
        messages=MSGS,
        max_completion_tokens=3,
        stop=["never"],
        temperature=0.5,
        seed=1,
        extra_body={"top_k": 5},
    )
    assert r.choices[0].message.content == "mock reply to:"  # cut at 3 "tokens" (words)
    assert r.choices[0].finish_reason == "length"
    [rec] = mock.requests()
    assert rec["headers"]["anthropic-version"] == "2099-01-01"
    body = rec["body"]
    assert body["model"] == "claude-3-5-sonnet-20241022"
    assert (body["max_tokens"], body["stop_sequences"], body["temperature"]) == (3, ["never"], 0.5)
    assert "seed" not in body and body["top_k"] == 5


def test_stream_reassembles_with_usage(client, mock):
    stream = client.chat.completions.create(
        model="claude-3-5-sonnet",
        messages=MSGS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-msg_")
    [rec] = mock.requests()
    assert rec["body"]["stream"] is True and "stream_options" not in rec["body"]


def test_stream_without_usage_has_no_usage_chunk(client):
    chunks = list(
        client.chat.completions.create(model="claude-3-5-sonnet", messages=MSGS, stream=True)
    )
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def _tool_round_trip(client, mock, stream: bool):
    msgs = [{"role": "user", "content": "Please call tool get_weather for Paris"}]
    kwargs = {"model": "claude-3-5-sonnet", "tools": [WEATHER], "tool_choice": "auto"}
    if stream:
        chunks = list(client.chat.completions.create(messages=msgs, stream=True, **kwargs))
        deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        assert deltas[0].id and deltas[0].function.name == "get_weather"
        assert {d.index for d in deltas} == {0}
        call_id, name = deltas[0].id, deltas[0].function.name
        arguments = "".join(d.function.arguments or "" for d in deltas)
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
    else:
        r = client.chat.completions.create(messages=msgs, **kwargs)
        assert r.choices[0].finish_reason == "tool_calls"
        assert r.choices[0].message.content is None
        [call] = r.choices[0].message.tool_calls
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert json.loads(arguments) == {"city": "mock", "days": 1}
    msgs += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
    ]
    r = client.chat.completions.create(messages=msgs, **kwargs)
    assert r.choices[0].message.content == "mock reply to: Please call tool get_weather for Paris"
    assert r.choices[0].finish_reason == "stop"
    first, second = (rec["body"] for rec in mock.requests())
    assert first["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather of a city",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]
    assert first["tool_choice"] == {"type": "auto"}
    assert second["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": call_id, "name": name, "input": json.loads(arguments)}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "sunny, 21C"}],
        },
    ]


def test_tool_round_trip_non_stream(client, mock):
    _tool_round_trip(client, mock, stream=False)


def test_tool_round_trip_stream(client, mock):
    _tool_round_trip(client, mock, stream=True)


def test_image_message_accepted(client, mock):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    r = client.chat.completions.create(
        model="claude-3-5-sonnet", messages=[{"role": "user", "content": content}]
    )
    assert r.choices[0].message.content == "mock reply to: what is this"
    [rec] = mock.requests()
    blocks = rec["body"]["messages"][0]["content"]
    assert blocks[1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": PNG.split(",", 1)[1],
    }
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.png"}


def test_overloaded_529_passes_through(client):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model="overloaded/claude-3-5-sonnet", messages=MSGS)
    assert ei.value.status_code == 529
    assert ei.value.body == {
        "message": "Overloaded",
        "type": "server_error",
        "param": None,
        "code": "overloaded_error",
    }


def test_rate_limit_keeps_retry_after(client):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="limited/claude-3-5-sonnet", messages=MSGS)
    assert ei.value.response.headers.get("retry-after") == "7"
    assert ei.value.code == "rate_limit_error"


def test_unsupported_param_is_400_naming_it(client, mock):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="claude-3-5-sonnet", messages=MSGS, n=2)
    assert ei.value.body["param"] == "n"
    assert mock.requests() == []


def test_mid_stream_error_event_raises_in_the_sdk(client):
    msgs = [{"role": "user", "content": "trigger a mock stream error please"}]
    # Events 40 ms apart: the first chunk commits the stream before the error event comes.
    stream = client.chat.completions.create(
        model="streamy/claude-3-5-sonnet", messages=msgs, stream=True
    )
    seen = []
    with pytest.raises(openai.APIError) as ei:
        for c in stream:
            seen.append(c)
    assert seen and seen[0].choices[0].delta.role == "assistant"
    assert "Overloaded" in str(ei.value)


def test_embeddings_refused(client, mock):
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model="claude-3-5-sonnet", input="hi")
    assert ei.value.body["param"] == "model"
    assert mock.requests() == []


def test_provider_request_id_is_returned(client):
    raw = client.chat.completions.with_raw_response.create(model="claude-3-5-sonnet", messages=MSGS)
    assert raw.headers["x-upstream-request-id"].startswith("req_")
    assert raw.headers["x-upstream-request-id"] != raw.headers.get("x-request-id")
