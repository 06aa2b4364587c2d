"""Sans-IO Gemini translation: OpenAI <-> generateContent / embedContent, shapes checked
against google-genai's pydantic types and the openai SDK's types."""

from __future__ import annotations

import base64
import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix.api.chat import OpenAIChunkSink
from helix.config import load_file
from helix.errors import ErrorKind, HelixError, Retry
from helix.providers.features import Capabilities
from helix.providers.gemini import (
    GeminiStreamRelay,
    clean_schema,
    gemini_error,
    gemini_to_openai_embeddings,
    gemini_to_openai_response,
    openai_to_gemini_embeddings,
    openai_to_gemini_request,
)
from helix.routing.registry import ModelRegistry
from helix.schema.gemini import response_decoder
from helix.schema.openai import (
    chat_request_decoder,
    decode_request,
    embeddings_request_decoder,
)

genai = pytest.importorskip("google.genai")
types = genai.types
openai_chat = pytest.importorskip("openai.types.chat")
ChatCompletion = openai_chat.ChatCompletion
ChatCompletionChunk = openai_chat.ChatCompletionChunk
CreateEmbeddingResponse = pytest.importorskip("openai.types").CreateEmbeddingResponse

enc = msgspec.json.encode
dec = msgspec.json.decode


def check_request_shape(body: dict) -> None:
    """Every part of a generateContent body validates as google-genai's own types
    (their models forbid unknown fields, so a misspelt key fails here)."""
    assert set(body) <= {"contents", "systemInstruction", "generationConfig", "tools",
                         "toolConfig"}
    for c in body["contents"]:
        types.Content.model_validate(c)
        assert c["role"] in ("user", "model")
    if "systemInstruction" in body:
        types.Content.model_validate(body["systemInstruction"])
    if "generationConfig" in body:
        types.GenerationConfig.model_validate(body["generationConfig"])
    for t in body.get("tools", []):
        types.Tool.model_validate(t)
    if "toolConfig" in body:
        types.ToolConfig.model_validate(body["toolConfig"])


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                "when": {"type": "string", "format": "date-time"},
                "site": {"type": "string", "format": "uri"},
            },
            "required": ["city", "ghost"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def test_full_request_translation():
    doc = {
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "no emojis"}]},
            {"role": "user", "content": "hi"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a/cat.webp?s=1"}},
                ],
            },
            {
                "role": "assistant",
                "content": "checking",
                "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                    {"id": "call_b", "type": "function",
                     "function": {"name": "lookup", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_b", "content": "plain text"},
            {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
        ],
        "tools": [WEATHER, {"type": "function", "function": {"name": "lookup",
                                                             "parameters": {"type": "object",
                                                                            "properties": {}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_completion_tokens": 100,
        "max_tokens": 5,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "n": 2,
        "seed": 3,
        "response_format": {"type": "json_object"},
    }
    out = openai_to_gemini_request(doc, Capabilities("native", "budget"))  # Gemini 2.5
    check_request_shape(out)
    assert out["systemInstruction"] == {"parts": [{"text": "be brief\n\nno emojis"}]}
    # consecutive user turns merged; the tool answers merged into one user turn
    assert [c["role"] for c in out["contents"]] == ["user", "model", "user"]
    assert out["contents"][0]["parts"] == [
        {"text": "hi"},
        {"text": "look"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/a/cat.webp?s=1"}},
    ]
    assert out["contents"][1]["parts"] == [
        {"text": "checking"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "lookup", "args": {}}},
    ]
    assert out["contents"][2]["parts"] == [
        {"functionResponse": {"name": "lookup", "response": {"output": "plain text"}}},
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
    ]
    decls = out["tools"][0]["functionDeclarations"]
    assert decls[0]["parameters"] == {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING", "description": "City"},
            "unit": {"type": "STRING", "enum": ["c", "f"], "nullable": True},
            "when": {"type": "STRING", "format": "date-time"},
            "site": {"type": "STRING"},
        },
        "required": ["city"],
    }
    assert decls[1] == {"name": "lookup"}  # an OBJECT without properties is refused by Gemini
    assert out["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert out["generationConfig"] == {
        "maxOutputTokens": 100,
        "temperature": 0.2,
        "topP": 0.9,
        "seed": 3,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "responseMimeType": "application/json",
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"})],
)
def test_tool_choice_modes(choice, expected):
    doc = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
           "tool_choice": choice}
    out = openai_to_gemini_request(doc)
    assert out["toolConfig"] == {"functionCallingConfig": expected}
    check_request_shape(out)


def test_json_schema_response_format_is_cleaned_for_openapi_models():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
            "kind": {"const": "person"},
            "age": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
        "required": ["name", "tags"],
        "additionalProperties": False,
        "$defs": {"Tag": {"type": "object", "properties": {"v": {"type": "string"}},
                          "additionalProperties": False}},
    }
    doc = {
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "p", "schema": schema, "strict": True}},
    }
    native = openai_to_gemini_request(doc)["generationConfig"]  # Gemini 2.5 and later
    assert "responseSchema" not in native
    assert native["responseJsonSchema"] == {k: v for k, v in schema.items() if k != "$schema"}
    out = openai_to_gemini_request(doc, Capabilities("openapi", "none"))  # Gemini 2.0
    check_request_shape(out)
    gen = out["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in gen
    assert gen["responseSchema"] == {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING"},
            "tags": {"type": "ARRAY",
                     "items": {"type": "OBJECT", "properties": {"v": {"type": "STRING"}}}},
            "kind": {"type": "STRING", "enum": ["person"]},
            "age": {"type": "INTEGER", "nullable": True},
        },
        "required": ["name", "tags"],
    }
    types.Schema.model_validate(gen["responseSchema"])


