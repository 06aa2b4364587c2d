"""The hub request's cross-provider features, read once for every translating adapter:
structured output (``response_format``), reasoning (``reasoning_effort``) and the signed
thinking blocks an assistant turn carries back (``thinking_blocks``).

How a model gets each feature comes from the model registry (``structured_output`` and
``reasoning`` in ``helix/data/models.json``), with a default per provider family for a model
the registry does not know (:func:`capabilities`: the newest technique, since every model
older than the table is in it):

``structured_output``
    ``native``   the provider's own schema-constrained output with the full JSON Schema
                 (Anthropic ``output_config.format``, Bedrock ``outputConfig.textFormat``,
                 Gemini ``responseJsonSchema``, Cohere ``response_format``);
    ``openapi``  Gemini's OpenAPI-subset ``responseSchema`` (the schema cleaned to it);
    ``tool``     the forced-tool technique: one tool (:data:`OUTPUT_TOOL`) whose input
                 schema is the schema, the tool choice forcing it, its input returned as
                 ``message.content`` with ``finish_reason: "stop"``;
    ``prompt``   a system instruction only (models with neither).
``reasoning``
    ``budget``   a thinking-token budget (Anthropic ``thinking.budget_tokens``, Gemini 2.5
                 ``thinkingBudget``): :data:`ANTHROPIC_BUDGETS`, :data:`GEMINI_BUDGETS`;
    ``adaptive`` Anthropic's adaptive thinking with ``output_config.effort``;
    ``level``    Gemini 3's ``thinkingLevel``;
    ``none``     the model does not reason: a ``reasoning_effort`` other than ``none`` /
                 ``minimal`` is a 400, as OpenAI answers for its own non-reasoning models.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, NamedTuple

import msgspec

from helix.errors import ErrorKind, HelixError
from helix.routing.models import lookup

__all__ = [
    "ANTHROPIC_BUDGETS",
    "EFFORTS",
    "GEMINI_BUDGETS",
    "MIN_THINKING_BUDGET",
    "OUTPUT_TOOL",
    "Capabilities",
    "OutputFormat",
    "anthropic_thinking",
    "capabilities",
    "effort_of",
    "json_instruction",
    "output_format",
    "pack_thinking",
    "strict_schema",
    "thinking_blocks_of",
    "unpack_thinking",
]

_encode = msgspec.json.Encoder().encode

# OpenAI's reasoning_effort values (xhigh: the Codex models').
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
STRUCTURED_OUTPUT = ("native", "openapi", "tool", "prompt")
REASONING = ("budget", "adaptive", "level", "none")

# The forced tool of the ``tool`` technique.  Reserved: a client tool of this name is a 400,
# so a call to it in an answer is always Helix's structured output.
OUTPUT_TOOL = "helix_json_response"

# Anthropic: budget_tokens >= 1024 and < max_tokens.
MIN_THINKING_BUDGET = 1024
ANTHROPIC_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576,
                     "xhigh": 32000}
# Anthropic's adaptive thinking takes an effort level of its own.
ANTHROPIC_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high",
                     "xhigh": "xhigh"}
# Gemini 2.5: 0 turns thinking off (Flash, Flash-Lite; Pro always thinks); 512..24576 is
# valid for every 2.5 model.
GEMINI_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576,
                  "xhigh": 24576}
GEMINI_LEVELS = {"none": "minimal", "minimal": "minimal", "low": "low", "medium": "medium",
                 "high": "high", "xhigh": "high"}


def _bad(message: str, param: str | None, code: str | None = None) -> HelixError:
    return HelixError(ErrorKind.INVALID_REQUEST, message, param=param, code=code)


# --- capabilities -------------------------------------------------------------------------


class Capabilities(NamedTuple):
    structured_output: str
    reasoning: str
    model: str = "this model"  # for error messages


# Family defaults for a model the registry does not know.
_DEFAULTS = {
    "anthropic": Capabilities("native", "adaptive"),  # Claude on Anthropic, Vertex, Bedrock
    "gemini": Capabilities("native", "level"),  # Gemini API and Vertex
    "bedrock": Capabilities("tool", "none"),  # Bedrock models other than Claude
    "cohere": Capabilities("native", "none"),
}


def capabilities(model_id: str, family: str) -> Capabilities:
    """How ``model_id`` (a deployment's upstream id) does structured output and reasoning."""
    default = _DEFAULTS[family]
    try:
        info = lookup(model_id)
    except (TypeError, ValueError):
        info = None
    name = model_id or "this model"
    if info is None:
        if family == "bedrock" and ".llama" in f".{model_id}":
            return Capabilities("prompt", "none", name)  # Llama on Bedrock calls no forced tool
        return default._replace(model=name)
    return Capabilities(info.structured_output or default.structured_output,
                        info.reasoning or default.reasoning, name)


# --- structured output --------------------------------------------------------------------


class OutputFormat(NamedTuple):
    """A ``response_format`` asking for JSON: ``kind`` ``json_object`` (any object) or
    ``json_schema`` (``schema`` the client's, ``name``/``description`` its own)."""

    kind: str
    schema: dict | None
    name: str
    description: str | None
    strict: bool

    @property
    def tool_schema(self) -> dict:
        """The input schema of the output tool: the schema, or any object."""
        return self.schema if self.schema is not None else {"type": "object"}

    def tool(self) -> tuple[str, str, dict]:
        """(name, description, input schema) of the ``tool`` technique's output tool."""
        what = f" ({self.description})" if self.description else ""
        description = (
            "Give your final answer by calling this tool: its input is the answer, a JSON "
            f"object `{self.name}`{what}. Call it once, with nothing else."
        )
        return OUTPUT_TOOL, description, self.tool_schema


def output_format(doc: dict) -> OutputFormat | None:
    """The request's ``response_format`` when it asks for JSON (None for text or absent);
    400 for a malformed one."""
    fmt = doc.get("response_format")
    if fmt is None:
        return None
    ftype = fmt.get("type") if isinstance(fmt, dict) else None
    if ftype == "text":
        return None
    if ftype == "json_object":
        return OutputFormat("json_object", None, "response", None, False)
    if ftype != "json_schema":
        raise _bad("Invalid value for 'response_format.type': expected 'text', 'json_object' "
                   "or 'json_schema'.", "response_format.type")
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise _bad("Missing required parameter: 'response_format.json_schema'.",
                   "response_format.json_schema", "missing_required_parameter")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("Missing required parameter: 'response_format.json_schema.name'.",
                   "response_format.json_schema.name", "missing_required_parameter")
    schema = spec.get("schema")
    if schema is None:
        return OutputFormat("json_object", None, name, spec.get("description"), False)
    if not isinstance(schema, dict):
        raise _bad("Invalid value for 'response_format.json_schema.schema': expected an "
                   "object.", "response_format.json_schema.schema")
    root = schema.get("type")
    if root is not None and root != "object":
        raise _bad("Invalid schema for response_format: the root of the schema must be an "
                   f"object (got type {root!r}).", "response_format.json_schema.schema")
    description = spec.get("description")
    return OutputFormat("json_schema", schema, name,
                        description if isinstance(description, str) else None,
                        spec.get("strict") is True)


def json_instruction(fmt: OutputFormat) -> str:
    """The system instruction of the ``prompt`` technique."""
    text = ("Respond with a single valid JSON object and nothing else: no prose before or "
            "after it and no Markdown code fences.")
    if fmt.schema is not None:
        text += " The JSON object must conform to this JSON Schema:\n" + _encode(
            fmt.schema).decode()
    return text


def check_tool_names(tools: Any) -> None:
    """A client tool may not take the output tool's reserved name."""
    if not isinstance(tools, list):
        return
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and fn.get("name") == OUTPUT_TOOL:
            raise _bad(f"Invalid value for 'tools[{i}].function.name': {OUTPUT_TOOL!r} is "
                       "reserved by the gateway (structured output).",
                       f"tools[{i}].function.name")


_STRING_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname",
                             "uri", "ipv4", "ipv6", "uuid"})
