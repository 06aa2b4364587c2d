"""helix.mock.instance: the minimal instances the mocks answer validate against their schemas."""

from __future__ import annotations

import jsonschema
import pytest

from helix.mock.instance import instance

SCHEMAS = [
    {"type": "string"},
    {"type": "string", "minLength": 12, "format": "email"},
    {"type": "string", "maxLength": 2},
    {"type": "integer", "minimum": 7, "maximum": 9},
    {"type": "number", "exclusiveMinimum": 4},
    {"type": "boolean"},
    {"type": "null"},
    {"type": ["null", "integer"]},
    {"enum": ["b", "c"]},
    {"const": {"x": 1}},
    {"type": "array", "items": {"type": "integer"}, "minItems": 3},
    {"type": "array", "maxItems": 0},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}]},
    {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
     "required": ["b"], "additionalProperties": False},
    {"type": "object", "properties": {"deep": {"type": "object", "properties": {
        "deeper": {"type": "array", "items": {"$ref": "#/$defs/leaf"}}}}},
     "$defs": {"leaf": {"type": "object", "properties": {"v": {"type": "number"}},
                        "required": ["v"]}}},
    {"anyOf": [{"type": "null"}, {"type": "string", "format": "date-time"}]},
    {"oneOf": [{"type": "integer", "minimum": 10}, {"type": "string"}]},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
               {"properties": {"b": {"type": "string"}}, "required": ["b"]}]},
    {"$ref": "#/definitions/node", "definitions": {"node": {
        "type": "object", "properties": {"next": {"$ref": "#/definitions/node"}},
        "required": []}}},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_instance_validates(schema):
    jsonschema.validate(instance(schema), schema)


def test_gemini_upper_case_types_and_conventions():
    schema = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"},
                                               "tags": {"type": "ARRAY",
                                                        "items": {"type": "STRING"}},
                                               "ok": {"type": "BOOLEAN"}}}
    assert instance(schema) == {"n": 1, "tags": ["mock"], "ok": True}
    # the values the existing mocks and their tests rely on
    assert instance({"type": "object", "properties": {"city": {"type": "string"}}}) == \
        {"city": "mock"}


def test_recursive_refs_terminate():
    schema = {"$ref": "#/$defs/n", "$defs": {"n": {"type": "object", "properties": {
        "child": {"$ref": "#/$defs/n"}}, "required": ["child"]}}}
    value = instance(schema)  # bounded depth, whatever it yields
    assert isinstance(value, dict)
