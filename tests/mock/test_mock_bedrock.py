"""The Bedrock mock's Titan one-text rule, Converse tool choice, Claude thinking, structured
output and cache points, through boto3's bedrock-runtime client pointed straight at it
(botocore validates every request against the service model and parses every reply and event).
"""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

CLAUDE = "anthropic.claude-sonnet-4-6"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "nights": {"type": "integer", "minimum": 2},
                   "tags": {"type": "array", "items": {"enum": ["sea", "city"]}}},
    "required": ["city", "nights", "tags"],
    "additionalProperties": False,
}
TOOLS = {"tools": [
    {"toolSpec": {"name": "first", "inputSchema": {"json": {"type": "object"}}}},
    {"toolSpec": {"name": "book", "description": "Book", "inputSchema": {"json": SCHEMA}}},
]}
USER = [{"role": "user", "content": [{"text": "Book Lisbon"}]}]
THINKING = {"thinking": {"type": "enabled", "budget_tokens": 1024}}


@pytest.fixture
def bedrock(mock):
    return boto3.client(
        "bedrock-runtime", endpoint_url=mock.url, region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )


def converse(client, **kw):
    kw.setdefault("modelId", CLAUDE)
    kw.setdefault("messages", USER)
    return client.converse(**kw)


def stream_events(client, **kw):
    kw.setdefault("modelId", CLAUDE)
    kw.setdefault("messages", USER)
    return list(client.converse_stream(**kw)["stream"])


# --- Titan embeddings -------------------------------------------------------------------------


def test_titan_takes_one_input_text_per_call(bedrock):
    r = bedrock.invoke_model(modelId="amazon.titan-embed-text-v2:0",
                             body=json.dumps({"inputText": "hello", "dimensions": 256}))
    doc = json.loads(r["body"].read())
    assert len(doc["embedding"]) == 256 and doc["inputTextTokenCount"] == 1
    for body, needle in [
        ({"inputText": ["a", "b"]}, "#/inputText: expected type: String, found: JSONArray"),
        ({"texts": ["a"]}, "extraneous key [texts] is not permitted"),
        ({}, "required key [inputText] not found"),
        ({"inputText": "a", "dimensions": 16}, "#/dimensions: 16 is not a valid enum value"),
    ]:
        with pytest.raises(ClientError) as err:
            bedrock.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=json.dumps(body))
        assert err.value.response["Error"]["Code"] == "ValidationException"
        assert needle in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError, match="extraneous key \\[dimensions\\]"):
        bedrock.invoke_model(modelId="amazon.titan-embed-text-v1",
                             body=json.dumps({"inputText": "a", "dimensions": 256}))


# --- tool choice ------------------------------------------------------------------------------


def test_tool_choice_names_the_tool_and_its_input_is_schema_valid(bedrock):
    r = converse(bedrock, toolConfig={**TOOLS, "toolChoice": {"tool": {"name": "book"}}})
    assert r["stopReason"] == "tool_use"
    (block,) = r["output"]["message"]["content"]
    assert block["toolUse"]["name"] == "book"
    jsonschema.validate(block["toolUse"]["input"], SCHEMA)
    anyr = converse(bedrock, toolConfig={**TOOLS, "toolChoice": {"any": {}}})
    assert anyr["output"]["message"]["content"][0]["toolUse"]["name"] == "first"
    auto = converse(bedrock, toolConfig={**TOOLS, "toolChoice": {"auto": {}}})
    assert "text" in auto["output"]["message"]["content"][0]
    with pytest.raises(ClientError, match="not defined"):
        converse(bedrock, toolConfig={**TOOLS, "toolChoice": {"tool": {"name": "nope"}}})


def test_forced_tool_streams_its_input(bedrock):
    events = stream_events(bedrock, toolConfig={**TOOLS, "toolChoice": {"tool": {"name": "book"}}})
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "book"
    args = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"]
                   for e in events if "contentBlockDelta" in e)
    jsonschema.validate(json.loads(args), SCHEMA)


# --- Claude thinking --------------------------------------------------------------------------