_MAX_DEPTH = 64


def strict_schema(schema: Any, _depth: int = 0) -> dict:
    """A JSON Schema as Anthropic's structured outputs take it (what the Anthropic SDK's
    ``transform_schema`` does): every object closed (``additionalProperties: false``),
    ``oneOf`` as ``anyOf``, a type list as ``anyOf``, only the supported string formats and
    ``minItems`` 0/1; any other keyword moved into ``description`` so the model still sees
    it."""
    if not isinstance(schema, dict):
        return {}
    if _depth > _MAX_DEPTH:
        raise _bad("The JSON schema of response_format is nested too deeply.",
                   "response_format.json_schema.schema")
    rest = dict(schema)
    out: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        defs = rest.pop(key, None)
        if isinstance(defs, dict):
            out[key] = {k: strict_schema(v, _depth + 1) for k, v in defs.items()}
    rest.pop("$schema", None)
    rest.pop("$id", None)
    ref = rest.pop("$ref", None)
    if isinstance(ref, str):
        out["$ref"] = ref
        if isinstance(rest.get("description"), str):
            out["description"] = rest["description"]
        return out
    kind = rest.pop("type", None)
    if isinstance(kind, list):
        alts = [{"type": "null"} if k == "null" else {**rest, "type": k} for k in kind]
        return {**out, "anyOf": [strict_schema(a, _depth + 1) for a in alts]}
    for key in ("anyOf", "oneOf"):
        alts = rest.pop(key, None)
        if isinstance(alts, list):
            out["anyOf"] = [strict_schema(a, _depth + 1) for a in alts]
    all_of = rest.pop("allOf", None)
    if isinstance(all_of, list):
        out["allOf"] = [strict_schema(a, _depth + 1) for a in all_of]
    if isinstance(rest.get("enum"), list) and rest["enum"]:
        out["enum"] = rest.pop("enum")
        kind = None
    if "const" in rest:
        out["const"] = rest.pop("const")
        kind = None
    if kind is None and "properties" in rest:
        kind = "object"
    if kind is not None:
        out["type"] = kind
    for key in ("description", "title"):
        if isinstance(rest.get(key), str):
            out[key] = rest.pop(key)
    if kind == "object":
        props = rest.pop("properties", None) or {}
        out["properties"] = {k: strict_schema(v, _depth + 1) for k, v in props.items()}
        rest.pop("additionalProperties", None)
        out["additionalProperties"] = False
        required = rest.pop("required", None)
        if isinstance(required, list):
            out["required"] = required
    elif kind == "string":
        if rest.get("format") in _STRING_FORMATS:
            out["format"] = rest.pop("format")
    elif kind == "array":
        items = rest.pop("items", None)
        if items is not None:
            out["items"] = strict_schema(items, _depth + 1)
        if rest.get("minItems") in (0, 1):
            out["minItems"] = rest.pop("minItems")
    rest.pop("strict", None)
    if rest:  # what structured outputs cannot enforce: the model reads it instead
        extra = "{" + ", ".join(f"{k}: {_encode(v).decode()}" for k, v in rest.items()) + "}"
        note = out.get("description")
        out["description"] = f"{note}\n\n{extra}" if note else extra
    return out


