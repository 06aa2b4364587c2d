"""Anthropic Messages API wire format for the mock provider: ``POST /v1/messages``.

Answers like the real API: a ``message`` object (content blocks, stop_reason,
usage), or with ``stream: true`` the event sequence ``message_start``,
``content_block_start``, ``ping``, ``content_block_delta``..., ``content_block_stop``,
``message_delta`` (stop_reason + output_tokens), ``message_stop``, each sent as
``event: <type>\\ndata: {...}\\n\\n``.  Errors have Anthropic's shape
``{"type": "error", "error": {"type", "message"}}`` (status 529 is
``overloaded_error``); the credential is the ``x-api-key`` header.

Deterministic behaviour (tests assert on it):

* the reply is ``mock reply to: <last user text[:40]>`` (text of the last user
  turn that has text, tool results skipped);
* a ``tool_use`` block instead when tools are given and either ``tool_choice`` is
  ``any`` / ``{"type": "tool", "name": ...}`` (that tool; an unknown name is a 400), or the
  final user turn's text contains "call tool" (and the choice is not ``none``); its input is
  a minimal instance of the tool's ``input_schema`` (``instance.py``), streamed as
  ``input_json_delta`` fragments;
* ``thinking: {type: enabled, budget_tokens}`` (or ``adaptive``) puts a ``thinking`` block
  (``mock thinking about: <text>``, with a ``signature`` the mock makes) before the answer,
  streamed as ``thinking_delta`` + ``signature_delta``; usage then has
  ``output_tokens_details.thinking_tokens``;
* structured outputs (GA ``output_config: {format: {type: json_schema, schema}}``, or the
  beta ``output_format`` with ``anthropic-beta: structured-outputs-2025-11-13``) make the
  text a JSON instance of the schema;
* ``cache_control`` breakpoints (or the top-level ``cache_control``) write the prompt prefix
  to a per-process cache on first sight (``cache_creation_input_tokens``) and read it on
  repeats (``cache_read_input_tokens``); no minimum length;
* ``stop_sequences`` cut the reply (stop_reason ``stop_sequence``); a reply
  longer than ``max_tokens`` words is cut (stop_reason ``max_tokens``);
* a final user text containing "mock stream error" makes a stream send part
  of the reply and then an ``error`` event (``overloaded_error``).

Models are held to what they support, as Anthropic answers (:func:`check_model_features`):
structured outputs only from the Claude 4.5 family on, adaptive thinking only from Claude
Opus / Sonnet 4.6 on, and no ``budget_tokens`` thinking on Claude Opus 4.7.

The request is validated the way Anthropic does (required ``model``,
``max_tokens``, ``messages``; roles user/assistant only; no unknown top-level
keys; ``tool_result`` blocks must answer the previous turn's ``tool_use`` ids; with
thinking on: ``budget_tokens`` >= 1024 and < ``max_tokens``, no forced ``tool_choice``, no
``temperature`` other than 1, and the final assistant turn that called tools must start with
a thinking block whose signature the mock issued — Anthropic's own 400 messages), so a
translation bug in Helix shows up as a 400 here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import re
from typing import Any

import orjson

from .base import BadRequest, Controls, MockRequest, Reply, StreamReply, count_tokens, split_text
from .instance import instance

NAME = "anthropic"

_ids = itertools.count(1)
_id_prefix = os.urandom(3).hex()

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES = {
    401: "invalid x-api-key",
    429: "Number of request tokens has exceeded your per-minute rate limit (mock).",
    529: "Overloaded",
}
_PARAMS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "output_config",
        "output_format",  # beta: only with anthropic-beta: structured-outputs-2025-11-13
        "cache_control",
        "inference_geo",
        "context_management",
    }
)
_BLOCK_TYPES = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
)


def error_reply(
    status: int, message: str | None = None, code: str | None = None, param: str | None = None
) -> Reply:
    etype = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if message is None:
        message = _DEFAULT_MESSAGES.get(status, f"mock error (status {status})")
    body = {"type": "error", "error": {"type": etype, "message": message}}
    return Reply(status, orjson.dumps(body), headers=[("request-id", _new_id("req_"))])


def check_auth(req: MockRequest, key: str) -> bool:
    return req.headers.get("x-api-key", "") == key


def _new_id(prefix: str) -> str:
    return f"{prefix}{_id_prefix}{next(_ids):010d}"


# --- request validation -----------------------------------------------------------------


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise BadRequest(f"{where}: Input should be a valid list")
    for k, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            raise BadRequest(f"{where}.{k}: Input tag does not match any of the expected tags")
        if block["type"] == "text" and not block.get("text"):
            raise BadRequest(f"{where}.{k}: text content blocks must be non-empty")
    return content


def _validate(body: dict[str, Any], counting: bool = False) -> list[dict[str, Any]]:
    for key in body:
        if key not in _PARAMS:
            raise BadRequest(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("model: Field required")
    max_tokens = body.get("max_tokens")
    if counting:
        if "max_tokens" in body or "stream" in body:
            raise BadRequest("max_tokens: Extra inputs are not permitted")
    elif not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("max_tokens: Field required (a positive integer)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required")
    pending_tool_ids: set[str] = set()
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            role = msg.get("role") if isinstance(msg, dict) else None
            raise BadRequest(
                f'messages.{i}.role: Unexpected role "{role}". The Messages API accepts a '
                'top-level `system` parameter, not "system" as an input message role.'
            )
        blocks = _blocks(msg.get("content"), f"messages.{i}.content")
        results = {b.get("tool_use_id") for b in blocks if b["type"] == "tool_result"}
        if pending_tool_ids and not pending_tool_ids <= results:
            raise BadRequest(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(pending_tool_ids - results))}"
            )
        if results - pending_tool_ids:
            raise BadRequest(
                f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{', '.join(sorted(str(r) for r in results - pending_tool_ids))}. Each "
                "`tool_result` block must have a corresponding `tool_use` block in the "
                "previous message."
            )
        pending_tool_ids = {
            b.get("id") for b in blocks if b["type"] == "tool_use" and msg["role"] == "assistant"
        }
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise BadRequest("tools: Input should be a valid list")
        for j, tool in enumerate(tools):
            if not isinstance(tool, dict) or not tool.get("name"):
                raise BadRequest(f"tools.{j}.name: Field required")
            if tool.get("type") not in (None, "custom"):
                continue  # a server tool (web_search_20250305, bash_20250124, ...)
            if not isinstance(tool.get("input_schema"), dict):
                raise BadRequest(f"tools.{j}.input_schema: Field required")
    stops = body.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
    ):
        raise BadRequest("stop_sequences: Input should be a valid list of strings")
    return messages


# --- replies ----------------------------------------------------------------------------


def _text_of(blocks: list[dict[str, Any]]) -> str:
    return " ".join(b["text"] for b in blocks if b.get("type") == "text" and b.get("text"))


def last_user_text(messages: list[Any]) -> str:
    """Text of the last user turn that has any (tool-result-only turns are skipped)."""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            text = _text_of(_blocks(msg.get("content"), "content"))
            if text:
                return text
    return ""


def reply_text(messages: list[Any]) -> str:
    return f"mock reply to: {last_user_text(messages)[:40]}"


def _final_user_text(messages: list[Any]) -> str:
    msg = messages[-1]
    if msg.get("role") != "user":
        return ""
    return _text_of(_blocks(msg.get("content"), "content"))


def _wants_tool(body: dict[str, Any], messages: list[Any]) -> dict[str, Any] | None:
    tools = body.get("tools")
    if not tools:
        return None
    choice = body.get("tool_choice") or {"type": "auto"}
    ctype = choice.get("type")
    if ctype == "none":
        return None
    if ctype == "tool":
        for tool in tools:
            if tool.get("name") == choice.get("name"):
                return tool
        raise BadRequest(f"tool_choice.name: Tool '{choice.get('name')}' not found in tools")
    if ctype == "any" or "call tool" in _final_user_text(messages).lower():
        return tools[0]
    return None


def _input_tokens(body: dict[str, Any], messages: list[Any]) -> int:
    total = 0
    system = body.get("system")
    if isinstance(system, str):
        total += count_tokens(system)
    elif isinstance(system, list):
        total += count_tokens(_text_of(system))
    for msg in messages:
        total += count_tokens(_text_of(_blocks(msg.get("content"), "content")))
    return max(1, total)


def _cut(text: str, body: dict[str, Any], budget: int) -> tuple[str, str, str | None]:
    """Apply stop_sequences and max_tokens: (text, stop_reason, stop_sequence)."""
    best = None
    for seq in body.get("stop_sequences") or ():
        pos = text.find(seq) if seq else -1
        if pos >= 0 and (best is None or pos < best[0]):
            best = (pos, seq)
    if best is not None:
        text = text[: best[0]]
    words = text.split(" ")
    if len(words) > budget:
        return " ".join(words[: max(0, budget)]), "max_tokens", None
    if best is not None:
        return text, "stop_sequence", best[1]
    return text, "end_turn", None


def _sse(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


# --- extended thinking --------------------------------------------------------------------
#
# Thinking blocks carry a signature the mock makes (an HMAC of the thinking text under a
# per-process key), so a client that sends a thinking block back unchanged passes and one
# that edits, invents or drops it gets the 400 Anthropic answers.

_SIGNING_KEY = os.urandom(32)
THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


def sign_thinking(text: str) -> str:
    mac = hmac.new(_SIGNING_KEY, text.encode(), hashlib.sha256).digest()
    return base64.b64encode(b"mock-sig:" + mac).decode()


def _thinking_config(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's ``thinking`` when it asks for thinking, validated as Anthropic does."""
    cfg = body.get("thinking")
    if cfg is None:
        return None
    if not isinstance(cfg, dict) or cfg.get("type") not in ("enabled", "disabled", "adaptive"):
        raise BadRequest("thinking: Input tag does not match any of the expected tags: "
                         "'enabled', 'disabled', 'adaptive'")
    if cfg["type"] == "disabled":
        return None
    if cfg["type"] == "enabled":
        budget = cfg.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise BadRequest("thinking.enabled.budget_tokens: Field required")
        if budget < 1024:
            raise BadRequest("thinking.enabled.budget_tokens: Input should be greater than or "
                             "equal to 1024")
        if body["max_tokens"] <= budget:
            raise BadRequest("`max_tokens` must be greater than `thinking.budget_tokens`. Please "
                             f"consult our documentation at {THINKING_DOCS}#max-tokens-and-"
                             "context-window-size")
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        raise BadRequest("`temperature` may only be set to 1 when thinking is enabled or in "
                         "adaptive mode. Please consult our documentation at "
                         f"{THINKING_DOCS}#important-considerations-when-using-extended-thinking")
    if body.get("top_k") is not None:
        raise BadRequest("`top_k` may not be set when thinking is enabled or in adaptive mode. "
                         f"Please consult our documentation at {THINKING_DOCS}")
    choice = (body.get("tool_choice") or {}).get("type")
    if choice in ("any", "tool"):
        raise BadRequest("Thinking may not be enabled when tool_choice forces tool use.")
    return cfg


