"""The Cohere mock's JSON mode through the official cohere SDK (ClientV2) pointed straight at it
(the SDK's types parse the reply and every stream event)."""

from __future__ import annotations

import json

import jsonschema
import pytest

cohere = pytest.importorskip("cohere")

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 18},
                   "langs": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "age", "langs"],
}
MSGS = [{"role": "user", "content": "Describe a developer"}]


@pytest.fixture
def co(mock):
    return cohere.ClientV2(api_key="k", base_url=mock.url, timeout=10)


def test_json_object_with_schema_answers_a_valid_instance(co):
    r = co.chat(model="command-a-03-2025", messages=MSGS,
                response_format={"type": "json_object", "json_schema": SCHEMA})
    doc = json.loads(r.message.content[0].text)
    jsonschema.validate(doc, SCHEMA)
    assert doc == {"name": "mock", "age": 18, "langs": ["mock"]}
    events = list(co.chat_stream(model="command-a-03-2025", messages=MSGS,
                                 response_format={"type": "json_object", "json_schema": SCHEMA}))
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert json.loads(text) == doc


def test_json_object_without_schema_and_text(co):
    r = co.chat(model="command-a-03-2025", messages=MSGS, response_format={"type": "json_object"})
    assert json.loads(r.message.content[0].text) == {"reply": "mock reply to: Describe a developer"}
    plain = co.chat(model="command-a-03-2025", messages=MSGS, response_format={"type": "text"})
    assert plain.message.content[0].text == "mock reply to: Describe a developer"


def test_bad_response_format_is_a_400(co):
    with pytest.raises(cohere.errors.BadRequestError, match="response_format"):
        co.chat(model="command-a-03-2025", messages=MSGS,
                response_format={"type": "text", "json_schema": SCHEMA})
