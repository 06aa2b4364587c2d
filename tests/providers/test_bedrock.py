"""Bedrock adapter: requests validated by botocore's bedrock-runtime model, responses, stream."""

import base64
import json
from datetime import UTC, datetime
from unittest import mock

import botocore.session
import msgspec
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.validate import ParamValidator

from helix.api.chat import OpenAIChunkSink
from helix.client import Timeouts, parse_url
from helix.config import ConfigError, ProviderConfig
from helix.errors import ErrorKind, HelixError, Retry
from helix.providers import bedrock
from helix.providers.base import Deployment, UpstreamRequest
from helix.providers.eventstream import encode_message
from helix.schema.openai import chat_request_decoder, decode_request

MODEL = "anthropic.claude-3-5-sonnet-20241022-v2:0"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
SERVICE = botocore.session.get_session().get_service_model("bedrock-runtime")


def dep(model_id=MODEL, base="https://bedrock-runtime.us-east-1.amazonaws.com"):
    origin, path = parse_url(base)
    return Deployment(
        provider="aws", provider_type="bedrock", model=model_id, model_id=model_id,
        origin=origin, base_path=path, static_headers=[(b"content-type", b"application/json")],
        timeouts=Timeouts(), verify_tls=True, adapter=bedrock.BedrockAdapter(),
    )


def validate_converse(body: dict, op="Converse"):
    shape = SERVICE.operation_model(op).input_shape
    report = ParamValidator().validate({"modelId": MODEL, **body}, shape)
    assert not report.has_errors(), report.generate_report()


def chat(doc: dict, d=None):
    d = d or dep()
    raw = json.dumps({"model": d.model, **doc}).encode()
    view = decode_request(chat_request_decoder, raw)
    return d.adapter.chat_request(d, view, raw), view


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}


def test_full_translation_is_valid_converse_input():
    up, _ = chat(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ]},
                {"role": "user", "content": "and the weather?"},
                {"role": "assistant", "content": "checking", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "get_weather", "arguments": ""}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
                {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
                {"role": "user", "content": "thanks"},
            ],
            "max_tokens": 100,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": "END",
            "tools": [WEATHER],
            "tool_choice": "required",
        }
    )
    assert up.method == b"POST"
    assert up.target == b"/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    body = json.loads(up.body)
    validate_converse(body)
    assert body["system"] == [{"text": "be brief"}, {"text": "and kind"}]
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]  # consecutive same roles merged
    user0 = body["messages"][0]["content"]
    assert user0[1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert user0[2] == {"text": "and the weather?"}
    assistant = body["messages"][1]["content"]
    assert assistant[1] == {"toolUse": {"toolUseId": "call_1", "name": "get_weather",
                                        "input": {"city": "Paris"}}}
    assert assistant[2]["toolUse"]["input"] == {}
    results = body["messages"][2]["content"]
    assert results[0] == {
        "toolResult": {"toolUseId": "call_1", "content": [{"json": {"temp": 21}}]}
    }
    assert results[1] == {"toolResult": {"toolUseId": "call_2", "content": [{"text": "sunny"}]}}
    assert results[2] == {"text": "thanks"}
    assert body["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.2, "topP": 0.9,
                                       "stopSequences": ["END"]}
    assert body["toolConfig"]["toolChoice"] == {"any": {}}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"] == [
        "city"
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", {"auto": {}}), (None, None),
     ({"type": "function", "function": {"name": "get_weather"}},
      {"tool": {"name": "get_weather"}})],
)
def test_tool_choice(choice, expected):
    doc = {"messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER], "stream": True}
    if choice is not None:
        doc["tool_choice"] = choice
    up, _ = chat(doc)
    body = json.loads(up.body)
    validate_converse(body, "ConverseStream")
    assert up.target.endswith(b"/converse-stream")
    assert body["toolConfig"].get("toolChoice") == expected


def test_tool_choice_none_omits_tools():
    up, _ = chat({"messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER],
                  "tool_choice": "none"})
    assert "toolConfig" not in json.loads(up.body)


def test_model_ids_with_slashes_are_one_segment():
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude"
    up, _ = chat({"messages": [{"role": "user", "content": "x"}]}, dep(arn))
    assert up.target == (
        b"/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile"
        b"%2Fus.anthropic.claude/converse"
    )


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}, "cannot fetch"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}]}]},
         "data URLs"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n must be 1"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
    ],
)
def test_client_errors_are_400(doc, needle):
    with pytest.raises(HelixError) as ei:
        chat(doc)
    assert ei.value.status == 400 and needle in ei.value.message


