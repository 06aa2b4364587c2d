"""Structured output, reasoning and signed thinking across the translating providers (issue 13):
``helix.providers.features`` and what each adapter makes of it, with the providers' SDK types
and botocore's model as oracles of the wire shapes, and the mocks' own handlers (in process,
``tests/conformance/harness.py``) answering, so a round trip is checked the way the provider
checks it (signatures, forced tools, model features)."""

from __future__ import annotations

import base64
import json

import jsonschema
import pydantic
import pytest
from anthropic.types import message_create_params as mcp
from botocore.validate import ParamValidator
from google.genai import types as gtypes

from helix.cache.replay import sse_to_json
from helix.errors import HelixError
from helix.providers import anthropic as A
from helix.providers import bedrock, gemini
from helix.providers.features import (
    ANTHROPIC_BUDGETS,
    OUTPUT_TOOL,
    Capabilities,
    anthropic_thinking,
    capabilities,
    effort_of,
    strict_schema,
    thinking_blocks_of,
)
from tests.conformance import harness
from tests.providers.test_bedrock import SERVICE

CREATE = pydantic.TypeAdapter(mcp.MessageCreateParamsNonStreaming)
USER = {"role": "user", "content": "please call tool"}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
FILM = {"type": "object", "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "film", "schema": FILM}}
MODELS = {
    "anthropic": ["claude-sonnet-4-5", "claude-opus-4-7", "claude-3-7-sonnet-20250219"],
    "bedrock": ["anthropic.claude-sonnet-4-5-20250929-v1:0",
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0", "meta.llama3-70b-instruct-v1:0"],
    "gemini": ["gemini-2.5-flash", "gemini-3.5-flash", "gemini-2.0-flash"],
    "vertex": ["claude-opus-4-6"],
}


@pytest.fixture(scope="module")
def deps(tmp_path_factory):
    reg = harness.registry(MODELS, tmp_path_factory.mktemp("features"))
    return {m: reg.providers[p].deployments[m] for p, ms in MODELS.items() for m in ms}


def answer(dep, doc: dict) -> dict:
    """The OpenAI chat.completion a client gets (a stream folded back into one)."""
    got = harness.chat(dep, {"model": dep.model, **doc})
    assert got.status == 200, got.body
    return json.loads(sse_to_json(got.body) if doc.get("stream") else got.body)


def sent(dep, doc: dict) -> dict:
    """The provider request body Helix builds."""
    raw = json.dumps({"model": dep.model, **doc}).encode()
    view = harness.chat_request_decoder.decode(raw)
    return json.loads(dep.adapter.chat_request(dep, view, raw).body)


# --- features.py ----------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "family", "expected"), [
    ("claude-opus-4-7", "anthropic", ("native", "adaptive")),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic", ("native", "budget")),
    ("claude-3-7-sonnet@20250219", "anthropic", ("tool", "budget")),
    ("claude-3-5-haiku-latest", "anthropic", ("tool", "none")),
    ("claude-next-unknown", "anthropic", ("native", "adaptive")),  # newest technique
    ("gemini-2.0-flash-001", "gemini", ("openapi", "none")),
    ("gemini-2.5-pro", "gemini", ("native", "budget")),
    ("gemini-4-unknown", "gemini", ("native", "level")),
    ("amazon.nova-pro-v1:0", "bedrock", ("tool", "none")),
    ("us.meta.llama3-2-90b-instruct-v1:0", "bedrock", ("prompt", "none")),
])
def test_capabilities_come_from_the_registry_with_family_defaults(model, family, expected):
    assert capabilities(model, family)[:2] == expected