def _check_thinking_history(messages: list[Any], thinking: dict[str, Any] | None) -> None:
    """Signed thinking blocks sent back must be the mock's own; with thinking on, the final
    assistant turn that called tools must start with its thinking block (Anthropic's rule)."""
    for i, msg in enumerate(messages):
        if msg.get("role") != "assistant":
            continue
        for k, block in enumerate(_blocks(msg.get("content"), f"messages.{i}.content")):
            if block["type"] == "thinking":
                sig = block.get("signature")
                if not isinstance(sig, str) or not sig:
                    raise BadRequest(f"messages.{i}.content.{k}.thinking.signature: Field required")
                if not hmac.compare_digest(sig, sign_thinking(str(block.get("thinking", "")))):
                    raise BadRequest(f"messages.{i}.content.{k}: Invalid `signature` in "
                                     "`thinking` block")
            elif block["type"] == "redacted_thinking" and not block.get("data"):
                raise BadRequest(f"messages.{i}.content.{k}.redacted_thinking.data: Field required")
    if thinking is None:
        return
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return
    blocks = _blocks(messages[last].get("content"), f"messages.{last}.content")
    if not any(b["type"] == "tool_use" for b in blocks):
        return
    if blocks[0]["type"] not in ("thinking", "redacted_thinking"):
        raise BadRequest(
            f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
            f"found `{blocks[0]['type']}`. When `thinking` is enabled, a final `assistant` "
            "message must start with a thinking block (preceeding the lastmost set of "
            "`tool_use` and `tool_result` blocks). We recommend you include thinking blocks "
            "from previous turns. To avoid this requirement, disable `thinking`. Please consult "
            f"our documentation at {THINKING_DOCS}"
        )


