"""AWS Bedrock Runtime wire format for the mock provider.

``POST /model/{modelId}/converse``, ``/converse-stream`` (binary AWS event-stream
frames, deliberately cut across HTTP chunks) and ``/invoke`` (Titan and Cohere
embeddings).  With ``--require-key SECRET`` the mock verifies each request's
SigV4 signature, taking SECRET as the AWS secret access key.

Behaviour Helix's translation relies on, as AWS has it:

* Titan text embeddings take exactly one ``inputText`` string per call (an array, a missing
  or an extra key is a 400 ``ValidationException`` "Malformed input request: ...");
* ``toolConfig.toolChoice``: ``{tool: {name}}`` answers that tool (unknown name: 400),
  ``{any: {}}`` the first one, ``{auto: {}}`` only when the user text says "call tool"; the
  ``toolUse.input`` is a minimal instance of ``inputSchema.json``;
* Claude's ``additionalModelRequestFields.thinking`` puts a ``reasoningContent`` block
  (``reasoningText: {text, signature}``) first, streamed as ``reasoningContent`` text deltas
  then a signature delta; Claude's own 400s (relayed as "The model returned the following
  errors: ...") for a small budget, a forced toolChoice, a forged signature, or a final
  tool-using assistant turn sent back without its reasoning block;
* ``outputConfig.textFormat`` (``json_schema``, the schema as a JSON string) answers JSON
  (for Claude only on the models that have structured outputs, as Claude answers);
* ``cachePoint`` blocks: the prefix is written once (``cacheWriteInputTokens``) then read.
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

from .anthropic_routes import sign_thinking
from .base import BadRequest, Controls, MockRequest, Reply, StreamReply, count_tokens, split_text
from .instance import instance
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


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [t["toolSpec"] for t in (body.get("toolConfig") or {}).get("tools") or []
            if isinstance(t, dict) and isinstance(t.get("toolSpec"), dict)]


def _tool_input(spec: dict[str, Any]) -> dict[str, Any]:
    schema = (spec.get("inputSchema") or {}).get("json") or {}
    return instance(schema) if schema else {}


def _forced(body: dict[str, Any]) -> bool:
    choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
    return "any" in choice or "tool" in choice


def _wants_tool(body: dict[str, Any], user_text: str) -> dict[str, Any] | None:
    tools = _tools(body)
    if not tools:
        return None
    choice = (body.get("toolConfig") or {}).get("toolChoice") or {"auto": {}}
    if not isinstance(choice, dict) or len(choice) != 1:
        raise BadRequest("toolConfig.toolChoice: exactly one of auto, any, tool must be set")
    if "tool" in choice:
        name = (choice["tool"] or {}).get("name")
        for spec in tools:
            if spec.get("name") == name:
                return spec
        raise BadRequest(f"The tool {name} in toolChoice is not defined in toolConfig.tools.")
    if "any" in choice or "call tool" in user_text.lower():
        return tools[0]
    return None


def _model_error(message: str) -> BadRequest:
    """A ValidationException carrying the model's own error, as Bedrock relays Claude's."""
    return BadRequest(f"The model returned the following errors: {message}")


def _thinking(body: dict[str, Any], model_id: str) -> dict[str, Any] | None:
    """``additionalModelRequestFields.thinking`` for a Claude model, checked like Anthropic."""
    fields = body.get("additionalModelRequestFields") or {}
    cfg = fields.get("thinking") if isinstance(fields, dict) else None
    if cfg is None or "anthropic." not in model_id:
        return None
    if not isinstance(cfg, dict) or cfg.get("type") not in ("enabled", "disabled", "adaptive"):
        raise _model_error("thinking: Input tag does not match any of the expected tags")
    if cfg["type"] == "disabled":
        return None
    budget = cfg.get("budget_tokens")
    if cfg["type"] == "enabled":
        if not isinstance(budget, int) or budget < 1024:
            raise _model_error("thinking.enabled.budget_tokens: Input should be greater than or "
                               "equal to 1024")
        max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
        if isinstance(max_tokens, int) and max_tokens <= budget:
            raise _model_error("`max_tokens` must be greater than `thinking.budget_tokens`")
    if _forced(body):
        raise _model_error("Thinking may not be enabled when tool_choice forces tool use.")
    return cfg


def _check_reasoning_history(messages: list[Any], thinking: dict[str, Any] | None) -> None:
    """Signed reasoning blocks sent back must be the mock's; with thinking on, the final
    assistant turn that used tools must start with one (Claude's rule, relayed by Bedrock)."""
    for i, msg in enumerate(messages):
        if msg.get("role") != "assistant":
            continue
        for k, block in enumerate(msg["content"]):
            rc = block.get("reasoningContent")
            if rc is None or "redactedContent" in rc:
                continue
            text = (rc.get("reasoningText") or {}).get("text", "")
            sig = (rc.get("reasoningText") or {}).get("signature")
            if not isinstance(sig, str) or not hmac.compare_digest(sig, sign_thinking(text)):
                raise _model_error(f"messages.{i}.content.{k}: Invalid `signature` in "
                                   "`thinking` block")
    if thinking is None:
        return
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        return
    content = messages[last]["content"]
    if any("toolUse" in b for b in content) and "reasoningContent" not in content[0]:
        found = "tool_use" if "toolUse" in content[0] else "text"
        raise _model_error(
            f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
            f"found `{found}`. When `thinking` is enabled, a final `assistant` message must "
            "start with a thinking block (preceeding the lastmost set of `tool_use` and "
            "`tool_result` blocks). We recommend you include thinking blocks from previous "
            "turns. To avoid this requirement, disable `thinking`."
        )


def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """``outputConfig.textFormat`` (structured output): the JSON schema, parsed."""
    fmt = (body.get("outputConfig") or {}).get("textFormat")
    if fmt is None:
        return None
    if fmt.get("type") != "json_schema":
        raise BadRequest("outputConfig.textFormat.type: must be json_schema")
    raw = ((fmt.get("structure") or {}).get("jsonSchema") or {}).get("schema")
    if not isinstance(raw, str):
        raise BadRequest("outputConfig.textFormat.structure.jsonSchema.schema: a JSON string "
                         "is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("outputConfig.textFormat.structure.jsonSchema.schema: invalid JSON") \
            from None


_cache: dict[bytes, int] = {}  # prompt prefix before the last cachePoint -> tokens


def _cache_usage(body: dict[str, Any], model_id: str) -> tuple[int, int]:
    """(cacheWriteInputTokens, cacheReadInputTokens): the prefix before the last cachePoint
    is written on first sight and read on repeats (no minimum length, unlike Bedrock)."""
    parts: list[Any] = []
    end = 0
    for t in (body.get("toolConfig") or {}).get("tools") or ():
        if "cachePoint" in t:
            end = len(parts)
        else:
            parts.append(t)
    for b in body.get("system") or ():
        if "cachePoint" in b:
            end = len(parts)
        else:
            parts.append(b)
    for m in body["messages"]:
        for b in m["content"]:
            if "cachePoint" in b:
                end = len(parts)
            else:
                parts.append([m["role"], b])
    if end == 0:
        return 0, 0
    digest = hashlib.sha256(orjson.dumps([model_id, parts[:end]])).digest()
    tokens = max(1, count_tokens(orjson.dumps(parts[:end]).decode()))
    if digest in _cache:
        return 0, tokens
    if len(_cache) > 4096:
        _cache.clear()
    _cache[digest] = tokens
    return tokens, 0


def _converse(req: MockRequest, ctl: Controls, model_id: str, stream: bool) -> Reply | StreamReply:
    body = _validate_converse(req.json)
    messages = body["messages"]
    user_text = _last_user_text(messages)
    prompt_tokens = max(1, sum(
        count_tokens(b.get("text", "")) for m in messages for b in m["content"]
    ))
    thinking = _thinking(body, model_id)
    _check_reasoning_history(messages, thinking)
    tool = _wants_tool(body, user_text)
    schema = _output_schema(body)
    if "anthropic.claude" in model_id:  # what the Claude model supports, as Claude answers
        from .anthropic_routes import check_model_features

        fields = body.get("additionalModelRequestFields") or {}
        try:
            check_model_features(model_id, {"thinking": fields.get("thinking")}, schema)
        except BadRequest as exc:
            raise _model_error(exc.message) from None
    text = f"mock reply to: {user_text[:40]}"
    if schema is not None:
        text = orjson.dumps(instance(schema)).decode()
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    stop = "end_turn"
    reasoning = ""
    if thinking is not None:
        reasoning = f"mock thinking about: {user_text[:40]}"
    if tool is not None:
        tool_id = f"tooluse_{_id_prefix}{next(_ids):06d}"
        args = _tool_input(tool)
        completion_tokens = count_tokens(orjson.dumps(args).decode()) + 1
        stop = "tool_use"
    else:
        if schema is None and max_tokens is not None and max_tokens < count_tokens(text):
            text = " ".join(text.split()[:max_tokens])
            stop = "max_tokens"
        completion_tokens = count_tokens(text)
    if reasoning:
        completion_tokens += count_tokens(reasoning)
    written, read = _cache_usage(body, model_id)
    uncached = max(1, prompt_tokens - written - read)  # Bedrock counts cache tokens apart
    usage: dict[str, Any] = {
        "inputTokens": uncached,
        "outputTokens": completion_tokens,
        "totalTokens": uncached + written + read + completion_tokens,
    }
    if written or read:
        usage["cacheReadInputTokens"] = read
        usage["cacheWriteInputTokens"] = written
    content: list[dict[str, Any]] = []
    if reasoning:
        content.append({"reasoningContent": {"reasoningText": {
            "text": reasoning, "signature": sign_thinking(reasoning)}}})
    if tool is not None:
        content.append({"toolUse": {"toolUseId": tool_id, "name": tool["name"], "input": args}})
    else:
        content.append({"text": text})
    if not stream:
        out = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 12},
        }
        return Reply(200, orjson.dumps(out))
    frames = [_frame("messageStart", {"role": "assistant"})]
    for index, block in enumerate(content):
        if "reasoningContent" in block:
            rt = block["reasoningContent"]["reasoningText"]
            for piece in split_text(rt["text"], ctl.chunks):
                frames.append(_frame("contentBlockDelta", {
                    "contentBlockIndex": index, "delta": {"reasoningContent": {"text": piece}},
                }))
            frames.append(_frame("contentBlockDelta", {
                "contentBlockIndex": index,
                "delta": {"reasoningContent": {"signature": rt["signature"]}},
            }))
        elif "toolUse" in block:
            tu = block["toolUse"]
            frames.append(_frame("contentBlockStart", {
                "contentBlockIndex": index,
                "start": {"toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}},
            }))
            for piece in split_text(orjson.dumps(tu["input"]).decode(), ctl.chunks):
                frames.append(_frame("contentBlockDelta", {
                    "contentBlockIndex": index, "delta": {"toolUse": {"input": piece}},
                }))
        else:
            for piece in split_text(block["text"], ctl.chunks):
                frames.append(_frame("contentBlockDelta", {
                    "contentBlockIndex": index, "delta": {"text": piece},
                }))
        frames.append(_frame("contentBlockStop", {"contentBlockIndex": index}))
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


_TITAN_KEYS = {
    "v1": {"inputText"},
    "v2": {"inputText", "dimensions", "normalize", "embeddingTypes"},
}


def _titan_error(detail: str) -> BadRequest:
    return BadRequest(f"Malformed input request: {detail}, please reformat your input and "
                      "try again.")


def _titan(body: dict[str, Any], model_id: str) -> Reply:
    """Amazon Titan text embeddings: exactly one ``inputText`` string per call, as AWS does."""
    allowed = _TITAN_KEYS["v1" if "titan-embed-text-v1" in model_id else "v2"]
    for key in body:
        if key not in allowed:
            raise _titan_error(f"#: extraneous key [{key}] is not permitted")
    if "inputText" not in body:
        raise _titan_error("#: required key [inputText] not found")
    text = body["inputText"]
    if not isinstance(text, str):
        found = "JSONArray" if isinstance(text, list) else type(text).__name__
        raise _titan_error(f"#/inputText: expected type: String, found: {found}")
    if not text:
        raise _titan_error("#/inputText: expected minLength: 1, actual: 0")
    dim = body.get("dimensions")
    if dim is not None and dim not in (256, 512, 1024):
        raise _titan_error(f"#/dimensions: {dim} is not a valid enum value")
    out: dict[str, Any] = {
        "embedding": embedding_vector(text, dim or DEFAULT_EMBEDDING_DIM),
        "inputTextTokenCount": count_tokens(text),
    }
    return Reply(200, orjson.dumps(out))


def _invoke(req: MockRequest, model_id: str) -> Reply:
    body = req.json
    if not isinstance(body, dict):
        raise BadRequest("Malformed input request, please reformat your input and try again.")
    if "titan-embed" in model_id:
        return _titan(body, model_id)
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