def test_strict_schema_closes_objects_and_keeps_what_it_cannot_enforce_readable():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "minItems": 3},
            "kind": {"oneOf": [{"const": "a"}, {"type": "integer", "maximum": 9}]},
            "when": {"type": "string", "format": "date"},
            "note": {"type": ["string", "null"], "maxLength": 5},
        },
        "required": ["tags"],
        "$defs": {"Tag": {"type": "object", "properties": {"v": {"type": "string"}},
                          "additionalProperties": True}},
    }
    assert strict_schema(schema) == {
        "$defs": {"Tag": {"type": "object", "properties": {"v": {"type": "string"}},
                          "additionalProperties": False}},
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"},
                     "description": "{minItems: 3}"},
            "kind": {"anyOf": [{"const": "a"},
                               {"type": "integer", "description": "{maximum: 9}"}]},
            "when": {"type": "string", "format": "date"},
            "note": {"anyOf": [{"type": "string", "description": "{maxLength: 5}"},
                               {"type": "null"}]},
        },
        "additionalProperties": False,
        "required": ["tags"],
    }


@pytest.mark.parametrize(("effort", "caps", "param"), [
    ("huge", Capabilities("native", "budget"), "reasoning_effort"),
    ("low", Capabilities("tool", "none", "claude-3-5-haiku"), "reasoning_effort"),
])
def test_bad_or_unsupported_efforts_are_400s(effort, caps, param):
    with pytest.raises(HelixError) as ei:
        effort_of({"reasoning_effort": effort}, caps)
    assert ei.value.status == 400 and ei.value.param == param
    assert caps.model in ei.value.message or effort == "huge"


def test_no_reasoning_asked_of_a_model_without_it_is_fine():
    caps = Capabilities("tool", "none")
    assert effort_of({"reasoning_effort": "none"}, caps) is None
    assert effort_of({"reasoning_effort": "minimal"}, caps) is None
    assert effort_of({}, Capabilities("native", "budget")) is None


def test_anthropic_budgets_keep_anthropics_rules():
    budget = Capabilities("native", "budget")
    for effort, tokens in ANTHROPIC_BUDGETS.items():
        thinking, level = anthropic_thinking(effort, budget, 64000, {})
        assert thinking == {"type": "enabled", "budget_tokens": tokens} and level is None
    # a small max_tokens: at most half of it, never under 1024, always below max_tokens
    assert anthropic_thinking("high", budget, 3000, {})[0]["budget_tokens"] == 1500
    assert anthropic_thinking("high", budget, 1500, {})[0]["budget_tokens"] == 1024
    with pytest.raises(HelixError) as ei:
        anthropic_thinking("low", budget, 1024, {})
    assert ei.value.param == "max_completion_tokens"
    for doc, param in (({"temperature": 0.2}, "temperature"), ({"top_p": 0.5}, "top_p")):
        with pytest.raises(HelixError) as ei:
            anthropic_thinking("low", budget, 8000, doc)
        assert ei.value.status == 400 and ei.value.param == param
    assert anthropic_thinking("low", budget, 8000, {"temperature": 1, "top_p": 0.95})[0]
    assert anthropic_thinking("none", budget, 8000, {"temperature": 0}) == (None, None)
    adaptive = Capabilities("native", "adaptive")
    assert anthropic_thinking("minimal", adaptive, 100, {}) == ({"type": "adaptive"}, "low")
    assert anthropic_thinking("xhigh", adaptive, 100, {}) == ({"type": "adaptive"}, "xhigh")


def test_thinking_blocks_are_read_from_litellm_or_openrouter_shapes():
    signed = {"type": "thinking", "thinking": "t", "signature": "s"}
    redacted = {"type": "redacted_thinking", "data": "d"}
    msg = {"thinking_blocks": [signed, {"type": "thinking", "thinking": "x"}, redacted]}
    assert thinking_blocks_of(msg, "m") == [signed, redacted]  # unsigned ones left out
    details = {"reasoning_details": [
        {"type": "reasoning.text", "text": "t", "signature": "s", "format": "anthropic"},
        {"type": "reasoning.encrypted", "data": "d"}, {"type": "reasoning.summary"}]}
    assert thinking_blocks_of(details, "m") == [signed, redacted]
    with pytest.raises(HelixError):
        thinking_blocks_of({"thinking_blocks": "nope"}, "messages[1]")


# --- Anthropic (and Claude on Vertex) -------------------------------------------------------


