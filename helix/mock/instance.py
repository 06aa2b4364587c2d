"""A minimal valid instance of a JSON Schema: what the mocks answer for forced tools and JSON mode.

Deterministic, so tests can assert on it: strings are ``"mock"`` (or a value of the right
``format``), integers ``1``, numbers ``1.5``, booleans ``true``, arrays one item (or
``minItems``), objects their ``required`` properties (every property when the schema names
none).  Understands what providers accept in tool and response schemas: ``enum``, ``const``,
``anyOf``/``oneOf``/``allOf``, ``$ref`` into ``$defs``/``definitions``, type lists
(``["string", "null"]``), ``nullable``, ``minimum``/``exclusiveMinimum``, ``minLength``, and
Gemini's OpenAPI-style upper-case types (``OBJECT``, ``STRING``...).
"""

from __future__ import annotations

from typing import Any

_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "mock@example.com",
    "uri": "https://example.com/mock",
    "url": "https://example.com/mock",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "example.com",
}
_MAX_DEPTH = 16


def instance(schema: Any, root: Any = None, _depth: int = 0) -> Any:
    """A value that validates against ``schema`` (a JSON Schema or Gemini Schema dict)."""
    if root is None:
        root = schema
    if not isinstance(schema, dict) or _depth > _MAX_DEPTH:
        return "mock"
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return instance(_resolve(ref, root), root, _depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and _type(o) == "null")]
            return instance((non_null or options)[0], root, _depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part \
                else part
            if isinstance(part, dict):
                for k, v in part.items():
                    if k in ("properties",) and isinstance(v, dict):
                        merged.setdefault(k, {}).update(v)
                    elif k == "required" and isinstance(v, list):
                        merged.setdefault(k, []).extend(v)
                    else:
                        merged.setdefault(k, v)
        return instance(merged, root, _depth + 1)
    t = _type(schema)
    if t == "object" or (t is None and isinstance(schema.get("properties"), dict)):
        props = schema.get("properties") or {}
        names = schema.get("required")
        if not isinstance(names, list):
            names = list(props)
        return {n: instance(props.get(n, {}), root, _depth + 1) for n in names}
    if t == "array":
        n = schema.get("minItems")
        n = n if isinstance(n, int) and n > 0 else 1
        if schema.get("maxItems") == 0:
            n = 0
        items = schema.get("items")
        if isinstance(schema.get("prefixItems"), list):
            return [instance(s, root, _depth + 1) for s in schema["prefixItems"]]
        return [instance(items, root, _depth + 1) for _ in range(n)]
    if t == "integer":
        return _number(schema, 1, int)
    if t == "number":
        return _number(schema, 1.5, float)
    if t == "boolean":
        return True
    if t == "null":
        return None
    return _string(schema)


def _type(schema: dict) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if str(x).lower() != "null"), "null")
    return str(t).lower() if t is not None else None


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#/"):
        return {}
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node


def _number(schema: dict, default: float, kind: type) -> Any:
    value = default
    low = schema.get("minimum")
    if isinstance(low, int | float) and value < low:
        value = low
    ex = schema.get("exclusiveMinimum")
    if isinstance(ex, int | float) and not isinstance(ex, bool) and value <= ex:
        value = ex + 1
    high = schema.get("maximum")
    if isinstance(high, int | float) and value > high:
        value = high
    return kind(value)


def _string(schema: dict) -> str:
    value = _FORMATS.get(str(schema.get("format") or ""), "mock")
    n = schema.get("minLength")
    if isinstance(n, int) and len(value) < n:
        value = value + "k" * (n - len(value))
    m = schema.get("maxLength")
    if isinstance(m, int) and len(value) > m:
        value = value[:m]
    return value
