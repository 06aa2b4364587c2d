"""openai SDK -> helix (type: bedrock, SigV4) -> the mock's Bedrock Runtime routes."""

import json

import openai
import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess

AKID = "AKIDHELIXTEST"
SECRET = "mock-secret-access-key/abc+123"
MODEL = "anthropic.claude-3-5-sonnet-20241022-v2:0"
MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello Bedrock!"}]
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
}


@pytest.fixture(scope="module")
def mock():
    # --require-key: the Bedrock routes verify SigV4 with this secret access key.
    with MockProcess("--chunks", "4", "--require-key", SECRET) as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    config = f"""
providers:
  - name: aws
    type: bedrock
    base_url: {mock.url}
    region: us-west-2
    aws_access_key_id: {AKID}
    aws_secret_access_key: "{SECRET}"
    aws_session_token: session-token-1
    models: [{MODEL}, amazon.titan-embed-text-v2:0, cohere.embed-english-v3,
             {{name: claude, id: {MODEL}}}]
  - name: badkey
    type: bedrock
    base_url: {mock.url}
    region: us-west-2
    aws_access_key_id: {AKID}
    aws_secret_access_key: wrong-secret
  - name: limited
    type: bedrock
    base_url: {mock.url}
    region: us-west-2
    aws_access_key_id: {AKID}
    aws_secret_access_key: "{SECRET}"
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


def test_chat_signed_and_translated(client, mock):
    r = client.chat.completions.create(model="claude", messages=MSGS, max_tokens=50)
    assert r.choices[0].message.content == "mock reply to: Hello Bedrock!"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    [rec] = mock.requests()
    assert rec["path"] == "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    assert rec["headers"]["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert "/us-west-2/bedrock/aws4_request" in rec["headers"]["authorization"]
    assert rec["headers"]["x-amz-security-token"] == "session-token-1"
    assert rec["body"]["system"] == [{"text": "be brief"}]
    assert rec["body"]["inferenceConfig"] == {"maxTokens": 50}
    assert "client-key" not in json.dumps(rec)


def test_wrong_secret_is_rejected_by_the_mock(client):
    with pytest.raises(openai.AuthenticationError) as ei:
        client.chat.completions.create(model=f"badkey/{MODEL}", messages=MSGS)
    assert "UnrecognizedClientException" in str(ei.value)


def test_stream(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=MSGS, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "mock reply to: Hello Bedrock!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_tool_round_trip(client, mock):
    msgs = [{"role": "user", "content": "please call tool get_weather"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}
    # Streamed: the same call, assembled from fragments.
    s = client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER], stream=True)
    args, ids, finish = "", [], None
    for c in s:
        if not c.choices:
            continue
        for tc in c.choices[0].delta.tool_calls or ():
            ids += [tc.id] if tc.id else []
            args += tc.function.arguments or ""
        finish = c.choices[0].finish_reason or finish
    assert json.loads(args) == {"city": "mock"} and len(ids) == 1 and finish == "tool_calls"
    # Second turn: the tool result goes back as a toolResult block.
    msgs += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 20}'},
    ]
    r2 = client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER])
    assert r2.choices[0].message.content == "mock reply to: tool result"
    last = mock.requests()[-1]["body"]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user"]
    assert last[2]["content"][0]["toolResult"] == {
        "toolUseId": call.id, "content": [{"json": {"temp": 20}}]}


def test_stream_exception_becomes_an_error(client):
    # Before the first byte reaches the client it is a 429; after, an in-band SSE error event.
    with pytest.raises(openai.APIError, match="throttlingException"):
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "stream-exception please"}],
            stream=True)
        for _ in stream:
            pass


def test_embeddings(client, mock):
    r = client.embeddings.create(model="amazon.titan-embed-text-v2:0", input="hello")
    assert len(r.data) == 1 and len(r.data[0].embedding) == 16
    assert r.usage.prompt_tokens == 1
    r = client.embeddings.create(model="cohere.embed-english-v3", input=["a", "b", "c"])
    assert [d.index for d in r.data] == [0, 1, 2]
    bodies = [rec["body"] for rec in mock.requests()]
    assert bodies == [{"inputText": "hello"},
                      {"texts": ["a", "b", "c"], "input_type": "search_document"}]



def test_titan_batch_fans_out_one_call_per_text(client, mock):
    """OpenAI's contract is a batch; Titan takes one text per call: one call per input,
    concurrent, answered in order with the usage summed."""
    mock.clear()
    texts = ["alpha", "beta gamma", "delta epsilon zeta", "eta"]
    single = [client.embeddings.create(model="amazon.titan-embed-text-v2:0", input=t)
              for t in texts]
    mock.clear()
    r = client.embeddings.create(model="amazon.titan-embed-text-v2:0", input=texts)
    assert [d.index for d in r.data] == [0, 1, 2, 3]
    assert [d.embedding for d in r.data] == [s.data[0].embedding for s in single]
    assert r.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in single)
    assert sorted(rec["body"]["inputText"] for rec in mock.requests()) == sorted(texts)
    b64 = client.embeddings.create(model="amazon.titan-embed-text-v2:0", input=texts[:2],
                                   encoding_format="base64")
    assert len(b64.data) == 2
    # One failing text fails the whole batch cleanly (Titan refuses an empty inputText).
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="amazon.titan-embed-text-v2:0", input=["ok", ""])


def test_provider_error_passes_through(client):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model=f"limited/{MODEL}", messages=MSGS)
    assert "ThrottlingException" in str(ei.value)