# --- reasoning ----------------------------------------------------------------------------


def effort_of(doc: dict, caps: Capabilities) -> str | None:
    """The request's ``reasoning_effort`` (None when absent); 400 for an unknown value, and
    for a model that does not reason (unless it asks for none / minimal reasoning)."""
    effort = doc.get("reasoning_effort")
    if effort is None:
        return None
    if effort not in EFFORTS:
        raise _bad(f"Invalid value for 'reasoning_effort': {effort!r} (expected one of "
                   f"{', '.join(EFFORTS)}).", "reasoning_effort", "invalid_value")
    if caps.reasoning == "none":
        if effort in ("none", "minimal"):
            return None
        raise _bad(f"Unsupported parameter: 'reasoning_effort' is not supported with this "
                   f"model ({caps.model} does not reason).", "reasoning_effort",
                   "unsupported_parameter")
    return effort


def anthropic_thinking(effort: str, caps: Capabilities, max_tokens: int,
                       doc: dict) -> tuple[dict | None, str | None]:
    """(``thinking``, ``output_config.effort``) for Claude at ``effort``; (None, None) for no
    thinking.  Keeps Anthropic's rules: with a budget, ``budget_tokens`` >= 1024 and below
    ``max_tokens`` (half of it at most when the client's limit is small); ``temperature``
    only 1 and ``top_p`` at least 0.95 while thinking (a 400 naming the parameter otherwise,
    as OpenAI answers for its reasoning models)."""
    if effort == "none":
        return None, None
    temperature = doc.get("temperature")
    if temperature is not None and temperature != 1:
        raise _bad(f"Unsupported value: 'temperature' does not support {temperature} with "
                   "reasoning_effort on this model. Only the default (1) value is supported.",
                   "temperature", "unsupported_value")
    top_p = doc.get("top_p")
    if top_p is not None and top_p < 0.95:
        raise _bad(f"Unsupported value: 'top_p' does not support {top_p} with "
                   "reasoning_effort on this model (0.95 to 1 only).", "top_p",
                   "unsupported_value")
    if caps.reasoning == "adaptive":
        return {"type": "adaptive"}, ANTHROPIC_EFFORTS[effort]
    budget = min(ANTHROPIC_BUDGETS[effort], max(MIN_THINKING_BUDGET, max_tokens // 2))
    if budget >= max_tokens:
        raise _bad(f"'max_completion_tokens' ({max_tokens}) leaves no room to reason: with "
                   f"reasoning_effort this model needs more than {MIN_THINKING_BUDGET} "
                   "tokens (its smallest thinking budget) plus the answer.",
                   "max_completion_tokens", "invalid_value")
    return {"type": "enabled", "budget_tokens": budget}, None


# --- thinking blocks of earlier turns -------------------------------------------------------


def thinking_blocks_of(msg: dict, where: str) -> list[dict]:
    """The signed Anthropic thinking blocks an assistant message carries back, in order:
    ``thinking_blocks`` (``{type: thinking, thinking, signature}`` /
    ``{type: redacted_thinking, data}``, LiteLLM's convention, what Helix answers) or
    OpenRouter's ``reasoning_details`` (``reasoning.text`` with a signature,
    ``reasoning.encrypted``).  Blocks without a signature are left out: Anthropic would
    refuse them, and they only ever come from another provider."""
    out: list[dict] = []
    blocks = msg.get("thinking_blocks")
    if blocks is not None:
        if not isinstance(blocks, list):
            raise _bad(f"Invalid value for '{where}.thinking_blocks': expected an array.",
                       f"{where}.thinking_blocks")
        for b in blocks:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "thinking" and isinstance(b.get("signature"), str) \
                    and b["signature"] and isinstance(b.get("thinking"), str):
                out.append({"type": "thinking", "thinking": b["thinking"],
                            "signature": b["signature"]})
            elif b.get("type") == "redacted_thinking" and isinstance(b.get("data"), str) \
                    and b["data"]:
                out.append({"type": "redacted_thinking", "data": b["data"]})
        return out
    details = msg.get("reasoning_details")
    if isinstance(details, list):
        for d in details:
            if not isinstance(d, dict):
                continue
            if d.get("type") == "reasoning.text" and isinstance(d.get("signature"), str) \
                    and d["signature"] and isinstance(d.get("text"), str):
                out.append({"type": "thinking", "thinking": d["text"],
                            "signature": d["signature"]})
            elif d.get("type") == "reasoning.encrypted" and isinstance(d.get("data"), str) \
                    and d["data"]:
                out.append({"type": "redacted_thinking", "data": d["data"]})
    return out


# A Responses client keeps reasoning as an item's opaque ``encrypted_content`` and sends the
# item back; for a translated Claude that is where the signed blocks travel.
_PACKED = "helix.thinking."


def pack_thinking(blocks: list[dict]) -> str:
    """Signed thinking blocks as an opaque string (a reasoning item's ``encrypted_content``)."""
    return _PACKED + base64.urlsafe_b64encode(_encode(blocks)).decode("ascii")


def unpack_thinking(text: Any) -> list[dict]:
    """The blocks :func:`pack_thinking` packed; [] for anything else (OpenAI's own)."""
    if not isinstance(text, str) or not text.startswith(_PACKED):
        return []
    try:
        blocks = msgspec.json.decode(base64.urlsafe_b64decode(text[len(_PACKED):]))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return []
    return thinking_blocks_of({"thinking_blocks": blocks}, "encrypted_content") \
        if isinstance(blocks, list) else []
