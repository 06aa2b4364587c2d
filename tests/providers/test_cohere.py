"""Cohere v2 adapter: request translation, responses, SSE stream relay, embeddings."""

import json

import pytest

from helix.api.chat import OpenAIChunkSink
from helix.client import Timeouts, parse_url
from helix.errors import HelixError, Retry
from helix.providers import cohere
from helix.providers.base import Deployment
from helix.schema.openai import chat_request_decoder, decode_request

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
OTHER = {"type": "function", "function": {"name": "other"}}


def dep(model_id="command-r-plus"):
    origin, path = parse_url("https://api.cohere.com")
    return Deployment(
        provider="cohere", provider_type="cohere", model=model_id, model_id=model_id,
        origin=origin, base_path=path, static_headers=[(b"authorization", b"Bearer k")],
        timeouts=Timeouts(), verify_tls=True, adapter=cohere.CohereAdapter(),
    )


def chat(doc, d=None):
    d = d or dep()
    raw = json.dumps({"model": "alias", **doc}).encode()
    return d.adapter.chat_request(d, decode_request(chat_request_decoder, raw), raw)


def test_request_translation():
    up = chat({
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": "https://i"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "max_completion_tokens": 50, "top_p": 0.5, "temperature": 0.1, "stop": "X", "seed": 3,
        "tools": [WEATHER], "tool_choice": "required",
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
    })
    assert up.target == b"/v2/chat"
    body = json.loads(up.body)
    assert body["model"] == "command-r-plus"
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["messages"][1]["content"][1] == {"type": "image_url",
                                                 "image_url": {"url": "https://i"}}
    assert body["messages"][2] == {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert (body["max_tokens"], body["p"], body["temperature"], body["seed"]) == (50, 0.5, 0.1, 3)
    assert body["stop_sequences"] == ["X"] and body["tool_choice"] == "REQUIRED"
    assert body["tools"][0]["function"]["parameters"]["properties"]["city"]
    assert body["response_format"] == {"type": "json_object", "json_schema": {}}
    assert "top_p" not in body and "stream" not in body


@pytest.mark.parametrize(
    ("choice", "expected_choice", "names"),
    [("auto", None, ["get_weather", "other"]), ("none", "NONE", ["get_weather", "other"]),
     ({"type": "function", "function": {"name": "other"}}, "REQUIRED", ["other"])],
)
def test_tool_choice(choice, expected_choice, names):
    body = json.loads(chat({"messages": [{"role": "user", "content": "x"}],
                            "tools": [WEATHER, OTHER], "tool_choice": choice}).body)
    assert body.get("tool_choice") == expected_choice
    assert [t["function"]["name"] for t in body["tools"]] == names


def test_n_is_rejected():
    with pytest.raises(HelixError, match="n must be 1"):
        chat({"messages": [{"role": "user", "content": "x"}], "n": 3})


@pytest.mark.parametrize(("reason", "finish"), [
    ("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"),
    ("TOOL_CALL", "tool_calls"), ("ERROR", "error"),
])
def test_response(reason, finish):
    d = dep()
    body = json.dumps({
        "id": "abc", "finish_reason": reason,
        "message": {"role": "assistant", "content": [{"type": "text", "text": "Hi"}],
                    "tool_plan": "plan",
                    "tool_calls": [{"id": "t1", "type": "function",
                                    "function": {"name": "f", "arguments": "{}"}}]},
        "usage": {"billed_units": {"input_tokens": 2, "output_tokens": 1},
                  "tokens": {"input_tokens": 5, "output_tokens": 1}},
    }).encode()
    out = json.loads(d.adapter.chat_response(d, body))
    choice = out["choices"][0]
    assert out["id"] == "abc" and choice["finish_reason"] == finish
    assert choice["message"]["content"] == "Hi"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}


def sse(obj):
    return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n".encode()


STREAM = b"".join([
    sse({"id": "m1", "type": "message-start", "delta": {"message": {"role": "assistant"}}}),
    sse({"type": "content-start", "index": 0,
         "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
    sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hel"}}}}),
    sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "lo"}}}}),
    sse({"type": "content-end", "index": 0}),
    sse({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will"}}}),
    sse({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
        "id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}}}}),
    sse({"type": "tool-call-delta", "index": 0,
         "delta": {"message": {"tool_calls": {"function": {"arguments": '{"a":'}}}}}),
    sse({"type": "tool-call-delta", "index": 0,
         "delta": {"message": {"tool_calls": {"function": {"arguments": "1}"}}}}}),
    sse({"type": "tool-call-end", "index": 0}),
    sse({"type": "tool-call-start", "index": 1, "delta": {"message": {"tool_calls": {
        "id": "t2", "type": "function", "function": {"name": "g", "arguments": "{}"}}}}}),
    sse({"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
        "tokens": {"input_tokens": 4, "output_tokens": 6}}}}),
])


@pytest.mark.parametrize("step", [1, 13, 100_000])
def test_stream_relay(step):
    d = dep()
    raw = b'{"model":"x","messages":[{"role":"user","content":"x"}],"stream":true,' \
          b'"stream_options":{"include_usage":true}}'
    view = decode_request(chat_request_decoder, raw)
    relay = d.adapter.stream_relay(d, view, OpenAIChunkSink(True))
    out = b"".join(relay.feed(STREAM[i : i + step]) for i in range(0, len(STREAM), step))
    out += relay.close()
    events = [e for e in out.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert {c["id"] for c in chunks} == {"m1"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello"
    calls = [tc for c in chunks if c["choices"]
             for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    args = {}
    for tc in calls:
        args[tc["index"]] = args.get(tc["index"], "") + tc["function"]["arguments"]
    assert args == {0: '{"a":1}', 1: "{}"}
    assert [tc["id"] for tc in calls if "id" in tc] == ["t1", "t2"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    assert relay.usage.to_openai() == chunks[-1]["usage"]


def test_stream_truncated_raises():
    relay = cohere.CohereStreamRelay("m", OpenAIChunkSink(False))
    relay.feed(STREAM[:200])
    with pytest.raises(HelixError, match="before message-end"):
        relay.close()


def test_embeddings():
    d = dep("embed-english-v3.0")
    up = d.adapter.embeddings_request(d, None, b'{"model":"e","input":["a","b"]}')
    assert up.target == b"/v2/embed"
    assert json.loads(up.body) == {"model": "embed-english-v3.0", "texts": ["a", "b"],
                                   "input_type": "search_document", "embedding_types": ["float"]}
    resp = b'{"id":"x","embeddings":{"float":[[0.5],[1.5]]},"texts":["a","b"],' \
           b'"meta":{"billed_units":{"input_tokens":2}},"response_type":"embeddings_by_type"}'
    out = json.loads(d.adapter.embeddings_response(d, resp))
    assert [x["embedding"] for x in out["data"]] == [[0.5], [1.5]]
    assert out["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_errors_and_spec():
    d = dep()
    err = d.adapter.error(d, 429, [], b'{"message":"trial key limit"}')
    assert err.status == 429 and err.retry is Retry.YES and "trial key limit" in err.message
    err = d.adapter.error(d, 400, [], b'{"message":"bad field"}')
    assert err.status == 400 and err.retry is Retry.NO
    spec = cohere.SPECS["cohere"]
    assert spec.key_env == "COHERE_API_KEY" and spec.default_base_url == "https://api.cohere.com"