def test_reasoning_effort_is_a_thinking_budget_or_adaptive_thinking(deps):
    budget = sent(deps["claude-sonnet-4-5"], {"messages": [USER], "reasoning_effort": "medium",
                                              "max_completion_tokens": 20000})
    assert budget["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert "output_config" not in budget
    adaptive = sent(deps["claude-opus-4-7"], {"messages": [USER], "reasoning_effort": "high",
                                              "response_format": FORMAT})
    assert adaptive["thinking"] == {"type": "adaptive"}
    assert adaptive["output_config"]["effort"] == "high"
    assert adaptive["output_config"]["format"]["schema"]["additionalProperties"] is False
    for body in (budget, adaptive):
        CREATE.validate_python(body)
    vertex = sent(deps["claude-opus-4-6"], {"messages": [USER], "reasoning_effort": "low"})
    assert vertex["thinking"] == {"type": "adaptive"} and "model" not in vertex


def test_client_thinking_wins_and_its_output_config_merges(deps):
    body = sent(deps["claude-opus-4-7"], {
        "messages": [USER], "reasoning_effort": "high", "response_format": FORMAT,
        "thinking": {"type": "disabled"}, "output_config": {"effort": "max"}})
    assert body["thinking"] == {"type": "disabled"}
    assert body["output_config"]["effort"] == "max" and "format" in body["output_config"]


def test_output_tool_while_thinking_is_offered_not_forced(deps):
    body = sent(deps["claude-3-7-sonnet-20250219"], {
        "messages": [USER], "reasoning_effort": "low", "response_format": FORMAT})
    assert body["thinking"]["type"] == "enabled"
    assert [t["name"] for t in body["tools"]] == [OUTPUT_TOOL] and "tool_choice" not in body
    assert OUTPUT_TOOL in body["system"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-opus-4-6"])
def test_signed_thinking_round_trips_across_a_tool_turn(deps, model, stream):
    dep = deps[model]
    first = answer(dep, {"messages": [USER], "tools": [WEATHER], "reasoning_effort": "high",
                         "stream": stream})
    msg = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    [block] = msg["thinking_blocks"]
    assert block["thinking"] == msg["reasoning_content"] and block["signature"]
    result = {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "sunny"}
    turn = {"messages": [USER, msg, result], "tools": [WEATHER], "reasoning_effort": "high"}
    body = sent(dep, turn)
    assert body["thinking"]["type"] in ("enabled", "adaptive")
    assert [b["type"] for b in body["messages"][1]["content"]] == ["thinking", "tool_use"]
    assert body["messages"][1]["content"][0] == block
    assert answer(dep, turn)["choices"][0]["finish_reason"] == "stop"  # the mock checked it
    # A client that does not send the block back: thinking is left off, and the turn works.
    bare = {k: v for k, v in msg.items() if k != "thinking_blocks"}
    body = sent(dep, {**turn, "messages": [USER, bare, result]})
    assert "thinking" not in body
    assert answer(dep, {**turn, "messages": [USER, bare, result]})["choices"]
    # A forged signature is Anthropic's own 400.
    forged = {**msg, "thinking_blocks": [{**block, "thinking": "edited"}]}
    got = harness.chat(dep, {"model": model, **turn, "messages": [USER, forged, result]})
    assert got.status == 400 and b"Invalid `signature`" in got.body


def test_structured_output_answers_json_with_each_technique(deps):
    for model in ("claude-sonnet-4-5", "claude-3-7-sonnet-20250219"):
        for stream in (False, True):
            doc = answer(deps[model], {"messages": [USER], "response_format": FORMAT,
                                       "stream": stream})
            choice = doc["choices"][0]
            assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
            jsonschema.validate(json.loads(choice["message"]["content"]), FILM)


def test_redacted_thinking_and_thinking_tokens_reach_the_client():
    message = {"id": "msg_1", "model": "claude-sonnet-4-5", "stop_reason": "end_turn",
               "content": [{"type": "redacted_thinking", "data": "ENCRYPTED"},
                           {"type": "thinking", "thinking": "hm", "signature": "sig"},
                           {"type": "text", "text": "ok"}],
               "usage": {"input_tokens": 3, "output_tokens": 9,
                         "output_tokens_details": {"thinking_tokens": 7}}}
    doc, usage = A.anthropic_to_openai_response(message, "m", 0)
    msg = doc["choices"][0]["message"]
    assert msg["thinking_blocks"] == [{"type": "redacted_thinking", "data": "ENCRYPTED"},
                                      {"type": "thinking", "thinking": "hm", "signature": "sig"}]
    assert doc["usage"]["completion_tokens_details"] == {"reasoning_tokens": 7}
    assert usage.reasoning == 7
    events = [
        {"type": "message_start", "message": {**message, "content": [], "usage": {
            "input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "redacted_thinking", "data": "ENCRYPTED"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
         "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    from helix.api.chat import OpenAIChunkSink

    relay = A.AnthropicStreamRelay("m", 0, OpenAIChunkSink(False))
    raw = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    folded = json.loads(sse_to_json(relay.feed(raw) + relay.close()))
    assert folded["choices"][0]["message"]["thinking_blocks"] == [
        {"type": "redacted_thinking", "data": "ENCRYPTED"}]


# --- Bedrock Converse ----------------------------------------------------------------------


def validate_converse(body: dict) -> None:
    shape = SERVICE.operation_model("Converse").input_shape
    report = ParamValidator().validate({"modelId": "m", **body}, shape)
    assert not report.has_errors(), report.generate_report()


def test_bedrock_structured_output_per_model(deps):
    native = sent(deps["anthropic.claude-sonnet-4-5-20250929-v1:0"],
                  {"messages": [USER], "response_format": FORMAT})
    spec = native["outputConfig"]["textFormat"]
    assert spec["type"] == "json_schema" and spec["structure"]["jsonSchema"]["name"] == "film"
    assert json.loads(spec["structure"]["jsonSchema"]["schema"])["additionalProperties"] is False
    tool = sent(deps["us.anthropic.claude-3-7-sonnet-20250219-v1:0"],
                {"messages": [USER], "response_format": FORMAT})
    assert tool["toolConfig"] == {"tools": [{"toolSpec": {
        "name": OUTPUT_TOOL, "description": tool["toolConfig"]["tools"][0]["toolSpec"][
            "description"], "inputSchema": {"json": FILM}}}],
        "toolChoice": {"tool": {"name": OUTPUT_TOOL}}}
    prompt = sent(deps["meta.llama3-70b-instruct-v1:0"],
                  {"messages": [USER], "response_format": FORMAT})
    assert "JSON Schema" in prompt["system"][-1]["text"] and "toolConfig" not in prompt
    for body in (native, tool, prompt):
        validate_converse(body)


def test_bedrock_claude_reasons_through_additional_fields(deps):
    dep = deps["anthropic.claude-sonnet-4-5-20250929-v1:0"]
    body = sent(dep, {"messages": [USER], "reasoning_effort": "low"})
    assert body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert body["inferenceConfig"]["maxTokens"] == 64000  # the registry's max output
    validate_converse(body)
    with pytest.raises(HelixError) as ei:
        sent(deps["meta.llama3-70b-instruct-v1:0"], {"messages": [USER], "reasoning_effort": "low"})
    assert ei.value.param == "reasoning_effort"


@pytest.mark.parametrize("stream", [False, True])
def test_bedrock_reasoning_round_trip_and_structured_answers(deps, stream):
    dep = deps["anthropic.claude-sonnet-4-5-20250929-v1:0"]
    first = answer(dep, {"messages": [USER], "tools": [WEATHER], "reasoning_effort": "high",
                         "stream": stream})
    msg = first["choices"][0]["message"]
    [block] = msg["thinking_blocks"]
    assert block["signature"] and block["thinking"] == msg["reasoning_content"]
    result = {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "sunny"}
    turn = {"messages": [USER, msg, result], "tools": [WEATHER], "reasoning_effort": "high"}
    body = sent(dep, turn)
    validate_converse(body)
    assert body["messages"][1]["content"][0] == {"reasoningContent": {"reasoningText": {
        "text": block["thinking"], "signature": block["signature"]}}}
    assert answer(dep, turn)["choices"][0]["finish_reason"] == "stop"
    bare = {k: v for k, v in msg.items() if k != "thinking_blocks"}
    assert "additionalModelRequestFields" not in sent(dep, {**turn, "messages": [
        USER, bare, result]})
    for model in ("anthropic.claude-sonnet-4-5-20250929-v1:0",
                  "us.anthropic.claude-3-7-sonnet-20250219-v1:0"):
        doc = answer(deps[model], {"messages": [USER], "response_format": FORMAT,
                                   "stream": stream})
        assert doc["choices"][0]["finish_reason"] == "stop"
        jsonschema.validate(json.loads(doc["choices"][0]["message"]["content"]), FILM)


def test_bedrock_redacted_reasoning_goes_both_ways():
    resp = bedrock.schema.converse_response_decoder.decode(json.dumps({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"redactedContent": "UkVEQUNURUQ="}}, {"text": "hi"}]}},
        "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 1}}))
    doc, _ = bedrock.from_converse(resp, "m")
    blocks = doc["choices"][0]["message"]["thinking_blocks"]
    assert blocks == [{"type": "redacted_thinking", "data": "UkVEQUNURUQ="}]
    body = bedrock.to_converse({"messages": [
        USER, {"role": "assistant", "content": "hi", "thinking_blocks": blocks},
        {"role": "user", "content": "more"}]}, "anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert body["messages"][1]["content"][0] == {"reasoningContent": {
        "redactedContent": "UkVEQUNURUQ="}}
    validate_converse(body)


# --- Gemini and Vertex --------------------------------------------------------------------


def test_gemini_thinking_config_per_generation(deps):
    two5 = sent(deps["gemini-2.5-flash"], {"messages": [USER], "reasoning_effort": "medium"})
    assert two5["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 8192,
                                                          "includeThoughts": True}
    three = sent(deps["gemini-3.5-flash"], {"messages": [USER], "reasoning_effort": "none"})
    assert three["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "minimal",
                                                           "includeThoughts": False}
    for body in (two5, three):
        gtypes.GenerateContentConfig.model_validate(body["generationConfig"])
    with pytest.raises(HelixError):
        sent(deps["gemini-2.0-flash"], {"messages": [USER], "reasoning_effort": "high"})


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_thoughts_and_json_schema(deps, stream):
    doc = answer(deps["gemini-2.5-flash"], {"messages": [USER], "reasoning_effort": "low",
                                            "response_format": FORMAT, "stream": stream})
    msg = doc["choices"][0]["message"]
    assert msg["reasoning_content"].startswith("mock thoughts about:")
    jsonschema.validate(json.loads(msg["content"]), FILM)
    if not stream:
        assert doc["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_3_signature_rides_in_the_tool_call_id(deps, stream):
    dep = deps["gemini-3.5-flash"]
    first = answer(dep, {"messages": [USER], "tools": [WEATHER], "stream": stream})
    call = first["choices"][0]["message"]["tool_calls"][0]
    head, sep, packed = call["id"].partition(gemini.SIGNATURE_SEP)
    assert sep and packed and set(call["id"]) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    result = {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
    turn = {"messages": [USER, first["choices"][0]["message"], result], "tools": [WEATHER]}
    part = sent(dep, turn)["contents"][1]["parts"][0]
    assert base64.b64decode(part["thoughtSignature"]).startswith(b"mock-thought:")
    assert answer(dep, turn)["choices"][0]["message"]["content"].startswith("tool said:")
    # A call id without the signature (another model's turn): Google's documented stand-in.
    plain = {**call, "id": head}
    bare = {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [plain]},
                         {**result, "tool_call_id": head}], "tools": [WEATHER]}
    assert sent(dep, bare)["contents"][1]["parts"][0]["thoughtSignature"] == gemini.UNSIGNED
    assert answer(dep, bare)["choices"]
    assert "thoughtSignature" not in sent(deps["gemini-2.5-flash"], bare)["contents"][1][
        "parts"][0]