def test_recursive_schema_is_a_clear_400():
    schema = {"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
              "$ref": "#/$defs/N"}
    with pytest.raises(HelixError) as ei:
        clean_schema(schema)
    assert ei.value.status == 400 and "recursive" in ei.value.message


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "tool", "tool_call_id": "nope", "content": "x"}], "messages[0].tool_call_id"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1"}}]}],
         "messages[0].tool_calls[0].function"),
        ([{"role": "user", "content": [{"type": "image_url",
                                        "image_url": {"url": "data:image/png,raw"}}]}],
         "messages[0].content[0]"),
    ],
)
def test_bad_requests_name_the_parameter(messages, param):
    with pytest.raises(HelixError) as ei:
        openai_to_gemini_request({"messages": messages})
    assert ei.value.kind is ErrorKind.INVALID_REQUEST and ei.value.param == param


# --------------------------------------------------------------------------- responses


def gemini_response(**kw) -> dict:
    doc = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [
                    {"text": "thinking...", "thought": True},
                    {"text": "Hello "},
                    {"text": "world"},
                ]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 4,
            "thoughtsTokenCount": 3,
            "cachedContentTokenCount": 6,
            "totalTokenCount": 17,
        },
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "resp123",
    }
    doc.update(kw)
    types.GenerateContentResponse.model_validate(doc)  # the fixture is a real Gemini shape
    return doc


def translate(doc: dict) -> dict:
    resp = response_decoder.decode(enc(doc))
    out = gemini_to_openai_response(resp, "gemini-2.5-flash", 1700000000, "abc")[0]
    ChatCompletion.model_validate(out)
    return out


def test_text_response():
    out = translate(gemini_response())
    assert out["id"] == "chatcmpl-resp123"
    assert out["model"] == "gemini-2.5-flash" and out["created"] == 1700000000
    [choice] = out["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Hello world", "refusal": None,
                                 "reasoning_content": "thinking..."}
    assert choice["finish_reason"] == "stop"
    assert out["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 7,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 6},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


def test_function_call_response():
    doc = gemini_response(candidates=[{
        "content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "lookup", "args": {}}},
        ]},
        "finishReason": "STOP",
    }])
    out = translate(doc)
    msg = out["choices"][0]["message"]
    assert msg["content"] is None
    assert msg["tool_calls"] == [
        {"id": "call_abc_0", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_abc_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
    ]
    assert out["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
     ("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"),
     ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"), ("OTHER", "stop")],
)
def test_finish_reasons(reason, expected):
    doc = gemini_response()
    doc["candidates"][0]["finishReason"] = reason
    assert translate(doc)["choices"][0]["finish_reason"] == expected


def test_multiple_candidates_and_blocked_prompt():
    doc = gemini_response()
    second = dict(doc["candidates"][0], index=1, content={"role": "model",
                                                         "parts": [{"text": "other"}]})
    doc["candidates"].append(second)
    out = translate(doc)
    assert [c["message"]["content"] for c in out["choices"]] == ["Hello world", "other"]
    blocked = {"promptFeedback": {"blockReason": "SAFETY"},
               "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}
    types.GenerateContentResponse.model_validate(blocked)
    out = translate(blocked)
    assert out["choices"][0]["finish_reason"] == "content_filter"
    assert out["usage"]["completion_tokens"] == 0


# --------------------------------------------------------------------------- streaming

STREAM_EVENTS = [
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
     "modelVersion": "gemini-2.5-flash", "responseId": "r1"},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo é"}]}, "index": 0}],
     "modelVersion": "gemini-2.5-flash", "responseId": "r1"},
    {"candidates": [{"content": {"role": "model", "parts": [
        {"text": " there"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "lookup", "args": {"q": [1, 2]}}},
    ]}, "finishReason": "STOP", "index": 0}],
     "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12},
     "modelVersion": "gemini-2.5-flash", "responseId": "r1"},
]
STREAM_BYTES = b"".join(b"data: " + enc(e) + b"\r\n\r\n" for e in STREAM_EVENTS)