def test_response_text_and_usage():
    d = dep()
    body = json.dumps({
        "output": {"message": {"role": "assistant", "content": [{"text": "Hel"}, {"text": "lo"}]}},
        "stopReason": "max_tokens",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 19,
                  "cacheReadInputTokens": 4, "cacheWriteInputTokens": 0},
        "metrics": {"latencyMs": 1},
    }).encode()
    out = json.loads(d.adapter.chat_response(d, body))
    assert out["object"] == "chat.completion" and out["model"] == MODEL
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "Hello",
                                             "refusal": None}
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19,
                            "prompt_tokens_details": {"cached_tokens": 4}}


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("tool_use", "tool_calls"),
     ("content_filtered", "content_filter"), ("guardrail_intervened", "content_filter")],
)
def test_response_tool_use_and_stop_reasons(reason, finish):
    d = dep()
    body = json.dumps({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tu1", "name": "get_weather", "input": {"city": "Oslo"}}}]}},
        "stopReason": reason,
        "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
    }).encode()
    choice = json.loads(d.adapter.chat_response(d, body))["choices"][0]
    assert choice["finish_reason"] == finish
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "tu1" and json.loads(call["function"]["arguments"]) == {"city": "Oslo"}


def frame(event, payload):
    return encode_message(
        {":event-type": event, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode(),
    )


def relay_events(relay, data: bytes, step: int):
    out = b""
    for i in range(0, len(data), step):
        out += relay.feed(data[i : i + step])
    out += relay.close()
    events = [e for e in out.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    return [json.loads(e[6:]) for e in events[:-1]]


STREAM = b"".join([
    frame("messageStart", {"role": "assistant"}),
    frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me "}}),
    frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "check."}}),
    frame("contentBlockStop", {"contentBlockIndex": 0}),
    frame("contentBlockStart", {"contentBlockIndex": 1,
                                "start": {"toolUse": {"toolUseId": "tu1", "name": "a"}}}),
    frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"x"'}}}),
    frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ":1}"}}}),
    frame("contentBlockStop", {"contentBlockIndex": 1}),
    frame("contentBlockStart", {"contentBlockIndex": 2,
                                "start": {"toolUse": {"toolUseId": "tu2", "name": "b"}}}),
    frame("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}),
    frame("messageStop", {"stopReason": "tool_use"}),
    frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7},
                       "metrics": {"latencyMs": 5}}),
])


def test_stream_matches_botocore_event_parsing():
    # The test stream itself is what botocore's parser reads as ConverseStream output.
    from botocore.eventstream import EventStream
    from botocore.parsers import EventStreamJSONParser

    class Raw:
        def stream(self):
            yield STREAM

    shape = SERVICE.operation_model("ConverseStream").output_shape.members["stream"]
    events = list(EventStream(Raw(), shape, EventStreamJSONParser(), "ConverseStream"))
    assert [next(iter(e)) for e in events][:2] == ["messageStart", "contentBlockDelta"]
    assert events[-1]["metadata"]["usage"]["totalTokens"] == 7


