"""Every translated non-stream completion, embedding list and error validates against OpenAI's
published schema, field for field (issue 13).

Each case goes through the real adapter both ways, against the mock handler of that provider's
wire format (``harness.py``), so the shapes are what a client of Helix gets: Anthropic, Gemini,
Vertex (Gemini and Claude), Bedrock Converse and Cohere, with text, tool calls (chosen and
forced), tool results, length cuts, JSON mode and several candidates.  ``validate.py`` holds
the checks; its ``check_stream`` is the same standard for chunks, kept for the stream relays.
"""

from __future__ import annotations

import importlib
import json

import jsonschema
import pytest

from helix.errors import HelixError
from helix.providers.features import capabilities
from tests.conformance import harness
from tests.conformance.validate import (
    check_completion,
    check_embeddings,
    check_error,
)

# Each technique of structured output and reasoning (helix.providers.features) is here:
# native + adaptive (Claude 4.6), tool + budget (Claude 3.7), native + budget (Gemini 2.5),
# openapi schema, no reasoning (Gemini 2.0), the tool technique on Bedrock Claude 3.7.
CHAT = {
    "anthropic": ["claude-sonnet-4-6", "claude-3-7-sonnet-20250219"],
    "gemini": ["gemini-2.5-flash", "gemini-2.0-flash"],
    "vertex": ["gemini-2.5-pro", "claude-opus-4-6"],
    "bedrock": ["anthropic.claude-sonnet-4-6", "anthropic.claude-3-7-sonnet-20250219-v1:0"],
    "cohere": "command-a-03-2025",
}
EMBED = {
    "gemini": "text-embedding-004",
    "vertex": "text-embedding-005",
    "bedrock": ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"],
    "cohere": "embed-v4.0",
}
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
OTHER = {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
FILM = {"type": "object", "properties": {
    "title": {"type": "string"}, "year": {"type": "integer"},
    "cast": {"type": "array", "items": {"type": "string"}},
    "rating": {"type": ["number", "null"]}},
    "required": ["title", "year", "cast", "rating"], "additionalProperties": False}


def user(text):
    return {"role": "user", "content": text}


CASES = {
    "text": {"messages": [user("hello there")]},
    "system": {"messages": [{"role": "system", "content": "be brief"}, user("hi")]},
    "tool_auto": {"messages": [user("please call tool")], "tools": [WEATHER, OTHER]},
    "tool_forced": {
        "messages": [user("weather in Oslo")],
        "tools": [OTHER, WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    },
    "tool_result": {
        "messages": [
            user("please call tool"),
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo","days":1}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [WEATHER],
    },
    "length": {"messages": [user("one two three four five six")], "max_tokens": 2},
    "json_mode": {"messages": [user("give json")], "response_format": {"type": "json_object"}},
    "json_schema": {"messages": [user("give json")], "response_format": {
        "type": "json_schema", "json_schema": {"name": "film", "schema": FILM, "strict": True}}},
    "reasoning": {"messages": [user("think first")], "reasoning_effort": "low"},
    "reasoning_json": {"messages": [user("think, then call tool")], "reasoning_effort": "medium",
                       "response_format": {"type": "json_schema",
                                           "json_schema": {"name": "film", "schema": FILM}}},
}
REASONING_CASES = ("reasoning", "reasoning_json")


def _family(provider: str, model: str) -> str:
    if "claude" in model:
        return "anthropic"
    return {"vertex": "gemini", "bedrock": "bedrock"}.get(provider, provider)


def supported(provider: str, model: str, case: str) -> bool:
    """Whether the model can be asked for ``case`` (reasoning needs a model that reasons)."""
    if case not in REASONING_CASES:
        return True
    return capabilities(model, _family(provider, model)).reasoning != "none"


def _pairs(table):
    for name, models in table.items():
        for model in models if isinstance(models, list) else [models]:
            yield name, model


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    models: dict[str, list[str]] = {}
    for table in (CHAT, EMBED):
        for name, model in _pairs(table):
            models.setdefault(name, []).append(model)
    return harness.registry(models, tmp_path_factory.mktemp("conformance"))


def _dep(registry, name, model):
    return registry.providers[name].deployments[model]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(("provider", "model"), list(_pairs(CHAT)))
def test_translated_completion_conforms(registry, provider, model, case):
    dep = _dep(registry, provider, model)
    if not supported(provider, model, case):  # reasoning_effort to a model that cannot reason
        with pytest.raises(HelixError) as ei:
            harness.chat(dep, {"model": model, **CASES[case]})
        assert ei.value.status == 400 and ei.value.param == "reasoning_effort"
        assert check_error(json.loads(ei.value.to_json())) == []
        return
    answer = harness.chat(dep, {"model": model, **CASES[case]})
    assert answer.status == 200, answer.body
    doc = json.loads(answer.body)
    assert check_completion(doc) == []
    choice = doc["choices"][0]
    assert choice["message"]["refusal"] is None and choice["logprobs"] is None
    if case in ("tool_auto", "tool_forced"):
        assert choice["finish_reason"] == "tool_calls"
    if case == "tool_forced":
        call = choice["message"]["tool_calls"][0]["function"]
        assert call["name"] == "get_weather"
        assert set(json.loads(call["arguments"])) == {"city", "days"}
    if case == "length" and provider != "cohere":  # the Cohere mock has no length cut
        assert choice["finish_reason"] == "length"
    if case in ("json_schema", "reasoning_json"):  # structured output, whatever the technique
        assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
        jsonschema.validate(json.loads(choice["message"]["content"]), FILM)
    if case in REASONING_CASES:
        assert choice["message"]["reasoning_content"]
        if "claude" in model:  # signed, for the client to send back
            [block] = choice["message"]["thinking_blocks"]
            assert block["type"] == "thinking" and block["signature"]
            assert block["thinking"] == choice["message"]["reasoning_content"]


def test_several_candidates_conform(registry):
    answer = harness.chat(_dep(registry, "gemini", "gemini-2.5-flash"),
                          {"model": "m", "messages": [user("hi")], "n": 2})
    doc = json.loads(answer.body)
    assert [c["index"] for c in doc["choices"]] == [0, 1]
    assert check_completion(doc) == []


def test_system_fingerprint_follows_the_upstream_model_version(registry):
    dep = _dep(registry, "gemini", "gemini-2.5-flash")
    a = json.loads(harness.chat(dep, {"model": "m", "messages": [user("a")]}).body)
    b = json.loads(harness.chat(dep, {"model": "m", "messages": [user("b")]}).body)
    assert a["system_fingerprint"] == b["system_fingerprint"]
    assert a["system_fingerprint"].startswith("fp_") and a["service_tier"] == "default"
    other = json.loads(harness.chat(_dep(registry, "vertex", "gemini-2.5-pro"),
                                    {"model": "m", "messages": [user("a")]}).body)
    assert other["system_fingerprint"] != a["system_fingerprint"]


# Titan takes one text per upstream call: a list to Titan is the batch fan-out of issue 13
# (the lead's part); until then the adapter refuses it before any upstream call.
EMBED_CASES = [
    (provider, model, inputs)
    for provider, model in _pairs(EMBED)
    for inputs in ("one text", ["first text", "second text"])
    if not ("titan" in model and isinstance(inputs, list))
]


@pytest.mark.parametrize(("provider", "model", "inputs"), EMBED_CASES)
def test_translated_embeddings_conform(registry, provider, model, inputs):
    answer = harness.embeddings(_dep(registry, provider, model), {"model": model, "input": inputs})
    assert answer.status == 200, answer.body
    doc = json.loads(answer.body)
    assert check_embeddings(doc) == []
    assert len(doc["data"]) == (len(inputs) if isinstance(inputs, list) else 1)


@pytest.mark.parametrize(("provider", "model"), list(_pairs(CHAT)))
def test_translated_provider_errors_conform(registry, provider, model):
    dep = _dep(registry, provider, model)
    module = {"anthropic": "anthropic", "gemini": "gemini", "vertex": "gemini",
              "bedrock": "bedrock", "cohere": "cohere"}[provider]
    routes = importlib.import_module(f"helix.mock.{module}_routes")
    for status in (400, 429, 500):
        reply = routes.error_reply(status, "mock says no")
        err = dep.adapter.error(dep, status, [(k.encode(), v.encode()) for k, v in reply.headers],
                                reply.body)
        assert isinstance(err, HelixError)
        assert check_error(json.loads(err.to_json())) == []


def test_validator_catches_what_issue_13_describes():
    """The checks themselves fail on the shapes the issue reports (a test that cannot fail
    proves nothing)."""
    good = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "service_tier": "default", "system_fingerprint": "fp_1",
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hi", "refusal": None}}]}
    assert check_completion(good) == []
    no_refusal = json.loads(json.dumps(good))
    del no_refusal["choices"][0]["message"]["refusal"]
    assert any("refusal" in p for p in check_completion(no_refusal))
    extra = json.loads(json.dumps(good))
    extra["choices"][0]["message"]["thoughts"] = "hmm"
    assert check_completion(extra) == [
        "choices[].message.thoughts: not a field of OpenAI's CreateChatCompletionResponse"]
    extra["choices"][0]["message"]["reasoning_content"] = "ok"  # the documented extension
    assert len(check_completion(extra)) == 1
    null_fp = {**good, "system_fingerprint": None}
    assert any("system_fingerprint" in p for p in check_completion(null_fp))
    bare = {k: v for k, v in good.items() if k not in ("service_tier", "usage")}
    assert len(check_completion(bare)) == 2


def test_stream_checks_catch_broken_streams():
    """check_stream (the standard the stream relays are held to) passes OpenAI's own shape and
    names what is wrong in broken ones."""
    from tests.conformance.validate import check_stream

    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "service_tier": "default", "system_fingerprint": "fp_1"}

    def sse(*chunks, done=True):
        out = b"".join(b"data: " + json.dumps({**head, **c}).encode() + b"\n\n" for c in chunks)
        return out + (b"data: [DONE]\n\n" if done else b"")

    def choice(delta, finish=None):
        return {"choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]}

    usage = {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                      "total_tokens": 2}}
    good = [choice({"role": "assistant", "content": ""}), choice({"content": "hi"}),
            choice({}, "stop")]
    assert check_stream(sse(*good, usage), include_usage=True) == []
    assert check_stream(sse(*good), include_usage=False) == []
    assert check_stream(sse(*good, usage, done=False), include_usage=True) == [
        "stream: does not end with data: [DONE]"]
    assert check_stream(sse(*good), include_usage=True) == [
        "stream: last chunk is not the usage chunk (choices [] + usage)"]
    assert check_stream(sse(*good[1:]), include_usage=None) == [
        "chunk 0: first delta of choice 0 has no role: assistant"]
    assert check_stream(sse(*good, choice({}, "stop"))) == ["stream: choice 0 finished 2 times"]
    bad = choice({"role": "assistant", "content": 5})
    assert any("chunk 0: choices[0].delta.content" in p for p in check_stream(sse(bad)))
    assert check_stream(sse(*good, {**usage, "model": "other"})) == [
        "stream: chunks disagree on model"]


def test_stream_gaps_are_known():
    """Every translated stream (each provider x case, with and without include_usage) through
    today's relays has exactly the documented chunk gaps: no other field is wrong, and a fixed
    gap must leave the list (stream_report.py)."""
    from tests.conformance.stream_report import KNOWN_CHUNK_GAPS, gaps

    found = gaps()
    assert set(found) == KNOWN_CHUNK_GAPS, sorted(found)


@pytest.mark.parametrize("case", ["json_mode", "json_schema", *REASONING_CASES])
@pytest.mark.parametrize(("provider", "model"), list(_pairs(CHAT)))
def test_streamed_structured_output_and_reasoning(registry, provider, model, case):
    """The stream says what the JSON answer says: structured output as content deltas (the
    output tool's input fragments on tool-technique models), reasoning as
    ``reasoning_content`` deltas, each signed thinking block once, whole."""
    if not supported(provider, model, case):
        return
    from helix.cache.replay import sse_to_json
    from tests.conformance.validate import check_stream

    answer = harness.chat(_dep(registry, provider, model),
                          {"model": model, **CASES[case], "stream": True})
    assert answer.status == 200, answer.body
    assert check_stream(answer.body, include_usage=False) == []
    choice = json.loads(sse_to_json(answer.body))["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    if case != "reasoning":
        value = json.loads(choice["message"]["content"])
        if case != "json_mode":
            jsonschema.validate(value, FILM)
    if case in REASONING_CASES:
        assert choice["message"]["reasoning_content"]
        if "claude" in model:
            [block] = choice["message"]["thinking_blocks"]
            assert block["signature"] and block["thinking"] == choice["message"][
                "reasoning_content"]