def run_relay(pieces, include_usage=True) -> tuple[list[dict], bytes, GeminiStreamRelay]:
    for e in STREAM_EVENTS:
        types.GenerateContentResponse.model_validate(e)
    relay = GeminiStreamRelay("gemini", "gemini-2.5-flash", 1700000000, "sid",
                              OpenAIChunkSink(include_usage))
    assert relay.passthrough is False
    out = b"".join(relay.feed(p) for p in pieces) + relay.close()
    assert out.endswith(b"data: [DONE]\n\n")
    events = [line[6:] for line in out.split(b"\n\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [dec(e) for e in events[:-1]]
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
    return chunks, out, relay


def check_stream(chunks: list[dict], relay) -> None:
    assert {c["id"] for c in chunks} == {"chatcmpl-sid"}
    assert {c["model"] for c in chunks} == {"gemini-2.5-flash"}
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sum("role" in c["choices"][0]["delta"] for c in with_choices) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices)
    assert text == "Hello é there"
    calls = [tc for c in with_choices for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [(tc["index"], tc["function"]["name"], tc["function"]["arguments"]) for tc in calls] == [
        (0, "get_weather", '{"city":"Paris"}'), (1, "lookup", '{"q":[1,2]}')]
    assert len({tc["id"] for tc in calls}) == 2
    finishes = [c["choices"][0]["finish_reason"] for c in with_choices]
    assert finishes[-1] == "tool_calls" and finishes.count("tool_calls") == 1
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 12 == relay.usage.tokens


def test_stream_whole():
    chunks, _, relay = run_relay([STREAM_BYTES])
    check_stream(chunks, relay)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM_BYTES)), max_size=12))
def test_stream_any_split_gives_the_same_output(cuts):
    cuts = sorted(set(cuts))
    pieces = [STREAM_BYTES[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM_BYTES)],
                                                            strict=True)]
    chunks, out, relay = run_relay(pieces)
    check_stream(chunks, relay)
    assert out == run_relay([STREAM_BYTES])[1]


def test_stream_without_usage_option_and_without_trailing_blank_line():
    data = STREAM_BYTES.rstrip(b"\r\n")
    chunks, _, relay = run_relay([data], include_usage=False)
    assert all(c["choices"] for c in chunks)
    assert relay.usage.input == 5


def test_stream_error_event_raises():
    relay = GeminiStreamRelay("gemini", "m", 1, "x", OpenAIChunkSink(False))
    relay.feed(b"data: " + enc(STREAM_EVENTS[0]) + b"\n\n")
    err = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    with pytest.raises(HelixError) as ei:
        relay.feed(b"data: " + enc(err) + b"\n\n")
    assert ei.value.status == 503 and ei.value.retry is Retry.YES
    assert b"overloaded" in ei.value.to_json()


def test_empty_stream_is_an_error():
    relay = GeminiStreamRelay("gemini", "m", 1, "x", OpenAIChunkSink(False))
    with pytest.raises(HelixError) as ei:
        relay.close()
    assert ei.value.kind is ErrorKind.UPSTREAM_PROTOCOL


# -------------------------------------------------------------------------- embeddings