def test_thinking_gives_a_signed_reasoning_block_first(bedrock):
    r = converse(bedrock, additionalModelRequestFields=THINKING,
                 inferenceConfig={"maxTokens": 4096})
    reasoning, text = r["output"]["message"]["content"]
    rt = reasoning["reasoningContent"]["reasoningText"]
    assert rt["text"].startswith("mock thinking about:") and rt["signature"]
    assert text["text"] == "mock reply to: Book Lisbon"
    events = stream_events(bedrock, additionalModelRequestFields=THINKING)
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    streamed = "".join(d["delta"]["reasoningContent"].get("text", "")
                       for d in deltas if d["contentBlockIndex"] == 0)
    sigs = [d["delta"]["reasoningContent"]["signature"] for d in deltas
            if "signature" in d["delta"].get("reasoningContent", {})]
    assert streamed == rt["text"] and sigs == [rt["signature"]]
    assert {d["contentBlockIndex"] for d in deltas if "text" in d["delta"]} == {1}


def test_tool_turns_with_thinking_need_the_reasoning_block_back(bedrock):
    ask = [{"role": "user", "content": [{"text": "please call tool"}]}]
    first = converse(bedrock, messages=ask, toolConfig=TOOLS,
                     additionalModelRequestFields=THINKING)
    content = first["output"]["message"]["content"]
    assert [next(iter(b)) for b in content] == ["reasoningContent", "toolUse"]
    tool_id = content[1]["toolUse"]["toolUseId"]
    result = {"role": "user", "content": [
        {"toolResult": {"toolUseId": tool_id, "content": [{"text": "booked"}]}}]}

    def again(assistant):
        return converse(bedrock, toolConfig=TOOLS, additionalModelRequestFields=THINKING,
                        messages=[*ask, {"role": "assistant", "content": assistant}, result])

    assert again(content)["stopReason"] == "end_turn"
    with pytest.raises(ClientError, match="Expected `thinking` or `redacted_thinking`"):
        again(content[1:])
    forged = copy.deepcopy(content)
    forged[0]["reasoningContent"]["reasoningText"]["text"] = "edited"
    with pytest.raises(ClientError, match="Invalid `signature`"):
        again(forged)
    with pytest.raises(ClientError, match="forces tool use"):
        converse(bedrock, toolConfig={**TOOLS, "toolChoice": {"any": {}}},
                 additionalModelRequestFields=THINKING)


# --- structured output and cache points ----------------------------------------------------


def test_output_config_json_schema(bedrock):
    fmt = {"textFormat": {"type": "json_schema", "structure": {
        "jsonSchema": {"schema": json.dumps(SCHEMA), "name": "trip"}}}}
    r = converse(bedrock, outputConfig=fmt)
    jsonschema.validate(json.loads(r["output"]["message"]["content"][0]["text"]), SCHEMA)


def test_cache_point_writes_then_reads(bedrock, mock):
    system = [{"text": "You are a booking agent for " + mock.url},
              {"cachePoint": {"type": "default"}}]
    first = converse(bedrock, system=system)["usage"]
    assert first["cacheWriteInputTokens"] > 0 and first["cacheReadInputTokens"] == 0
    second = converse(bedrock, system=system)["usage"]
    assert second["cacheReadInputTokens"] == first["cacheWriteInputTokens"]
    assert second["cacheWriteInputTokens"] == 0


def test_claude_features_per_model_are_relayed_model_errors(bedrock):
    fmt = {"textFormat": {"type": "json_schema", "structure": {
        "jsonSchema": {"schema": json.dumps(SCHEMA), "name": "trip"}}}}
    with pytest.raises(bedrock.exceptions.ValidationException,
                       match=r"following errors: output_config\.format: structured outputs"):
        converse(bedrock, modelId="anthropic.claude-3-7-sonnet-20250219-v1:0", outputConfig=fmt)
    with pytest.raises(bedrock.exceptions.ValidationException, match="'adaptive' is not"):
        converse(bedrock, modelId="anthropic.claude-sonnet-4-5-20250929-v1:0",
                 additionalModelRequestFields={"thinking": {"type": "adaptive"}})
    r = converse(bedrock, modelId="us.anthropic.claude-opus-4-6-v1",
                 additionalModelRequestFields={"thinking": {"type": "adaptive"}})
    assert "reasoningContent" in r["output"]["message"]["content"][0]