# --- what each model supports -------------------------------------------------------------

# Models older than structured outputs (the Claude 3 families, Claude 4 and 4.1), and older
# than adaptive thinking (also the 4.5 family); Opus 4.7 takes adaptive thinking only.
_NO_STRUCTURED = re.compile(r"claude-3|claude-(opus|sonnet)-4(-0|-1|-20|@20|$)")
_NO_ADAPTIVE = re.compile(r"claude-3|claude-(opus|sonnet|haiku)-4(-0|-1|-5|-20|@20|$)")
_NO_BUDGET = re.compile(r"claude-opus-4-7")


def check_model_features(model: str, body: dict[str, Any], schema: Any) -> None:
    """Anthropic's 400s for a feature the model does not have (``model`` as the Messages
    API, Vertex or Bedrock names it)."""
    name = model.removeprefix("anthropic.").split(".")[-1]
    if schema is not None and _NO_STRUCTURED.search(name):
        raise BadRequest(f"output_config.format: structured outputs are not supported for the "
                         f"model {model}.")
    kind = (body.get("thinking") or {}).get("type")
    if kind == "adaptive" and _NO_ADAPTIVE.search(name):
        raise BadRequest(f"thinking.type: 'adaptive' is not supported for the model {model}; "
                         "use 'enabled' with budget_tokens.")
    if kind == "enabled" and _NO_BUDGET.search(name):
        raise BadRequest(f"thinking.type: 'enabled' is not supported for the model {model}; "
                         "use 'adaptive' with output_config.effort.")


