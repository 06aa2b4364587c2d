"""The Anthropic mock's forced tools, thinking, structured outputs and prompt caching, through
the official anthropic SDK pointed straight at it (the SDK's types parse every reply and event).

These are the upstream behaviours Helix's translation relies on (issue 13): they must match
Anthropic's, so each is checked the way a client sees it.
"""

from __future__ import annotations

import copy

import jsonschema
import pytest

anthropic = pytest.importorskip("anthropic")

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 3},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "when": {"type": "string", "format": "date"},
        "stops": {"type": "array", "items": {"$ref": "#/$defs/stop"}, "minItems": 2},
        "note": {"type": ["string", "null"]},
    },
    "required": ["city", "days", "unit", "when", "stops"],
    "additionalProperties": False,
    "$defs": {
        "stop": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "lat": {"type": "number"}},
            "required": ["name", "lat"],
            "additionalProperties": False,
        }
    },
}
TOOLS = [
    {"name": "first", "description": "d", "input_schema": {"type": "object", "properties": {}}},
    {"name": "plan_trip", "description": "Plan a trip", "input_schema": SCHEMA},
]
USER = [{"role": "user", "content": "Plan a trip to Paris"}]
THINKING = {"type": "enabled", "budget_tokens": 2048}


@pytest.fixture
def claude(mock):
    with anthropic.Anthropic(base_url=mock.url, api_key="k", max_retries=0, timeout=10) as c:
        yield c


def create(client, **kw):
    kw.setdefault("model", "claude-sonnet-4-6")
    kw.setdefault("max_tokens", 4096)
    kw.setdefault("messages", USER)
    return client.messages.create(**kw)


def stream_final(client, **kw):
    kw.setdefault("model", "claude-sonnet-4-6")
    kw.setdefault("max_tokens", 4096)
    kw.setdefault("messages", USER)
    with client.messages.stream(**kw) as s:
        events = list(s)
        return events, s.get_final_message()


# --- forced tools -------------------------------------------------------------------------


def test_forced_tool_answers_that_tool_with_a_schema_valid_input(claude):
    msg = create(claude, tools=TOOLS, tool_choice={"type": "tool", "name": "plan_trip"})
    assert msg.stop_reason == "tool_use"
    (block,) = msg.content
    assert block.type == "tool_use" and block.name == "plan_trip" and block.id.startswith("toolu_")
    jsonschema.validate(block.input, SCHEMA)
    assert block.input["days"] == 3 and len(block.input["stops"]) == 2


