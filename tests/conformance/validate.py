"""Field-for-field checks of OpenAI-shaped documents against OpenAI's published schema.

``openai-openapi-subset.json`` (next to this file) is the subset of OpenAI's OpenAPI spec
(openai-openapi 2.3.0) for chat completions, chunks, embeddings and errors, as JSON Schema
2020-12.  A document conforms when

1. it validates against the schema (types, enums, required fields such as
   ``message.refusal`` and ``choices[].logprobs``, nullable or not), and
2. every field in it is one the schema defines (a typed client in a strict language maps
   fields one to one), except the documented Helix extensions in :data:`EXTENSIONS`, and
3. it carries the optional fields OpenAI itself always sends (:data:`AS_OPENAI_SENDS`), so a
   client written against real OpenAI answers finds them.

Each ``check_*`` returns a list of human-readable problems (empty: conforms).  The stream
checks are used by the lead's stream-relay work; see ``tests/conformance/README`` in the
module docstring of ``test_conformance.py``.
"""

from __future__ import annotations

import json
import pathlib
import re
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

SPEC_PATH = pathlib.Path(__file__).with_name("openai-openapi-subset.json")

# Fields Helix sends that OpenAI's schema does not define, on purpose.
EXTENSIONS = {
    # DeepSeek's convention for reasoning text, read by vLLM/LiteLLM/DeepSeek clients (issue 13).
    "choices[].message.reasoning_content",
    "choices[].delta.reasoning_content",
    # Anthropic's signed thinking blocks, for the client to send back (LiteLLM's convention).
    "choices[].message.thinking_blocks",
    "choices[].delta.thinking_blocks",
}
# Optional in the schema, but OpenAI sends them on every answer of this kind.
AS_OPENAI_SENDS = {
    "CreateChatCompletionResponse": ("usage", "service_tier", "system_fingerprint"),
    "CreateChatCompletionStreamResponse": ("service_tier", "system_fingerprint"),
    "CreateEmbeddingResponse": (),
}


@cache
def _defs() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())["$defs"]


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": _defs()})


def _valid(doc: Any, schema: dict) -> bool:
    return Draft202012Validator({**schema, "$defs": _defs()}).is_valid(doc)


def _resolve(schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = _defs()[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _unknown(doc: Any, schema: Any, path: str) -> list[str]:
    """Paths of fields in ``doc`` that ``schema`` does not define (``choices[]`` style)."""
    schema = _resolve(schema)
    if not isinstance(schema, dict):
        return []
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            match = next((o for o in options if _valid(doc, _resolve(o))), None)
            return _unknown(doc, match, path) if match is not None else []
    out: list[str] = []
    if isinstance(doc, dict):
        props = schema.get("properties")
        if props is None:
            return []  # free-form object (metadata, function parameters)
        for key, value in doc.items():
            sub = f"{path}.{key}" if path else key
            if key in props:
                out.extend(_unknown(value, props[key], sub))
            elif not schema.get("additionalProperties"):
                out.append(sub)
    elif isinstance(doc, list) and "items" in schema:
        for value in doc:
            out.extend(_unknown(value, schema["items"], f"{path}[]"))
    return out


def check(doc: Any, root: str) -> list[str]:
    """Every problem of ``doc`` as an instance of the schema's ``$defs[root]``."""
    problems = []
    for err in sorted(_validator(root).iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        problems.append(f"{where.lstrip('.') or '(root)'}: {err.message}")
    for path in _unknown(doc, {"$ref": f"#/$defs/{root}"}, ""):
        if path not in EXTENSIONS:
            problems.append(f"{path}: not a field of OpenAI's {root}")
    if isinstance(doc, dict):
        for field in AS_OPENAI_SENDS.get(root, ()):
            if field not in doc:
                problems.append(f"{field}: missing (OpenAI always sends it)")
    return problems


def check_completion(doc: Any) -> list[str]:
    return check(doc, "CreateChatCompletionResponse")


def check_chunk(doc: Any) -> list[str]:
    return check(doc, "CreateChatCompletionStreamResponse")


def check_embeddings(doc: Any) -> list[str]:
    return check(doc, "CreateEmbeddingResponse")


def check_error(doc: Any) -> list[str]:
    return check(doc, "ErrorResponse")


_DATA = re.compile(rb"^data: ?(.*)$", re.M)


def check_stream(body: bytes, *, include_usage: bool | None = None) -> list[str]:
    """Every problem of an SSE body of ``chat.completion.chunk`` events, as OpenAI streams them.

    Each chunk conforms (:func:`check_chunk`); the stream ends with ``data: [DONE]``; all chunks
    share ``id``, ``created`` and ``model``; the first delta of a choice carries
    ``role: "assistant"``; each choice finishes exactly once; with ``include_usage`` True the
    last chunk has ``choices: []`` and ``usage``, and no other chunk has a non-null usage.
    """
    problems: list[str] = []
    payloads = [m.group(1).strip() for m in _DATA.finditer(body.replace(b"\r\n", b"\n"))]
    if not payloads or payloads[-1] != b"[DONE]":
        problems.append("stream: does not end with data: [DONE]")
    chunks = []
    for i, raw in enumerate(p for p in payloads if p != b"[DONE]"):
        try:
            doc = json.loads(raw)
        except ValueError:
            problems.append(f"chunk {i}: not JSON: {raw[:80]!r}")
            continue
        chunks.append(doc)
        problems.extend(f"chunk {i}: {p}" for p in check_chunk(doc))
    if not chunks:
        return problems or ["stream: no chunks"]
    for key in ("id", "created", "model"):
        if len({json.dumps(c.get(key)) for c in chunks}) != 1:
            problems.append(f"stream: chunks disagree on {key}")
    seen: dict[int, int] = {}
    finished: dict[int, int] = {}
    for i, c in enumerate(chunks):
        for choice in c.get("choices") or ():
            idx = choice.get("index", 0)
            if idx not in seen:
                seen[idx] = i
                if (choice.get("delta") or {}).get("role") != "assistant":
                    problems.append(f"chunk {i}: first delta of choice {idx} has no "
                                    "role: assistant")
            if choice.get("finish_reason") is not None:
                finished[idx] = finished.get(idx, 0) + 1
    for idx in seen:
        if finished.get(idx, 0) != 1:
            problems.append(f"stream: choice {idx} finished {finished.get(idx, 0)} times")
    if include_usage is True:
        last = chunks[-1]
        if last.get("choices") != [] or not isinstance(last.get("usage"), dict):
            problems.append("stream: last chunk is not the usage chunk (choices [] + usage)")
        if any(c.get("usage") is not None for c in chunks[:-1]):
            problems.append("stream: usage before the last chunk")
    elif include_usage is False and any(c.get("usage") is not None for c in chunks):
        problems.append("stream: usage sent although include_usage was not asked")
    return problems
