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
  ``any``/``tool``, or the final user turn's text contains "call tool" (and the
  choice is not ``none``); the input has a mock value per required property;
* ``stop_sequences`` cut the reply (stop_reason ``stop_sequence``); a reply
  longer than ``max_tokens`` words is cut (stop_reason ``max_tokens``);
* a final user text containing "mock stream error" makes a stream send part
  of the reply and then an ``error`` event (``overloaded_error``).

The request is validated the way Anthropic does (required ``model``,
``max_tokens``, ``messages``; roles user/assistant only; no unknown top-level
keys; ``tool_result`` blocks must answer the previous turn's ``tool_use`` ids),
so a translation bug in Helix shows up as a 400 here.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import orjson

from .base import BadRequest, Controls, MockRequest, Reply, StreamReply, count_tokens, split_text
from .openai_routes import tool_arguments

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
        return next((t for t in tools if t.get("name") == choice.get("name")), tools[0])
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


def _cut(text: str, body: dict[str, Any]) -> tuple[str, str, str | None]:
    """Apply stop_sequences and max_tokens: (text, stop_reason, stop_sequence)."""
    best = None
    for seq in body.get("stop_sequences") or ():
        pos = text.find(seq) if seq else -1
        if pos >= 0 and (best is None or pos < best[0]):
            best = (pos, seq)
    if best is not None:
        text = text[: best[0]]
    words = text.split(" ")
    if len(words) > body["max_tokens"]:
        return " ".join(words[: body["max_tokens"]]), "max_tokens", None
    if best is not None:
        return text, "stop_sequence", best[1]
    return text, "end_turn", None


def _sse(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def messages_create(req: MockRequest, ctl: Controls) -> Reply | StreamReply:
    body = req.json
    if not isinstance(body, dict):
        raise BadRequest("There was an issue with your request body: expected a JSON object")
    messages = _validate(body)
    model = body["model"]
    mid = _new_id("msg_")
    input_tokens = _input_tokens(body, messages)
    tool = _wants_tool(body, messages)
    if tool is not None:
        arguments = tool_arguments({"function": {"parameters": tool.get("input_schema")}})
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": _new_id("toolu_"),
            "name": tool["name"],
            "input": orjson.loads(arguments),
        }
        text, stop_reason, stop_sequence = "", "tool_use", None
        output_tokens = count_tokens(arguments) + 1
    else:
        text, stop_reason, stop_sequence = _cut(reply_text(messages), body)
        block = {"type": "text", "text": text}
        output_tokens = count_tokens(text)
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    headers = [("request-id", _new_id("req_"))]
    if not body.get("stream"):
        out = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }
        return Reply(200, orjson.dumps(out), headers=headers)

    start_usage = {**usage, "output_tokens": 1}
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
    if tool is not None:
        events.append(
            _sse(
                {"type": "content_block_start", "index": 0, "content_block": {**block, "input": {}}}
            )
        )
        events.append(_sse({"type": "ping"}))
        fragments = ["", *split_text(arguments, ctl.chunks)]
        events.extend(
            _sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": frag},
                }
            )
            for frag in fragments
        )
    else:
        events.append(
            _sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                }
            )
        )
        events.append(_sse({"type": "ping"}))
        pieces = split_text(text, ctl.chunks)
        if "mock stream error" in _final_user_text(messages).lower():
            events.extend(
                _sse(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": p},
                    }
                )
                for p in pieces[: max(1, len(pieces) // 2)]
            )
            events.append(
                _sse(
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    }
                )
            )
            return StreamReply(200, events, headers=headers)
        events.extend(
            _sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": p},
                }
            )
            for p in pieces
        )
    events.append(_sse({"type": "content_block_stop", "index": 0}))
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"output_tokens": output_tokens},
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
