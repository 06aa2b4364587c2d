"""AWS Bedrock Runtime wire format for the mock provider.

``POST /model/{modelId}/converse``, ``/converse-stream`` (binary AWS event-stream
frames, deliberately cut across HTTP chunks) and ``/invoke`` (Titan and Cohere
embeddings).  With ``--require-key SECRET`` the mock verifies each request's
SigV4 signature, taking SECRET as the AWS secret access key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
from typing import Any
from urllib.parse import unquote

import orjson

from helix.providers import sigv4
from helix.providers.eventstream import encode_message

from .base import BadRequest, Controls, MockRequest, Reply, StreamReply, count_tokens, split_text
from .openai_routes import embedding_vector

NAME = "bedrock"
DEFAULT_EMBEDDING_DIM = 16

_ids = itertools.count(1)
_id_prefix = os.urandom(3).hex()

_ERROR_TYPES = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def error_reply(
    status: int, message: str | None = None, code: str | None = None, param: str | None = None
) -> Reply:
    etype = code if code and code[:1].isupper() else _ERROR_TYPES.get(
        status, "InternalServerException" if status >= 500 else "ValidationException"
    )
    if message is None:
        message = "Too many requests, please wait before trying again." if status == 429 else (
            f"mock error (status {status})"
        )
    return Reply(
        status,
        orjson.dumps({"message": message}),
        headers=[("x-amzn-errortype", f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/")],
    )


def check_auth(req: MockRequest, key: str) -> bool:
    """Recompute the SigV4 signature over the headers the request says it signed."""
    auth = sigv4.parse_authorization(req.headers.get("authorization", ""))
    amz_date = req.headers.get("x-amz-date", "")
    if auth is None or auth.service != "bedrock" or amz_date[:8] != auth.datestamp:
        return False
    if "host" not in auth.signed_headers or "x-amz-date" not in auth.signed_headers:
        return False
    headers = []
    for name in auth.signed_headers:
        if name not in req.headers:
            return False
        headers.append((name, req.headers[name]))
    payload_hash = hashlib.sha256(req.body).hexdigest()
    signed, sig = sigv4.signature(
        req.method, req.path, req.query, headers, payload_hash, amz_date,
        auth.region, auth.service, key,
    )
    return signed == ";".join(auth.signed_headers) and hmac.compare_digest(sig, auth.signature)


def _frame(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_message(headers, orjson.dumps(payload))


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, orjson.dumps({"message": message}))


def _last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if msg.get("role") != "user":
            continue
        texts = [b["text"] for b in msg["content"] if "text" in b]
        if texts:
            return " ".join(texts)
        if any("toolResult" in b for b in msg["content"]):
            return "tool result"
    return ""


def _validate_converse(body: Any) -> dict[str, Any]:
    """The checks real Bedrock makes that a translator can get wrong."""
    if not isinstance(body, dict):
        raise BadRequest("Malformed input request, please reformat your input and try again.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("A conversation must start with a user message.")
    has_tool_blocks = False
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role != ("user" if i % 2 == 0 else "assistant"):
            raise BadRequest(
                "A conversation must alternate between user and assistant roles "
                "and start with a user message."
            )
        content = msg.get("content")
        if not isinstance(content, list) or not content:
            raise BadRequest(f"messages.{i}.content: must not be empty")
        for block in content:
            if not isinstance(block, dict) or len(block) != 1:
                raise BadRequest(f"messages.{i}.content: each block needs exactly one member")
            (kind, value), = block.items()
            if kind == "text" and (not isinstance(value, str) or not value.strip()):
                raise BadRequest("The text field in the ContentBlock object is blank.")
            if kind in ("toolUse", "toolResult"):
                has_tool_blocks = True
    if has_tool_blocks and not body.get("toolConfig"):
        raise BadRequest(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    return body


def _tool_input(spec: dict[str, Any]) -> dict[str, Any]:
    schema = (spec.get("inputSchema") or {}).get("json") or {}
    props = schema.get("properties") or {}
    names = schema.get("required") or list(props)
    out: dict[str, Any] = {}
    for name in names:
        t = (props.get(name) or {}).get("type")
        out[name] = {"integer": 1, "number": 1.5, "boolean": True}.get(t, "mock")
    return out


def _wants_tool(body: dict[str, Any], user_text: str) -> dict[str, Any] | None:
    tools = (body.get("toolConfig") or {}).get("tools") or []
    if not tools or "call tool" not in user_text.lower():
        return None
    return tools[0].get("toolSpec")


def _converse(req: MockRequest, ctl: Controls, model_id: str, stream: bool) -> Reply | StreamReply:
    body = _validate_converse(req.json)
    messages = body["messages"]
    user_text = _last_user_text(messages)
    prompt_tokens = max(1, sum(
        count_tokens(b.get("text", "")) for m in messages for b in m["content"]
    ))
    tool = _wants_tool(body, user_text)
    text = f"mock reply to: {user_text[:40]}"
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    stop = "end_turn"
    if tool is not None:
        tool_id = f"tooluse_{_id_prefix}{next(_ids):06d}"
        args = _tool_input(tool)
        completion_tokens = count_tokens(orjson.dumps(args).decode()) + 1
        stop = "tool_use"
    else:
        if max_tokens is not None and max_tokens < count_tokens(text):
            text = " ".join(text.split()[:max_tokens])
            stop = "max_tokens"
        completion_tokens = count_tokens(text)
    usage = {
        "inputTokens": prompt_tokens,
        "outputTokens": completion_tokens,
        "totalTokens": prompt_tokens + completion_tokens,
    }
    if not stream:
        if tool is not None:
            content: list[dict[str, Any]] = [
                {"toolUse": {"toolUseId": tool_id, "name": tool["name"], "input": args}}
            ]
        else:
            content = [{"text": text}]
        out = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 12},
        }
        return Reply(200, orjson.dumps(out))
    frames = [_frame("messageStart", {"role": "assistant"})]
    if tool is not None:
        frames.append(_frame("contentBlockStart", {
            "contentBlockIndex": 0,
            "start": {"toolUse": {"toolUseId": tool_id, "name": tool["name"]}},
        }))
        for piece in split_text(orjson.dumps(args).decode(), ctl.chunks):
            frames.append(_frame("contentBlockDelta", {
                "contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}},
            }))
    else:
        for piece in split_text(text, ctl.chunks):
            frames.append(_frame("contentBlockDelta", {
                "contentBlockIndex": 0, "delta": {"text": piece},
            }))
    frames.append(_frame("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(_frame("messageStop", {"stopReason": stop}))
    frames.append(_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 12}}))
    if "stream-exception" in user_text:
        frames.insert(2, exception_frame("throttlingException", "Too many tokens (mock)."))
        del frames[3:]
    # Cut the byte stream across frame boundaries, as TCP may: the relay must reassemble.
    data = b"".join(frames)
    size = max(7, len(data) // max(1, 2 * ctl.chunks + 1))
    events = [data[i : i + size] for i in range(0, len(data), size)]
    return StreamReply(200, events, content_type="application/vnd.amazon.eventstream")


def _invoke(req: MockRequest, model_id: str) -> Reply:
    body = req.json
    if not isinstance(body, dict):
        raise BadRequest("Malformed input request, please reformat your input and try again.")
    if "titan-embed" in model_id:
        text = body.get("inputText")
        if not isinstance(text, str) or not text:
            raise BadRequest("Malformed input request: #: required key [inputText] not found")
        dim = body.get("dimensions") or DEFAULT_EMBEDDING_DIM
        out: dict[str, Any] = {
            "embedding": embedding_vector(text, dim),
            "inputTextTokenCount": count_tokens(text),
        }
        return Reply(200, orjson.dumps(out))
    if "cohere.embed" in model_id:
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or body.get("input_type") is None:
            raise BadRequest("Malformed input request: texts and input_type are required")
        vectors = [embedding_vector(t, DEFAULT_EMBEDDING_DIM) for t in texts]
        if body.get("embedding_types"):
            out = {"embeddings": {"float": vectors}, "response_type": "embeddings_by_type"}
        else:
            out = {"embeddings": vectors, "response_type": "embeddings_floats"}
        out.update({"id": f"emb-{_id_prefix}{next(_ids)}", "texts": texts})
        return Reply(200, orjson.dumps(out))
    raise BadRequest(f"The provided model identifier is invalid: {model_id}")


def _claude_body(req: MockRequest) -> dict[str, Any]:
    """An InvokeModel body for Claude, as the Anthropic mock's Messages request."""
    body = req.json
    if not isinstance(body, dict):
        raise BadRequest("Malformed input request, please reformat your input and try again.")
    if body.get("anthropic_version") != "bedrock-2023-05-31":
        raise BadRequest("anthropic_version: must be bedrock-2023-05-31")
    for key in ("model", "stream"):
        if key in body:
            raise BadRequest(f"{key}: Extra inputs are not permitted")
    return {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}