# --- structured outputs -------------------------------------------------------------------

STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"


def _output_schema(body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any] | None:
    """The JSON schema the answer must follow: GA ``output_config.format`` or the beta
    ``output_format`` (only with ``anthropic-beta: structured-outputs-2025-11-13``)."""
    fmt = None
    config = body.get("output_config")
    if config is not None:
        if not isinstance(config, dict) or not set(config) <= {"format", "effort"}:
            raise BadRequest("output_config: Extra inputs are not permitted")
        effort = config.get("effort")
        if effort is not None and effort not in ("low", "medium", "high", "xhigh", "max"):
            raise BadRequest("output_config.effort: Input should be 'low', 'medium', 'high', "
                             "'xhigh' or 'max'")
        fmt = config.get("format")
    if "output_format" in body:
        betas = {b.strip() for b in headers.get("anthropic-beta", "").split(",")}
        if STRUCTURED_OUTPUTS_BETA not in betas:
            raise BadRequest("output_format: Extra inputs are not permitted")
        if fmt is not None:
            raise BadRequest("output_format and output_config.format may not both be set")
        fmt = body["output_format"]
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise BadRequest("output_config.format.type: Input should be 'json_schema'")
    if not isinstance(fmt.get("schema"), dict):
        raise BadRequest("output_config.format.schema: Field required")
    return fmt["schema"]