def test_embeddings_single_and_batch():
    method, body = openai_to_gemini_embeddings({"input": "hi", "dimensions": 8},
                                               "text-embedding-004")
    assert method == "embedContent"
    assert body == {"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 8}
    types.EmbedContentConfig.model_validate({"outputDimensionality": 8})
    method, body = openai_to_gemini_embeddings({"input": ["a", "b"]}, "text-embedding-004")
    assert method == "batchEmbedContents"
    assert body == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}},
    ]}
    with pytest.raises(HelixError) as ei:
        openai_to_gemini_embeddings({"input": [1, 2, 3]}, "m")
    assert ei.value.param == "input"


def test_embeddings_response_float_and_base64():
    single = enc({"embedding": {"values": [0.5, -1.25]}})
    out = gemini_to_openai_embeddings(single, "text-embedding-004", False, "gemini")
    CreateEmbeddingResponse.model_validate(out)
    assert out["data"] == [{"object": "embedding", "index": 0, "embedding": [0.5, -1.25]}]
    batch = enc({"embeddings": [{"values": [1.0, 2.0]}, {"values": [3.0, 0.25]}]})
    types.EmbedContentResponse.model_validate(dec(batch))
    out = gemini_to_openai_embeddings(batch, "text-embedding-004", True, "gemini")
    raw = base64.b64decode(out["data"][1]["embedding"])
    assert struct.unpack("<2f", raw) == (3.0, 0.25)


# ------------------------------------------------------------------------------ errors


def test_google_error_body_becomes_openai_shape():
    body = enc({"error": {"code": 429, "message": "Quota exceeded",
                          "status": "RESOURCE_EXHAUSTED"}})
    err = gemini_error("gemini", 429, [(b"retry-after", b"3")], body)
    assert err.status == 429 and err.retry is Retry.YES
    assert err.headers == [(b"retry-after", b"3")]
    assert dec(err.to_json()) == {"error": {"message": "Quota exceeded", "type": "rate_limit_error",
                                            "param": None, "code": "resource_exhausted"}}
    listed = enc([{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}])
    err = gemini_error("gemini", 400, [], listed)
    assert err.status == 400 and err.retry is Retry.NO and err.type == "invalid_request_error"
    err = gemini_error("gemini", 502, [], b"<html>bad gateway</html>")
    assert err.status == 502 and err.retry is Retry.YES and "bad gateway" in err.message


# ------------------------------------------------------------------- adapter via registry


def registry(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return ModelRegistry(load_file(str(p), {}))


def test_adapter_urls_and_headers(tmp_path):
    reg = registry(tmp_path, """
providers:
  - {name: g, type: gemini, api_key: AIza-test-key, models: [gemini-2.5-flash, {name: emb, id: models/text-embedding-004}]}
""")  # noqa: E501
    dep = reg.resolve("gemini-2.5-flash")[0]
    assert dep.origin.host == "generativelanguage.googleapis.com"
    body = enc({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]})
    up = dep.adapter.chat_request(dep, decode_request(chat_request_decoder, body), body)
    assert up.target == b"/v1beta/models/gemini-2.5-flash:generateContent"
    assert (b"x-goog-api-key", b"AIza-test-key") in up.headers
    assert not any(k == b"authorization" for k, _ in up.headers)
    check_request_shape(dec(up.body))
    sbody = enc({"model": "gemini-2.5-flash", "stream": True,
                 "messages": [{"role": "user", "content": "hi"}]})
    up = dep.adapter.chat_request(dep, decode_request(chat_request_decoder, sbody), sbody)
    assert up.target == b"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    emb = reg.resolve("emb")[0]
    ebody = enc({"model": "emb", "input": ["a"], "encoding_format": "base64"})
    up = emb.adapter.embeddings_request(emb, decode_request(embeddings_request_decoder, ebody),
                                        ebody)
    assert up.target == b"/v1beta/models/text-embedding-004:batchEmbedContents"
    out = dec(emb.adapter.embeddings_response(emb, enc({"embeddings": [{"values": [1.0]}]})))
    # The adapter answers floats; forward encodes base64 for every translating adapter.
    assert out["data"][0]["embedding"] == [1.0]
    assert out["model"] == "emb"


def test_env_only_mode_configures_gemini():
    from helix.config import load_env

    reg = ModelRegistry(load_env({"GEMINI_API_KEY": "AIza-env"}))
    assert {"gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash",
            "text-embedding-004"} <= set(reg.by_name)
    assert (b"x-goog-api-key", b"AIza-env") in reg.resolve("gemini-2.5-pro")[0].static_headers
