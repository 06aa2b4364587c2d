"""Cohere v2 wire format for the mock provider: ``/v2/chat`` (JSON and SSE), ``/v2/embed``.

``response_format: {"type": "json_object"}`` answers a JSON object (``{"reply": ...}``), or a
minimal instance of ``json_schema`` when one is given (``instance.py``).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import orjson

from .base import BadRequest, Controls, MockRequest, Reply, StreamReply, count_tokens, split_text
from .instance import instance
from .openai_routes import embedding_vector, tool_arguments

NAME = "cohere"

_ids = itertools.count(1)
_id_prefix = os.urandom(3).hex()


def error_reply(
    status: int, message: str | None = None, code: str | None = None, param: str | None = None
) -> Reply:
    if message is None:
        message = "You are using a Trial key, which is limited (mock)." if status == 429 else (
            f"mock error (status {status})"
        )
    return Reply(status, orjson.dumps({"message": message}))


def check_auth(req: MockRequest, key: str) -> bool:
    return req.headers.get("authorization", "") == f"Bearer {key}"


def _new_id() -> str:
    return f"{_id_prefix}-{next(_ids):08d}"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _validate(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("invalid request: body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("invalid request: model is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("invalid request: messages must be a non-empty list")
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ("system", "user", "assistant", "tool"):
            raise BadRequest(f"invalid request: messages[{i}].role {role!r} is not allowed")
        if role == "tool" and not msg.get("tool_call_id"):
            raise BadRequest(f"invalid request: messages[{i}].tool_call_id is required")
    for bad in ("top_p", "n", "max_completion_tokens", "stop"):
        if bad in body:
            raise BadRequest(f"invalid request: unknown field {bad!r}")
    return body


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """``response_format``: ``{"type": "text"}`` or ``{"type": "json_object", "json_schema"?}``."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object"):
        raise BadRequest("invalid request: response_format.type must be one of 'text', "
                         "'json_object'")
    if set(fmt) - {"type", "json_schema"}:
        raise BadRequest(f"invalid request: response_format: unknown field "
                         f"{sorted(set(fmt) - {'type', 'json_schema'})[0]!r}")
    schema = fmt.get("json_schema")
    if schema is not None and (fmt["type"] != "json_object" or not isinstance(schema, dict)):
        raise BadRequest("invalid request: response_format.json_schema must be an object and "
                         "needs type json_object")
    return fmt


def _last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return _text(msg.get("content"))
        if msg.get("role") == "tool":
            return "tool result"
    return ""


def _sse(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def chat(req: MockRequest, ctl: Controls) -> Reply | StreamReply:
    body = _validate(req.json)
    messages = body["messages"]
    user_text = _last_user_text(messages)
    tools = body.get("tools") or []
    tool = None
    if tools and body.get("tool_choice") != "NONE" and (
        "call tool" in user_text.lower() or body.get("tool_choice") == "REQUIRED"
    ):
        tool = tools[0]
    prompt_tokens = max(1, sum(count_tokens(_text(m.get("content"))) for m in messages))
    cid = _new_id()
    if tool is not None:
        call_id = f"call_{_new_id()}"
        name = tool["function"]["name"]
        args = tool_arguments(tool)
        completion_tokens = count_tokens(args) + 1
        finish = "TOOL_CALL"
    else:
        text = f"mock reply to: {user_text[:40]}"
        fmt = _response_format(body)
        if fmt is not None and fmt.get("type") == "json_object":
            schema = fmt.get("json_schema")
            text = orjson.dumps(instance(schema) if schema else {"reply": text}).decode()
        completion_tokens = count_tokens(text)
        finish = "COMPLETE"
    usage = {
        "billed_units": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
        "tokens": {"input_tokens": prompt_tokens + 3, "output_tokens": completion_tokens},
    }
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant"}
        if tool is not None:
            message["tool_plan"] = f"I will call {name}."
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            ]
        else:
            message["content"] = [{"type": "text", "text": text}]
        out = {"id": cid, "finish_reason": finish, "message": message, "usage": usage}
        return Reply(200, orjson.dumps(out))
    start_msg = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [],
                 "citations": []}
    events = [_sse({"id": cid, "type": "message-start", "delta": {"message": start_msg}})]
    if tool is not None:
        for piece in split_text(f"I will call {name}.", 2):
            plan = {"message": {"tool_plan": piece}}
            events.append(_sse({"type": "tool-plan-delta", "delta": plan}))
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        events.append(_sse({"type": "tool-call-start", "index": 0,
                            "delta": {"message": {"tool_calls": call}}}))
        for piece in split_text(args, ctl.chunks):
            frag = {"function": {"arguments": piece}}
            events.append(_sse({"type": "tool-call-delta", "index": 0,
                                "delta": {"message": {"tool_calls": frag}}}))
        events.append(_sse({"type": "tool-call-end", "index": 0}))
    else:
        events.append(_sse({"type": "content-start", "index": 0,
                            "delta": {"message": {"content": {"type": "text", "text": ""}}}}))
        for piece in split_text(text, ctl.chunks):
            events.append(_sse({"type": "content-delta", "index": 0,
                                "delta": {"message": {"content": {"text": piece}}}}))
        events.append(_sse({"type": "content-end", "index": 0}))
    events.append(_sse({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}}))
    return StreamReply(200, events)


def embed(req: MockRequest, ctl: Controls) -> Reply:
    body = req.json
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise BadRequest("invalid request: model is required")
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("invalid request: texts must be a non-empty list of strings")
    if body.get("input_type") not in ("search_document", "search_query", "classification",
                                      "clustering"):
        raise BadRequest("invalid request: input_type is required for embed v3 models")
    dim = body.get("output_dimension") or 16
    vectors = [embedding_vector(t, dim) for t in texts]
    types = body.get("embedding_types") or ["float"]
    out = {
        "id": _new_id(),
        "embeddings": {t: vectors for t in types},
        "texts": texts,
        "meta": {"api_version": {"version": "2"},
                 "billed_units": {"input_tokens": sum(count_tokens(t) for t in texts)}},
        "response_type": "embeddings_by_type",
    }
    return Reply(200, orjson.dumps(out))


ROUTES = {("POST", "/v2/chat"): chat, ("POST", "/v2/embed"): embed}
PREFIX_ROUTES: list = []