# --- prompt caching -----------------------------------------------------------------------
#
# Every block with ``cache_control`` (tools, system, messages; or the top-level
# ``cache_control``, which caches the whole prompt) is a breakpoint.  The prefix up to the
# last one is written on first sight and read when the same model sees it again.  Unlike
# Anthropic there is no minimum cacheable length, so tests can use short prompts.

_cache: dict[bytes, int] = {}  # prefix digest -> tokens (bounded below)
_CACHE_MAX = 4096


def _prefix_parts(body: dict[str, Any], messages: list[Any]) -> tuple[list[Any], int]:
    """The prompt as an ordered list of parts, and the index after the last breakpoint."""
    parts: list[Any] = []
    end = 0
    for tool in body.get("tools") or ():
        parts.append(("tool", {k: v for k, v in tool.items() if k != "cache_control"}))
        if tool.get("cache_control"):
            end = len(parts)
    system = body.get("system")
    for block in [{"type": "text", "text": system}] if isinstance(system, str) else system or ():
        parts.append(("system", {k: v for k, v in block.items() if k != "cache_control"}))
        if block.get("cache_control"):
            end = len(parts)
    for msg in messages:
        for block in _blocks(msg.get("content"), "content"):
            parts.append((msg["role"], {k: v for k, v in block.items() if k != "cache_control"}))
            if block.get("cache_control"):
                end = len(parts)
    if body.get("cache_control"):
        end = len(parts)
    return parts, end


def _part_tokens(part: Any) -> int:
    _, block = part
    if block.get("type") == "text":
        return count_tokens(block.get("text") or "")
    return count_tokens(orjson.dumps(block).decode())


def _cache_usage(body: dict[str, Any], messages: list[Any]) -> tuple[int, int]:
    """(cache_creation_input_tokens, cache_read_input_tokens) for this request."""
    parts, end = _prefix_parts(body, messages)
    if end == 0:
        return 0, 0
    digest = hashlib.sha256(orjson.dumps([body["model"], parts[:end]])).digest()
    tokens = sum(_part_tokens(p) for p in parts[:end])
    if digest in _cache:
        return 0, tokens
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[digest] = tokens
    return tokens, 0


# --- the reply ----------------------------------------------------------------------------


def _content(req: MockRequest, body: dict[str, Any], messages: list[Any]):
    """(blocks, stop_reason, stop_sequence, output_tokens, thinking_tokens) for a request."""
    thinking = _thinking_config(body)
    _check_thinking_history(messages, thinking)
    schema = _output_schema(body, req.headers)
    check_model_features(body["model"], body, schema)
    tool = _wants_tool(body, messages)
    blocks: list[dict[str, Any]] = []
    thinking_tokens = 0
    if thinking is not None:
        text = f"mock thinking about: {last_user_text(messages)[:40]}"
        if thinking.get("display") == "omitted":
            text = ""
        blocks.append({"type": "thinking", "thinking": text, "signature": sign_thinking(text)})
        thinking_tokens = count_tokens(text) if text else 1
    budget = body["max_tokens"] - thinking_tokens
    if tool is not None:
        value = instance(tool.get("input_schema"))
        blocks.append({"type": "tool_use", "id": _new_id("toolu_"), "name": tool["name"],
                       "input": value})
        out = count_tokens(orjson.dumps(value).decode()) + 1
        return blocks, "tool_use", None, out + thinking_tokens, thinking_tokens
    if schema is not None:
        text, stop_reason, stop_sequence = orjson.dumps(instance(schema)).decode(), "end_turn", None
    else:
        text, stop_reason, stop_sequence = _cut(reply_text(messages), body, budget)
    blocks.append({"type": "text", "text": text})
    return blocks, stop_reason, stop_sequence, count_tokens(text) + thinking_tokens, \
        thinking_tokens


