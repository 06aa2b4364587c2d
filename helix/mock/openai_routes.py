"""OpenAI wire format for the mock provider: chat completions, embeddings, models."""

from __future__ import annotations

import base64
import itertools
import os
import struct
import time
import zlib
from typing import Any

import orjson

from .base import BadRequest, Controls, MockRequest, Reply, StreamReply, count_tokens, split_text

NAME = "openai"

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small")
DEFAULT_EMBEDDING_DIM = 16
SYSTEM_FINGERPRINT = "fp_mock"

_ids = itertools.count(1)
_id_prefix = os.urandom(3).hex()

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def error_reply(
    status: int, message: str | None = None, code: str | None = None, param: str | None = None
) -> Reply:
    etype, default_code = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    if message is None:
        message = f"mock error (status {status})"
        if status == 429:
            message = "Rate limit reached for requests (mock)."
    body = {
        "error": {
            "message": message,
            "type": etype,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }
    return Reply(status, orjson.dumps(body))


def check_auth(req: MockRequest, key: str) -> bool:
    return req.headers.get("authorization", "") == f"Bearer {key}"


def _new_id(prefix: str) -> str:
    return f"{prefix}{_id_prefix}{next(_ids):010d}"


def _json_object(req: MockRequest) -> dict[str, Any]:
    body = req.json
    if not isinstance(body, dict):
        raise BadRequest("We could not parse the JSON body of your request.")
    return body


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return ""


def last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return _text_of(msg.get("content"))
    return ""


def reply_text(messages: list[Any]) -> str:
    """The deterministic assistant reply for a message list (tests assert on this)."""
    return f"mock reply to: {last_user_text(messages)[:40]}"


def _mock_value(schema: Any) -> Any:
    t = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if isinstance(schema, dict) and schema.get("enum"):
        return schema["enum"][0]
    return {
        "integer": 1,
        "number": 1.5,
        "boolean": True,
        "array": [],
        "object": {},
    }.get(t, "mock")


def tool_arguments(tool: dict[str, Any]) -> str:
    """Deterministic JSON arguments for a tool: a mock value for each required property."""
    params = (tool.get("function") or {}).get("parameters") or {}
    props = params.get("properties") or {}
    names = params.get("required") or list(props)
    args = {name: _mock_value(props.get(name, {})) for name in names}
    return orjson.dumps(args).decode()


def _prompt_tokens(messages: list[Any]) -> int:
    total = 0
    for msg in messages:
        if isinstance(msg, dict):
            total += count_tokens(_text_of(msg.get("content")))
    return max(1, total)


def _wants_tool(body: dict[str, Any], messages: list[Any]) -> dict[str, Any] | None:
    tools = body.get("tools")
    if not tools or not isinstance(tools, list) or not isinstance(tools[0], dict):
        return None
    if body.get("tool_choice") == "none":
        return None
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if last.get("role") == "tool":
        return None  # the tool's result came back: now answer
    if "call tool" not in last_user_text(messages).lower():
        return None
    return tools[0]


def chat_completions(req: MockRequest, ctl: Controls) -> Reply | StreamReply:
    body = _json_object(req)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    created = int(time.time())
    cid = _new_id("chatcmpl-")
    prompt_tokens = _prompt_tokens(messages)
    tool = _wants_tool(body, messages)
    if tool is not None:
        name = (tool.get("function") or {}).get("name") or "tool"
        arguments = tool_arguments(tool)
        completion_tokens = count_tokens(arguments) + 1
        content = None
    else:
        content = reply_text(messages)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and len(content.split()) > limit:
            content = " ".join(content.split()[:limit])  # cut: finish_reason "length"
        completion_tokens = count_tokens(content)
    finish_text = "length" if content is not None and content != reply_text(messages) else "stop"
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    if body.get("stream"):
        opts = body.get("stream_options") or {}
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        if tool is not None:
            events = _tool_stream(cid, created, model, name, arguments, ctl.chunks, include_usage)
        else:
            events = _content_stream(cid, created, model, content or "", ctl.chunks, include_usage,
                                     finish_text)
        if include_usage:
            events.append(_event(_chunk(cid, created, model, [], usage=usage)))
        events.append(b"data: [DONE]\n\n")
        return StreamReply(200, events)

    if tool is not None:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": _new_id("call_"),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
            "refusal": None,
            "annotations": [],
        }
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        finish = finish_text
    out = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    return Reply(200, orjson.dumps(out))


