"""Structured output and reasoning through a running two-worker helix, with the official SDKs,
to mocks that speak Anthropic's, Bedrock's and Gemini's wire formats (issue 13).

* ``response_format`` -- the openai SDK's ``parse()`` and ``stream()`` helpers get a parsed
  object from every technique: Anthropic structured outputs (Claude 4.5), the forced output
  tool (Claude 3.5 Haiku, Bedrock Claude 3.7), Bedrock ``outputConfig``, Gemini
  ``responseJsonSchema``; the Anthropic SDK's ``output_config.format`` reaches Gemini and the
  Responses API's ``text.format`` reaches Claude.
* ``reasoning_effort`` -- thinking text as ``reasoning_content``, reasoning tokens in the
  usage, and a tool loop that sends the assistant turn back as the SDK gave it (signed
  thinking blocks for Claude, the signature in the tool call id for Gemini 3), streamed or
  not; the mocks check the signatures.
"""

from __future__ import annotations

import base64
import json

import pydantic
import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess

openai = pytest.importorskip("openai")

KEY = "sk-upstream-fidelity-9911"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = {"role": "user", "content": "please call tool for Oslo"}


class Film(pydantic.BaseModel):
    title: str
    year: int
    cast: list[str]


def config(mock_url: str) -> str:
    return f"""
providers:
  - name: anthropic
    type: anthropic
    base_url: {mock_url}
    api_key: {KEY}
    models: [claude-sonnet-4-5, claude-3-5-haiku-20241022, claude-opus-4-7]
  - name: bedrock
    type: bedrock
    base_url: {mock_url}
    region: us-east-1
    aws_access_key_id: AKIDEXAMPLE
    aws_secret_access_key: {KEY}
    models: [anthropic.claude-sonnet-4-5-20250929-v1:0,
             us.anthropic.claude-3-7-sonnet-20250219-v1:0]
  - name: gemini
    type: gemini
    base_url: {mock_url}
    api_key: {KEY}
    models: [gemini-2.5-flash, gemini-3.5-flash]
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
    with openai.OpenAI(base_url=helix.base_url, api_key="client-key", max_retries=0,
                       timeout=15) as c:
        yield c


def upstream(mock) -> list[dict]:
    return [json.loads(base64.b64decode(r["body_b64"])) for r in mock.requests()
            if r["method"] == "POST"]


# --- structured output ------------------------------------------------------------------------

TECHNIQUE = {
    "claude-sonnet-4-5": "output_config",
    "claude-3-5-haiku-20241022": "tools",
    "anthropic.claude-sonnet-4-5-20250929-v1:0": "outputConfig",
    "us.anthropic.claude-3-7-sonnet-20250219-v1:0": "toolConfig",
    "gemini-2.5-flash": "generationConfig",
}


@pytest.mark.parametrize("model", list(TECHNIQUE))
def test_parse_gets_a_parsed_object_from_every_technique(client, mock, model):
    r = client.chat.completions.parse(model=model, response_format=Film, messages=[
        {"role": "user", "content": "a film please"}])
    choice = r.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert isinstance(choice.message.parsed, Film)
    [sent] = upstream(mock)
    assert TECHNIQUE[model] in sent
    if model == "gemini-2.5-flash":
        assert sent["generationConfig"]["responseJsonSchema"]["required"] == [
            "title", "year", "cast"]
    with client.chat.completions.stream(model=model, response_format=Film, messages=[
            {"role": "user", "content": "a film please"}]) as s:
        final = s.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Film)
    assert final.choices[0].finish_reason == "stop"


def test_anthropic_sdk_output_config_reaches_gemini(helix, mock):
    anthropic = pytest.importorskip("anthropic")
    mock.clear()
    schema = {"type": "object", "properties": {"title": {"type": "string"}},
              "required": ["title"], "additionalProperties": False}
    with anthropic.Anthropic(base_url=f"http://127.0.0.1:{helix.port}", api_key="k",
                             max_retries=0, timeout=15) as claude:
        msg = claude.messages.create(
            model="gemini-2.5-flash", max_tokens=200, messages=[
                {"role": "user", "content": "a film"}],
            output_config={"format": {"type": "json_schema", "schema": schema}})
    assert json.loads(msg.content[0].text) == {"title": "mock"}
    [sent] = upstream(mock)
    assert sent["generationConfig"]["responseJsonSchema"] == schema


def test_responses_text_format_and_reasoning_reach_claude(client, mock):
    schema = Film.model_json_schema()
    r = client.responses.create(model="claude-3-5-haiku-20241022", input="a film", text={
        "format": {"type": "json_schema", "name": "film", "schema": schema}})
    Film.model_validate_json(r.output_text)
    r = client.responses.create(model="claude-sonnet-4-5", input="think", reasoning={
        "effort": "medium"})
    kinds = [item.type for item in r.output]
    assert kinds == ["reasoning", "message"]
    assert r.usage.output_tokens_details.reasoning_tokens > 0
    assert upstream(mock)[-1]["thinking"] == {"type": "enabled", "budget_tokens": 8192}


# --- reasoning ----------------------------------------------------------------------------------


def _streamed_message(stream) -> tuple[dict, object]:
    """An assistant message as a client folds the chunks: text, reasoning, tool calls and the
    signed thinking blocks (each sent once, whole)."""
    msg: dict = {"role": "assistant", "content": "", "tool_calls": [], "thinking_blocks": []}
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            d = choice.delta
            extra = d.model_extra or {}
            msg["content"] += d.content or ""
            msg["thinking_blocks"] += extra.get("thinking_blocks") or []
            for tc in d.tool_calls or ():
                if tc.id:
                    msg["tool_calls"].append({"id": tc.id, "type": "function", "function": {
                        "name": tc.function.name, "arguments": ""}})
                msg["tool_calls"][tc.index]["function"]["arguments"] += \
                    tc.function.arguments or ""
    return msg, usage


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-opus-4-7",
                                   "anthropic.claude-sonnet-4-5-20250929-v1:0",
                                   "gemini-3.5-flash"])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_loop_with_reasoning_sends_the_turn_back_signed(client, mock, model, stream):
    kw = {"model": model, "tools": [WEATHER], "reasoning_effort": "high"}
    if stream:
        msg, usage = _streamed_message(client.chat.completions.create(
            messages=[ASK], stream=True, stream_options={"include_usage": True}, **kw))
    else:
        r = client.chat.completions.create(messages=[ASK], **kw)
        assert r.choices[0].finish_reason == "tool_calls"
        msg = r.choices[0].message.model_dump(exclude_none=True)
        usage = r.usage
        assert msg["reasoning_content"]
    if model.startswith("gemini"):
        assert "__ts__" in msg["tool_calls"][0]["id"]  # the thought signature rides there
    else:
        [block] = msg["thinking_blocks"]
        assert block["type"] == "thinking" and block["signature"]
    if not model.startswith(("anthropic.", "gemini")):  # Anthropic reports thinking tokens
        assert usage.completion_tokens_details.reasoning_tokens > 0
    result = {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "sunny"}
    second = client.chat.completions.create(messages=[ASK, msg, result], **kw)
    assert second.choices[0].finish_reason == "stop"
    sent = upstream(mock)[-1]
    if model.startswith("anthropic."):
        assert "reasoningContent" in sent["messages"][1]["content"][0]
        assert sent["additionalModelRequestFields"]["thinking"]["type"] == "enabled"
    elif model.startswith("gemini"):
        assert sent["contents"][1]["parts"][0]["thoughtSignature"]
    else:
        assert sent["messages"][1]["content"][0] == block
        assert sent["thinking"]["type"] == ("adaptive" if model == "claude-opus-4-7"
                                            else "enabled")


def test_a_forged_thinking_block_is_anthropics_400(client):
    r = client.chat.completions.create(model="claude-sonnet-4-5", messages=[ASK],
                                       tools=[WEATHER], reasoning_effort="low")
    msg = r.choices[0].message.model_dump(exclude_none=True)
    msg["thinking_blocks"][0]["thinking"] += " (edited)"
    result = {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "sunny"}
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="claude-sonnet-4-5", tools=[WEATHER],
                                       reasoning_effort="low", messages=[ASK, msg, result])
    assert "Invalid `signature`" in ei.value.message


def test_reasoning_effort_to_a_model_that_cannot_reason_is_a_400(client, mock):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="claude-3-5-haiku-20241022", reasoning_effort="high",
                                       messages=[{"role": "user", "content": "hi"}])
    assert ei.value.body["param"] == "reasoning_effort"
    assert ei.value.body["code"] == "unsupported_parameter"
    assert upstream(mock) == []  # refused before anything went upstream


FN = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}


@pytest.mark.parametrize("stream", [False, True])
def test_responses_reasoning_items_carry_claudes_signed_thinking_back(client, mock, stream):
    """Codex-style (store false, the output items sent back) and stored-conversation style
    (previous_response_id): the reasoning item's encrypted_content brings the signed block back,
    so Claude keeps thinking across the tool turn."""
    kw = {"model": "claude-sonnet-4-5", "tools": [FN], "reasoning": {"effort": "high"}}
    ask = [{"role": "user", "content": "please call tool for Oslo"}]
    if stream:
        with client.responses.stream(input=ask, store=False, **kw) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(input=ask, store=False, **kw)
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert call.type == "function_call"
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    items = [i.model_dump(exclude_none=True) for i in first.output]
    second = client.responses.create(input=[*ask, *items, result], store=False, **kw)
    assert second.output_text
    sent = upstream(mock)[-1]
    assert sent["thinking"]["type"] == "enabled"
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["thinking", "tool_use"]
    stored = client.responses.create(input=ask, **kw)
    client.responses.create(input=[result | {"call_id": stored.output[-1].call_id}],
                            previous_response_id=stored.id, **kw)
    sent = upstream(mock)[-1]
    assert sent["thinking"]["type"] == "enabled" and sent["messages"][1]["content"][0][
        "type"] == "thinking"