@pytest.mark.parametrize("step", [1, 7, 64, 10_000])
def test_stream_relay(step):
    d = dep()
    raw = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                      "stream": True, "stream_options": {"include_usage": True}}).encode()
    view = decode_request(chat_request_decoder, raw)
    relay = d.adapter.stream_relay(d, view, OpenAIChunkSink(True))
    assert relay.passthrough is False
    chunks = relay_events(relay, STREAM, step)
    assert len({c["id"] for c in chunks}) == 1 and {c["model"] for c in chunks} == {MODEL}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Let me check."
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get(
        "tool_calls", [])]
    assert [(tc["index"], tc.get("id")) for tc in calls if "id" in tc] == [(0, "tu1"), (1, "tu2")]
    args = {}
    for tc in calls:
        args[tc["index"]] = args.get(tc["index"], "") + tc["function"]["arguments"]
    assert args == {0: '{"x":1}', 1: "{}"}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "tool_calls" and finishes.count("tool_calls") == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 7
    assert relay.usage.to_openai() == {"prompt_tokens": 3, "completion_tokens": 4,
                                       "total_tokens": 7}


def test_stream_without_include_usage_still_records_usage():
    relay = bedrock.BedrockStreamRelay(MODEL, OpenAIChunkSink(False))
    chunks = relay_events(relay, STREAM, 100)
    assert all(c["choices"] for c in chunks) and relay.usage.tokens == 7


def test_stream_exception_frame_raises():
    relay = bedrock.BedrockStreamRelay(MODEL, OpenAIChunkSink(False))
    exc = encode_message(
        {":exception-type": "throttlingException", ":content-type": "application/json",
         ":message-type": "exception"}, b'{"message":"slow down"}')
    relay.feed(frame("messageStart", {"role": "assistant"}))
    with pytest.raises(HelixError) as ei:
        relay.feed(exc)
    assert "throttlingException" in ei.value.message and "slow down" in ei.value.message


def test_stream_truncated_or_corrupt_raises():
    relay = bedrock.BedrockStreamRelay(MODEL, OpenAIChunkSink(False))
    relay.feed(STREAM[:-30])
    with pytest.raises(HelixError) as ei:
        relay.close()
    assert ei.value.kind is ErrorKind.UPSTREAM_PROTOCOL
    bad = bytearray(STREAM)
    bad[40] ^= 1
    with pytest.raises(HelixError, match="CRC"):
        bedrock.BedrockStreamRelay(MODEL, OpenAIChunkSink(False)).feed(bytes(bad))


@pytest.mark.parametrize(
    ("status", "etype", "retry"),
    [(429, "ThrottlingException", Retry.YES), (503, "ServiceUnavailableException", Retry.YES),
     (429, "ModelNotReadyException", Retry.YES), (400, "ValidationException", Retry.NO),
     (403, "AccessDeniedException", Retry.NO)],
)
def test_errors(status, etype, retry):
    d = dep()
    headers = [(b"x-amzn-errortype", f"{etype}:http://internal.amazon.com/coral/".encode())]
    err = d.adapter.error(d, status, headers, b'{"message":"nope"}')
    assert err.status == status and err.retry is retry and err.code == etype
    assert "nope" in err.message and etype in err.message
    assert json.loads(err.to_json())["error"]["code"] == etype


def embed(d, doc):
    raw = json.dumps({"model": d.model, **doc}).encode()
    return d.adapter.embeddings_request(d, None, raw)


