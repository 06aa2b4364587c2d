"""openai SDK -> helix (type: cohere) -> the mock's Cohere v2 routes."""

import json

import openai
import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess

KEY = "co-upstream-key-5678"
MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello Cohere!"}]
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
}


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "4", "--require-key", KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    config = f"""
providers:
  - name: co
    type: cohere
    base_url: {mock.url}
    api_key: {KEY}
    models: [command-r-plus, embed-english-v3.0, {{name: fast, id: command-r}}]
  - name: limited
    type: cohere
    base_url: {mock.url}
    api_key: {KEY}
    headers: {{x-mock-status: "429"}}
"""
    with HelixProcess(config, workers=1) as proc:
        yield proc


@pytest.fixture
def client(helix, mock):
    mock.clear()
    with openai.OpenAI(base_url=helix.base_url, api_key="client-key", max_retries=0,
                       timeout=15) as c:
        yield c


def test_chat(client, mock):
    r = client.chat.completions.create(model="fast", messages=MSGS, top_p=0.5, max_tokens=20)
    assert r.choices[0].message.content == "mock reply to: Hello Cohere!"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    [rec] = mock.requests()
    assert rec["path"] == "/v2/chat"
    assert rec["headers"]["authorization"] == f"Bearer {KEY}"
    assert rec["body"]["model"] == "command-r" and rec["body"]["p"] == 0.5
    assert "client-key" not in json.dumps(rec)


def test_stream(client):
    stream = client.chat.completions.create(
        model="command-r-plus", messages=MSGS, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "mock reply to: Hello Cohere!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_tool_round_trip(client, mock):
    msgs = [{"role": "user", "content": "please call tool get_weather"}]
    r = client.chat.completions.create(model="command-r-plus", messages=msgs, tools=[WEATHER])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}
    s = client.chat.completions.create(model="command-r-plus", messages=msgs, tools=[WEATHER],
                                       stream=True)
    args, finish = "", None
    for c in s:
        if c.choices:
            for tc in c.choices[0].delta.tool_calls or ():
                args += tc.function.arguments or ""
            finish = c.choices[0].finish_reason or finish
    assert json.loads(args) == {"city": "mock"} and finish == "tool_calls"
    msgs += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "20 degrees"},
    ]
    r2 = client.chat.completions.create(model="command-r-plus", messages=msgs, tools=[WEATHER])
    assert r2.choices[0].message.content == "mock reply to: tool result"
    sent = mock.requests()[-1]["body"]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "20 degrees"}


def test_embeddings(client, mock):
    r = client.embeddings.create(model="embed-english-v3.0", input=["a", "bb"])
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) == 16
    assert r.usage.prompt_tokens == 2
    [rec] = mock.requests()
    assert rec["path"] == "/v2/embed" and rec["body"]["input_type"] == "search_document"


def test_embeddings_base64_when_asked(client):
    import base64
    import json
    import struct

    floats = client.embeddings.create(model="embed-english-v3.0", input="a").data[0].embedding
    raw = client.embeddings.with_raw_response.create(
        model="embed-english-v3.0", input="a", encoding_format="base64"
    )
    b64 = json.loads(raw.http_response.content)["data"][0]["embedding"]
    assert isinstance(b64, str)
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(b64))
    assert decoded == pytest.approx(floats, rel=1e-6)


def test_provider_error_passes_through(client):
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="limited/command-r", messages=MSGS)