_USAGE_NULL = object()


def _chunk(
    cid: str,
    created: int,
    model: str,
    choices: list[Any],
    usage: Any = _USAGE_NULL,
    include_usage: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
    }
    if usage is not _USAGE_NULL:
        out["usage"] = usage
    elif include_usage:
        out["usage"] = None
    return out


def _choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _content_stream(
    cid: str, created: int, model: str, content: str, chunks: int, include_usage: bool,
    finish: str = "stop",
) -> list[bytes]:
    def ev(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _event(
            _chunk(cid, created, model, _choice(delta, finish), include_usage=include_usage)
        )

    events = [ev({"role": "assistant", "content": "", "refusal": None})]
    events.extend(ev({"content": piece}) for piece in split_text(content, chunks))
    events.append(ev({}, finish))
    return events


def _tool_stream(
    cid: str,
    created: int,
    model: str,
    name: str,
    arguments: str,
    chunks: int,
    include_usage: bool,
) -> list[bytes]:
    def ev(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _event(
            _chunk(cid, created, model, _choice(delta, finish), include_usage=include_usage)
        )

    first = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": _new_id("call_"),
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
        ],
        "refusal": None,
    }
    events = [ev(first)]
    for frag in split_text(arguments, chunks):
        events.append(ev({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}))
    events.append(ev({}, "tool_calls"))
    return events


def embedding_vector(text: str, dim: int) -> list[float]:
    """Deterministic vector; every value is exactly representable as float32."""
    x = zlib.crc32(text.encode()) or 1
    out = []
    for _ in range(dim):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(((x >> 8) % 2001 - 1000) / 1024.0)
    return out


def _embedding_inputs(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(x, int) for x in raw):
            return [" ".join(map(str, raw))]
        out = []
        for item in raw:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, list) and all(isinstance(x, int) for x in item):
                out.append(" ".join(map(str, item)))
            else:
                raise BadRequest("'input' items must be strings or token arrays", param="input")
        return out
    raise BadRequest("'input' must be a non-empty string or array", param="input")


def embeddings(req: MockRequest, ctl: Controls) -> Reply:
    body = _json_object(req)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", param="model")
    inputs = _embedding_inputs(body.get("input"))
    dim = body.get("dimensions") or DEFAULT_EMBEDDING_DIM
    if not isinstance(dim, int) or dim < 1 or dim > 4096:
        raise BadRequest("'dimensions' must be an integer between 1 and 4096", param="dimensions")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    data = []
    tokens = 0
    for i, text in enumerate(inputs):
        vec = embedding_vector(text, dim)
        tokens += count_tokens(text)
        emb: Any = vec
        if fmt == "base64":
            emb = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    out = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Reply(200, orjson.dumps(out))


def _model_obj(mid: str) -> dict[str, Any]:
    return {"id": mid, "object": "model", "created": 1700000000, "owned_by": "helix-mock"}


def list_models(req: MockRequest, ctl: Controls) -> Reply:
    return Reply(200, orjson.dumps({"object": "list", "data": [_model_obj(m) for m in MODELS]}))


def get_model(req: MockRequest, ctl: Controls) -> Reply:
    mid = req.path.rsplit("/models/", 1)[-1]
    if not mid:
        return list_models(req, ctl)
    if mid not in MODELS:
        return error_reply(404, f"The model '{mid}' does not exist", "model_not_found")
    return Reply(200, orjson.dumps(_model_obj(mid)))


ROUTES = {}
for _prefix in ("/v1", ""):
    ROUTES[("POST", f"{_prefix}/chat/completions")] = chat_completions
    ROUTES[("POST", f"{_prefix}/embeddings")] = embeddings
    ROUTES[("GET", f"{_prefix}/models")] = list_models

PREFIX_ROUTES = [("GET", "/v1/models/", get_model), ("GET", "/models/", get_model)]
