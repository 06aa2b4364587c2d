"""The Gemini mock's JSON mode, thinking and forced function calls, through the official
google-genai SDK pointed straight at it (its types parse every reply and stream chunk)."""

from __future__ import annotations

import json

import jsonschema
import pytest

genai = pytest.importorskip("google.genai")
types = genai.types

JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 6},
        "year": {"type": "integer", "minimum": 1900},
        "genre": {"enum": ["drama", "comedy"]},
        "cast": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "rating": {"anyOf": [{"type": "number", "maximum": 1}, {"type": "null"}]},
    },
    "required": ["title", "year", "genre", "cast", "rating"],
    "additionalProperties": False,
}
# The same shape in Gemini's OpenAPI-style Schema (responseSchema).
GEMINI_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "title": {"type": "STRING"},
        "year": {"type": "INTEGER"},
        "cast": {"type": "ARRAY", "items": {"type": "STRING"}},
    },
    "required": ["title", "year", "cast"],
}


@pytest.fixture
def gemini(mock):
    client = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=mock.url, timeout=10_000,
        retry_options=types.HttpRetryOptions(attempts=1)))
    yield client
    client.close()


def generate(client, config, contents="Suggest a film"):
    return client.models.generate_content(model="gemini-2.5-flash", contents=contents,
                                          config=config)


def test_response_json_schema_answers_a_valid_instance(gemini):
    r = generate(gemini, types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=JSON_SCHEMA))
    doc = json.loads(r.text)
    jsonschema.validate(doc, JSON_SCHEMA)
    assert doc["year"] == 1900 and len(doc["cast"]) == 2 and doc["rating"] == 1.0


def test_response_schema_in_geminis_own_dialect(gemini):
    r = generate(gemini, types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=GEMINI_SCHEMA))
    assert json.loads(r.text) == {"title": "mock", "year": 1, "cast": ["mock"]}
    chunks = list(gemini.models.generate_content_stream(
        model="gemini-2.5-flash", contents="Suggest a film",
        config=types.GenerateContentConfig(response_mime_type="application/json",
                                           response_schema=GEMINI_SCHEMA)))
    assert json.loads("".join(c.text or "" for c in chunks)) == json.loads(r.text)


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"response_mime_type": "application/json", "response_schema": GEMINI_SCHEMA,
          "response_json_schema": JSON_SCHEMA}, "cannot both be set"),
        ({"response_json_schema": JSON_SCHEMA}, "must be application/json"),
        ({"thinking_config": {"thinking_budget": 1024, "thinking_level": "high"}},
         "not supported together"),
    ],
)
def test_invalid_generation_configs_are_400s(gemini, config, needle):
    with pytest.raises(genai.errors.ClientError, match=needle) as err:
        generate(gemini, types.GenerateContentConfig(**config))
    assert err.value.code == 400


def test_thinking_reports_thought_tokens_and_signs_the_answer(gemini):
    r = generate(gemini, types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=1024)))
    (part,) = r.candidates[0].content.parts
    assert part.text == "mock reply to: Suggest a film" and part.thought_signature
    u = r.usage_metadata
    assert u.thoughts_token_count > 0
    assert u.total_token_count == u.prompt_token_count + u.candidates_token_count + \
        u.thoughts_token_count
    off = generate(gemini, types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=0)))
    assert off.usage_metadata.thoughts_token_count is None


def test_include_thoughts_puts_thought_parts_first_also_when_streaming(gemini):
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True))
    r = generate(gemini, config)
    thought, answer = r.candidates[0].content.parts
    assert thought.thought is True and thought.text.startswith("mock thoughts about:")
    assert not answer.thought and r.text == "mock reply to: Suggest a film"
    chunks = list(gemini.models.generate_content_stream(
        model="gemini-2.5-flash", contents="Suggest a film", config=config))
    flags = [bool(p.thought) for c in chunks for p in c.candidates[0].content.parts]
    assert flags == sorted(flags, reverse=True) and flags[0] and not flags[-1]
    thoughts = "".join(p.text for c in chunks for p in c.candidates[0].content.parts if p.thought)
    assert thoughts == thought.text
    assert chunks[-1].usage_metadata.thoughts_token_count == \
        r.usage_metadata.thoughts_token_count


def test_forced_function_call_has_schema_valid_args(gemini):
    decl = types.FunctionDeclaration(name="book", description="Book a film",
                                     parameters_json_schema=JSON_SCHEMA)
    r = generate(gemini, types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[decl])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
            mode="ANY")),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)))
    (call,) = r.function_calls
    assert call.name == "book"
    jsonschema.validate(call.args, JSON_SCHEMA)


# --- what each generation supports -------------------------------------------------------------


def test_generations_take_their_own_thinking_controls(gemini):
    with pytest.raises(genai.errors.ClientError, match="thinking level is not supported"):
        generate(gemini, types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_level="low")))
    with pytest.raises(genai.errors.ClientError, match="thinking is not supported"):
        gemini.models.generate_content(model="gemini-2.0-flash", contents="x", config=(
            types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=512))))
    r = gemini.models.generate_content(model="gemini-3.5-flash", contents="x")  # always thinks
    assert r.candidates[0].content.parts[0].thought_signature
    assert r.usage_metadata.thoughts_token_count


def test_gemini_3_wants_the_function_calls_signature_back(gemini):
    decl = types.FunctionDeclaration(name="book", parameters_json_schema=JSON_SCHEMA)
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[decl])])
    ask = types.Content(role="user", parts=[types.Part(text="call tool to book")])
    first = gemini.models.generate_content(model="gemini-3.5-flash", contents=[ask],
                                           config=config)
    call = first.candidates[0].content
    assert call.parts[0].function_call.name == "book" and call.parts[0].thought_signature
    done = types.Content(role="user", parts=[types.Part.from_function_response(
        name="book", response={"ok": True})])
    r = gemini.models.generate_content(model="gemini-3.5-flash", contents=[ask, call, done],
                                       config=config)
    assert r.text.startswith("tool said:")
    unsigned = types.Content(role="model", parts=[types.Part(
        function_call=call.parts[0].function_call)])
    with pytest.raises(genai.errors.ClientError, match="missing a thought_signature"):
        gemini.models.generate_content(model="gemini-3.5-flash",
                                       contents=[ask, unsigned, done], config=config)
    bypass = types.Content(role="model", parts=[types.Part(
        function_call=call.parts[0].function_call,
        thought_signature=b"skip_thought_signature_validator")])
    assert gemini.models.generate_content(model="gemini-3.5-flash", contents=[ask, bypass, done],
                                          config=config).text