def test_titan_embeddings():
    d = dep("amazon.titan-embed-text-v2:0")
    up = embed(d, {"input": "hello", "dimensions": 256})
    assert up.target == b"/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert json.loads(up.body) == {"inputText": "hello", "dimensions": 256}
    assert json.loads(embed(d, {"input": ["one"]}).body) == {"inputText": "one"}
    fan = embed(d, {"input": ["a", "b"], "dimensions": 8})  # Titan: one call per text
    assert [json.loads(u.body) for u in fan.requests] == [
        {"inputText": "a", "dimensions": 8}, {"inputText": "b", "dimensions": 8}]
    joined = fan.combine([b'{"embedding":[1.0],"inputTextTokenCount":2}',
                          b'{"embedding":[2.0],"inputTextTokenCount":5}'])
    out = json.loads(d.adapter.embeddings_response(d, joined))
    assert [x["embedding"] for x in out["data"]] == [[1.0], [2.0]]
    assert out["usage"]["prompt_tokens"] == 7
    with pytest.raises(HelixError, match="strings"):
        embed(d, {"input": [1, 2, 3]})
    out = json.loads(d.adapter.embeddings_response(
        d, b'{"embedding":[0.5,-1.0],"inputTextTokenCount":3}'))
    assert out["data"] == [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}]
    assert out["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_cohere_on_bedrock_embeddings_and_unknown_family():
    d = dep("cohere.embed-english-v3")
    up = embed(d, {"input": ["a", "b"]})
    assert json.loads(up.body) == {"texts": ["a", "b"], "input_type": "search_document"}
    for resp in (b'{"embeddings":[[1.0],[2.0]],"response_type":"embeddings_floats"}',
                 b'{"embeddings":{"float":[[1.0],[2.0]]},"response_type":"embeddings_by_type"}'):
        out = json.loads(d.adapter.embeddings_response(d, resp))
        assert [x["embedding"] for x in out["data"]] == [[1.0], [2.0]]
        assert [x["index"] for x in out["data"]] == [0, 1]
    with pytest.raises(HelixError, match="not supported"):
        embed(dep("meta.llama3"), {"input": "x"})


def cfg(**kw):
    base = {"name": "aws", "type": "bedrock", "region": "us-east-1"}
    return msgspec.convert({**base, **kw}, ProviderConfig)


def test_signer_matches_botocore_and_reads_env_once(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "envtoken")
    signer = bedrock.BedrockSigner(cfg())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "CHANGED")
    assert signer.credentials == ("AKIDENV", "envsecret", "envtoken")
    d = dep()
    up, _ = chat({"messages": [{"role": "user", "content": "hi"}]}, d)
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    signed = signer.sign_now(d, up, now)
    ours = {k.decode(): v.decode() for k, v in signed.headers}
    req = AWSRequest(
        method="POST",
        url=f"https://bedrock-runtime.us-east-1.amazonaws.com{up.target.decode()}",
        headers={k.decode(): v.decode() for k, v in up.headers},
        data=up.body,
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)):
        SigV4Auth(BotoCredentials("AKIDENV", "envsecret", "envtoken"), "bedrock",
                  "us-east-1").add_auth(req)
    assert ours["authorization"] == req.headers["Authorization"]
    assert ours["x-amz-security-token"] == "envtoken"
    assert ours["host"] == "bedrock-runtime.us-east-1.amazonaws.com"


def test_signer_host_has_port_when_not_default():
    signer = bedrock.BedrockSigner(cfg(aws_access_key_id="AK", aws_secret_access_key="SK"), env={})
    d = dep(base="http://127.0.0.1:8123")
    up = UpstreamRequest(b"POST", b"/model/x/converse", [], b"{}")
    signed = signer.sign_now(d, up, datetime(2025, 1, 1, tzinfo=UTC))
    assert dict(signed.headers)[b"host"] == b"127.0.0.1:8123"
    assert b"x-amz-security-token" not in dict(signed.headers)


def test_config_validation(monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    validate = bedrock.SPECS["bedrock"].validate
    with pytest.raises(ConfigError, match=r"providers\[0\]\.region"):
        validate(cfg(region=None, aws_access_key_id="a", aws_secret_access_key="b"), "providers[0]")
    with pytest.raises(ConfigError, match="aws_secret_access_key"):
        validate(cfg(aws_access_key_id="a"), "providers[0]")
    validate(cfg(), "providers[0]")  # credentials may come from the environment
    signer = bedrock.BedrockSigner(cfg(), env={})
    up = UpstreamRequest(b"POST", b"/model/x/converse", [], b"{}")
    with pytest.raises(HelixError, match="no AWS credentials") as ei:
        signer.sign_now(dep(), up, datetime(2025, 1, 1, tzinfo=UTC))
    assert ei.value.status == 503
    validate(cfg(aws_access_key_id="a", aws_secret_access_key="b"), "providers[0]")
    assert bedrock.base_url_for(cfg()) == "https://bedrock-runtime.us-east-1.amazonaws.com"
    assert bedrock.base_url_for(cfg(base_url="http://x")) == "http://x"
    spec = bedrock.SPECS["bedrock"]
    assert spec.key_required is False and spec.signer is bedrock.BedrockSigner