def test_forced_tool_streams_input_json_deltas(claude):
    events, final = stream_final(claude, tools=TOOLS,
                                 tool_choice={"type": "tool", "name": "plan_trip"})
    deltas = [e.delta.partial_json for e in events
              if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(deltas) > 2
    (block,) = final.content
    jsonschema.validate(block.input, SCHEMA)
    assert "".join(deltas) and final.stop_reason == "tool_use"


def test_any_picks_the_first_tool_and_an_unknown_name_is_a_400(claude):
    msg = create(claude, tools=TOOLS, tool_choice={"type": "any"})
    assert msg.content[0].name == "first" and msg.content[0].input == {}
    with pytest.raises(anthropic.BadRequestError, match="Tool 'nope' not found"):
        create(claude, tools=TOOLS, tool_choice={"type": "tool", "name": "nope"})


# --- thinking -----------------------------------------------------------------------------


def test_thinking_block_with_signature_comes_first(claude):
    msg = create(claude, thinking=THINKING)
    thinking, text = msg.content
    assert thinking.type == "thinking" and thinking.thinking.startswith("mock thinking about:")
    assert thinking.signature
    assert text.type == "text" and text.text == "mock reply to: Plan a trip to Paris"
    assert msg.usage.output_tokens_details.thinking_tokens > 0
    assert msg.usage.output_tokens > msg.usage.output_tokens_details.thinking_tokens


def test_thinking_streams_thinking_then_signature_deltas(claude):
    events, final = stream_final(claude, thinking=THINKING)
    kinds = [e.delta.type for e in events if e.type == "content_block_delta"]
    first_text = kinds.index("text_delta")
    assert set(kinds[:first_text]) == {"thinking_delta", "signature_delta"}
    assert kinds[first_text - 1] == "signature_delta"
    reference = create(claude, thinking=THINKING)
    assert final.content[0].signature == reference.content[0].signature
    assert final.content[0].thinking == reference.content[0].thinking


def test_tool_turns_with_thinking_need_the_signed_block_back(claude):
    first = create(claude, thinking=THINKING, tools=TOOLS,
                   messages=[{"role": "user", "content": "please call tool"}])
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assistant = [b.model_dump(exclude_none=True) for b in first.content]
    result = {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": first.content[1].id, "content": "sunny"}]}

    def turn(content):
        return [{"role": "user", "content": "please call tool"},
                {"role": "assistant", "content": content}, result]

    ok = create(claude, thinking=THINKING, tools=TOOLS, messages=turn(assistant))
    assert ok.content[0].type == "thinking"
    with pytest.raises(anthropic.BadRequestError,
                       match="Expected `thinking` or `redacted_thinking`, but found `tool_use`"):
        create(claude, thinking=THINKING, tools=TOOLS, messages=turn(assistant[1:]))
    forged = copy.deepcopy(assistant)
    forged[0]["thinking"] = "something else"
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature`"):
        create(claude, thinking=THINKING, tools=TOOLS, messages=turn(forged))
    # without thinking, the old turn may come back with or without its block
    assert create(claude, tools=TOOLS, messages=turn(assistant[1:])).content


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"tool_choice": {"type": "any"}, "tools": TOOLS}, "forces tool use"),
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "greater than or equal to 1024"),
        ({"max_tokens": 2048}, "must be greater than `thinking.budget_tokens`"),
        ({"extra_body": {"temperature": 0.2}}, "`temperature` may only be set to 1"),
    ],
)
def test_thinking_constraints_are_anthropics_400s(claude, kw, needle):
    with pytest.raises(anthropic.BadRequestError, match=needle):
        create(claude, **{"thinking": THINKING, **kw})


# --- structured outputs ---------------------------------------------------------------------


def test_output_config_format_answers_schema_json(claude):
    import json

    msg = create(claude, output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
    jsonschema.validate(json.loads(msg.content[0].text), SCHEMA)
    _, final = stream_final(claude, output_config={"format": {"type": "json_schema",
                                                               "schema": SCHEMA}})
    assert json.loads(final.content[0].text) == json.loads(msg.content[0].text)


def test_beta_output_format_needs_its_header(claude):
    import json

    fmt = {"type": "json_schema", "schema": SCHEMA}
    with pytest.raises(anthropic.BadRequestError, match="output_format"):
        create(claude, extra_body={"output_format": fmt})
    msg = create(claude, extra_body={"output_format": fmt},
                 extra_headers={"anthropic-beta": "structured-outputs-2025-11-13"})
    jsonschema.validate(json.loads(msg.content[0].text), SCHEMA)


# --- prompt caching -------------------------------------------------------------------------


def test_cache_control_writes_then_reads_the_prefix(claude, mock):
    system = [{"type": "text", "text": "You are a travel agent. " * 20 + mock.url,
               "cache_control": {"type": "ephemeral"}}]
    first = create(claude, system=system)
    assert first.usage.cache_creation_input_tokens > 0
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == \
        first.usage.cache_creation_input_tokens
    again = create(claude, system=system,
                   messages=[{"role": "user", "content": "And then Rome?"}])
    assert again.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert again.usage.cache_creation_input_tokens == 0
    plain = create(claude, system=system[0]["text"])
    assert plain.usage.cache_creation_input_tokens == plain.usage.cache_read_input_tokens == 0


# --- what each model supports ----------------------------------------------------------------


@pytest.mark.parametrize(("model", "kw", "needle"), [
    ("claude-3-7-sonnet-20250219",
     {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}},
     "structured outputs are not supported"),
    ("claude-sonnet-4-5", {"thinking": {"type": "adaptive"}}, "'adaptive' is not supported"),
    ("claude-opus-4-7", {"thinking": THINKING}, "'enabled' is not supported"),
])
def test_features_a_model_lacks_are_anthropics_400s(claude, model, kw, needle):
    with pytest.raises(anthropic.BadRequestError, match=needle):
        create(claude, model=model, **kw)


def test_features_a_model_has_are_served(claude):
    fmt = {"format": {"type": "json_schema", "schema": SCHEMA}, "effort": "high"}
    msg = create(claude, model="claude-opus-4-7", thinking={"type": "adaptive"},
                 output_config=fmt)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    msg = create(claude, model="claude-haiku-4-5", thinking=THINKING,
                 output_config={"format": fmt["format"]})
    assert msg.content[0].type == "thinking"