def _block_events(index: int, block: dict[str, Any], chunks: int) -> list[bytes]:
    kind = block["type"]
    if kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p}
                  for p in split_text(block["thinking"], chunks)]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        start = {**block, "input": {}}
        arguments = orjson.dumps(block["input"]).decode()
        deltas = [{"type": "input_json_delta", "partial_json": p}
                  for p in ["", *split_text(arguments, chunks)]]
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in split_text(block["text"], chunks)]
    events = [_sse({"type": "content_block_start", "index": index, "content_block": start})]
    if index == 0:
        events.append(_sse({"type": "ping"}))
    events.extend(_sse({"type": "content_block_delta", "index": index, "delta": d})
                  for d in deltas)
    events.append(_sse({"type": "content_block_stop", "index": index}))
    return events


def messages_create(req: MockRequest, ctl: Controls) -> Reply | StreamReply:
    body = req.json
    if not isinstance(body, dict):
        raise BadRequest("There was an issue with your request body: expected a JSON object")
    messages = _validate(body)
    model = body["model"]
    mid = _new_id("msg_")
    blocks, stop_reason, stop_sequence, output_tokens, thinking_tokens = _content(
        req, body, messages
    )
    written, read = _cache_usage(body, messages)
    usage: dict[str, Any] = {
        "input_tokens": max(1, _input_tokens(body, messages) - written - read),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    if written:
        ttl = "1h" if any('"ttl":"1h"' in orjson.dumps(body.get(k)).decode()
                          for k in ("system", "messages", "tools", "cache_control")) else "5m"
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": written if ttl == "5m" else 0,
                                   "ephemeral_1h_input_tokens": written if ttl == "1h" else 0}
    if thinking_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": thinking_tokens}
    headers = [("request-id", _new_id("req_"))]
    if not body.get("stream"):
        out = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }
        return Reply(200, orjson.dumps(out), headers=headers)

    start_usage = {k: v for k, v in usage.items() if k != "output_tokens_details"}
    start_usage["output_tokens"] = 1
    events = [
        _sse(
            {
                "type": "message_start",
                "message": {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            }
        )
    ]
    if "mock stream error" in _final_user_text(messages).lower() and blocks[-1]["type"] == "text":
        for index, block in enumerate(blocks[:-1]):
            events.extend(_block_events(index, block, ctl.chunks))
        index = len(blocks) - 1
        block_events = _block_events(index, blocks[-1], ctl.chunks)
        head = 2 if index == 0 else 1  # content_block_start (+ ping on the first block)
        pieces = block_events[head:-1]  # the text deltas
        events.extend(block_events[:head])
        events.extend(pieces[: max(1, len(pieces) // 2)])
        events.append(
            _sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        )
        return StreamReply(200, events, headers=headers)
    for index, block in enumerate(blocks):
        events.extend(_block_events(index, block, ctl.chunks))
    delta_usage: dict[str, Any] = {"output_tokens": output_tokens}
    if thinking_tokens:
        delta_usage["output_tokens_details"] = {"thinking_tokens": thinking_tokens}
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": delta_usage,
            }
        )
    )
    events.append(_sse({"type": "message_stop"}))
    return StreamReply(200, events, headers=headers)


def count_tokens_reply(body: Any) -> dict[str, Any]:
    """``{"input_tokens": n}`` for a Messages request without ``max_tokens``."""
    if not isinstance(body, dict):
        raise BadRequest("There was an issue with your request body: expected a JSON object")
    messages = _validate(body, counting=True)
    return {"input_tokens": _input_tokens(body, messages)}


def messages_count_tokens(req: MockRequest, ctl: Controls) -> Reply:
    return Reply(200, orjson.dumps(count_tokens_reply(req.json)),
                 headers=[("request-id", _new_id("req_"))])


ROUTES = {
    ("POST", "/v1/messages"): messages_create,
    ("POST", "/v1/messages/count_tokens"): messages_count_tokens,
}