def _claude_invoke(req: MockRequest, ctl: Controls, model_id: str, stream: bool):
    from . import anthropic_routes

    inner = _claude_body(req)
    inner["model"] = model_id
    if stream:
        inner["stream"] = True
    sub = MockRequest(req.method, req.path, req.query, req.headers, orjson.dumps(inner), inner)
    reply = anthropic_routes.messages_create(sub, ctl)
    if not stream or not isinstance(reply, StreamReply):
        return reply
    # Each Anthropic event as an event-stream "chunk" frame of base64 JSON, cut across reads.
    frames = []
    for sse in reply.events:
        data = sse.split(b"\ndata: ", 1)[1].rstrip(b"\n")
        frames.append(_frame("chunk", {"bytes": base64.b64encode(data).decode()}))
    data = b"".join(frames)
    size = max(7, len(data) // max(1, 2 * ctl.chunks + 1))
    events = [data[i : i + size] for i in range(0, len(data), size)]
    return StreamReply(200, events, content_type="application/vnd.amazon.eventstream")


def _count_tokens(req: MockRequest, model_id: str) -> Reply:
    from . import anthropic_routes

    doc = req.json
    try:
        raw = base64.b64decode(doc["input"]["invokeModel"]["body"])
        inner = orjson.loads(raw)
    except (KeyError, TypeError, ValueError):
        raise BadRequest("input.invokeModel.body: a base64 InvokeModel body is required") from None
    sub = MockRequest(req.method, req.path, req.query, req.headers, raw, inner)
    body = _claude_body(sub)
    body.pop("max_tokens", None)
    body["model"] = model_id
    count = anthropic_routes.count_tokens_reply(body)["input_tokens"]
    return Reply(200, orjson.dumps({"inputTokens": count}))


def model_route(req: MockRequest, ctl: Controls) -> Reply | StreamReply:
    rest = req.path[len("/model/") :]
    raw_id, _, action = rest.rpartition("/")
    if not raw_id or "/" in raw_id:  # the id is one segment: '/' must arrive encoded
        return error_reply(404, f"Unknown operation {req.path}", "UnknownOperationException")
    model_id = unquote(raw_id)
    if action == "converse":
        return _converse(req, ctl, model_id, stream=False)
    if action == "converse-stream":
        return _converse(req, ctl, model_id, stream=True)
    if "anthropic.claude" in model_id and action in ("invoke", "invoke-with-response-stream"):
        return _claude_invoke(req, ctl, model_id, action != "invoke")
    if "anthropic.claude" in model_id and action == "count-tokens":
        return _count_tokens(req, model_id)
    if action == "invoke":
        return _invoke(req, model_id)
    return error_reply(404, f"Unknown operation {req.path}", "UnknownOperationException")


ROUTES: dict = {}
PREFIX_ROUTES = [("POST", "/model/", model_route)]
