"""Anthropic Messages API (``POST {base}/v1/messages``) behind OpenAI's chat format.

The translation is three pure functions plus one per-stream state machine,
exported for reuse (Vertex AI serves the same Messages format with the model
in the URL and ``anthropic_version`` in the body):

* :func:`openai_to_anthropic_request` -- OpenAI chat request dict -> Messages request dict,
* :func:`anthropic_to_openai_response` -- Message -> ``chat.completion`` dict,
* :func:`anthropic_error` -- an Anthropic error body -> :class:`HelixError`,
* :class:`AnthropicStreamRelay` -- Anthropic SSE bytes -> ``chat.completion.chunk`` SSE bytes.

Request parameters (OpenAI -> Anthropic)
----------------------------------------
Translated: ``messages`` (system/developer -> top-level ``system``; consecutive
same-role turns merged; ``tool`` messages -> ``tool_result`` blocks in a user
turn; assistant ``tool_calls`` -> ``tool_use`` blocks; ``image_url`` data URLs ->
base64 image sources, http(s) URLs -> url sources; ``file`` parts carrying a
data URL -> base64 ``document`` blocks), ``max_completion_tokens``/``max_tokens``
(filled with the model's default when absent: Anthropic requires it),
``stop``, ``temperature``, ``top_p``, ``tools``, ``tool_choice``,
``parallel_tool_calls: false`` (-> ``disable_parallel_tool_use``),
``response_format`` (best effort: a system instruction asking for JSON, with the
schema for ``json_schema``), ``user`` (-> ``metadata.user_id``), ``stream``.
``cache_control`` on text/image parts is kept (Anthropic prompt caching).

Dropped, because the answer stays a valid answer without them:
:data:`DROPPED_PARAMS` (``seed``, ``presence_penalty``, ``frequency_penalty``,
``store``, ``metadata``, ``service_tier``, ``prediction``, ``reasoning_effort``,
``verbosity``, ``prompt_cache_key``, ``safety_identifier``, ``stream_options``
-- the latter is honoured by the relay).

Rejected with a 400 ``invalid_request_error`` naming the parameter, because
the client would silently get something other than what it asked for:
:data:`REJECTED_PARAMS` -- ``n`` > 1, ``logprobs: true``, ``top_logprobs``,
non-empty ``logit_bias``, ``audio``, non-text ``modalities``, the legacy
``functions``/``function_call``, ``web_search_options``.

Any other key is passed through verbatim, like vendor extensions on the
OpenAI route: Anthropic-native parameters (``top_k``, ``thinking``, ...) sent via
the SDK's ``extra_body`` work, and a truly unknown key gets Anthropic's own 400.

Responses
---------
Text blocks are joined into ``message.content``; ``tool_use`` blocks become
``tool_calls``; ``thinking`` blocks are exposed as ``message.reasoning_content``
(streamed as ``delta.reasoning_content``); other block types are skipped.
``id`` is ``chatcmpl-<Anthropic message id>``; ``model`` is the deployment's
public model name.  Usage: ``prompt_tokens`` = input + cache read + cache
creation tokens, ``prompt_tokens_details.cached_tokens`` = cache read tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from helix._fast import SSEParser
from helix.errors import ErrorKind, HelixError
from helix.providers.base import Deployment, UpstreamRequest
from helix.providers.catalog import ProviderSpec
from helix.providers.openai import base_headers, upstream_error
from helix.schema.anthropic import (
    ContentBlock,
    ErrorDetail,
    Message,
    StreamEvent,
    Usage,
    error_decoder,
    event_decoder,
    json_decode,
    json_encode,
    message_decoder,
)
from helix.schema.openai import SERVICE_TIER, system_fingerprint

__all__ = [
    "DEFAULT_ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "DROPPED_PARAMS",
    "FINISH_REASONS",
    "REJECTED_PARAMS",
    "SPECS",
    "AnthropicAdapter",
    "AnthropicStreamRelay",
    "anthropic_error",
    "anthropic_headers",
    "anthropic_to_openai_response",
    "default_max_tokens",
    "finish_reason",
    "openai_to_anthropic_request",
    "openai_usage",
    "response_created",
]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

# --- defaults that depend on the model --------------------------------------------------

_registry_lookup: list[Callable[[str], Any] | None] = []


def default_max_tokens(model_id: str) -> int:
    """``max_tokens`` to send when the client gave none (Anthropic requires one).

    The model registry's ``max_output`` when ``helix.routing.models.lookup``
    exists and knows the model; :data:`DEFAULT_MAX_TOKENS` otherwise.
    """
    if not _registry_lookup:
        try:
            from helix.routing.models import lookup  # type: ignore[import-not-found]
        except ImportError:
            lookup = None
        _registry_lookup.append(lookup)
    lookup = _registry_lookup[0]
    if lookup is not None:
        try:
            info = lookup(model_id)
        except (LookupError, ValueError, TypeError):
            info = None
        value = getattr(info, "max_output", None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_MAX_TOKENS


def response_created() -> int:
    """``created`` of a translated response: the only clock read of this module."""
    return int(time.time())


# --- request: OpenAI -> Anthropic -------------------------------------------------------

DROPPED_PARAMS = frozenset(
    {
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "store",
        "metadata",
        "service_tier",
        "prediction",
        "reasoning_effort",
        "verbosity",
        "prompt_cache_key",
        "safety_identifier",
        "stream_options",
    }
)


def _used(value: Any) -> bool:
    return value is not None and value is not False


REJECTED_PARAMS: dict[str, Callable[[Any], bool]] = {
    # param -> "the client really uses it" (a default value is accepted and dropped)
    "n": lambda v: v is not None and v != 1,
    "logprobs": lambda v: bool(v),
    "top_logprobs": _used,
    "logit_bias": lambda v: bool(v),
    "audio": _used,
    "modalities": lambda v: isinstance(v, list) and any(m != "text" for m in v),
    "functions": lambda v: bool(v),
    "function_call": _used,
    "web_search_options": _used,
}

_HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "user",
        "stream",
    }
)

_JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose before or after it "
    "and no Markdown code fences."
)


def _bad(message: str, param: str | None, code: str | None = None) -> HelixError:
    return HelixError(ErrorKind.INVALID_REQUEST, message, param=param, code=code)


def _unsupported(param: str, why: str) -> HelixError:
    return _bad(
        f"'{param}' is not supported by Anthropic models ({why}).",
        param,
        "unsupported_parameter",
    )


_REJECT_WHY = {
    "n": "Anthropic returns one choice per request",
    "logprobs": "Anthropic does not return log probabilities",
    "top_logprobs": "Anthropic does not return log probabilities",
    "logit_bias": "Anthropic has no logit bias",
    "audio": "Anthropic has no audio output",
    "modalities": "Anthropic outputs text only",
    "functions": "use 'tools' instead of the deprecated 'functions'",
    "function_call": "use 'tool_choice' instead of the deprecated 'function_call'",
    "web_search_options": "use Anthropic's web search tool via 'tools' in extra_body",
}


def _copy_cache_control(part: dict, block: dict) -> dict:
    cc = part.get("cache_control")
    if cc is not None:
        block["cache_control"] = cc
    return block


def _text_block(part: dict, where: str) -> dict | None:
    text = part.get("text")
    if not isinstance(text, str):
        raise _bad(f"Invalid value for '{where}.text': expected a string.", f"{where}.text")
    if not text:
        return None  # Anthropic refuses empty text blocks
    return _copy_cache_control(part, {"type": "text", "text": text})


def _data_url(url: str, where: str) -> tuple[str, str]:
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise _bad(
            f"Invalid value for '{where}': only base64 data URLs "
            "('data:<media type>;base64,<data>') are supported.",
            where,
        )
    return head[5:-7], data


def _image_block(part: dict, where: str) -> dict:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise _bad(f"Missing required parameter: '{where}.image_url.url'.", f"{where}.image_url")
    if url.startswith("data:"):
        media_type, data = _data_url(url, f"{where}.image_url.url")
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise _bad(
            f"Invalid value for '{where}.image_url.url': expected an http(s) URL or a data URL.",
            f"{where}.image_url.url",
        )
    return _copy_cache_control(part, {"type": "image", "source": source})


def _file_block(part: dict, where: str) -> dict:
    spec = part.get("file") if isinstance(part.get("file"), dict) else {}
    data = spec.get("file_data")
    if not isinstance(data, str) or not data.startswith("data:"):
        raise _bad(
            f"Invalid value for '{where}.file': Anthropic needs the file inline as 'file_data' "
            "(a base64 data URL); uploaded 'file_id's cannot be used.",
            f"{where}.file",
        )
    media_type, payload = _data_url(data, f"{where}.file.file_data")
    block = {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": payload},
    }
    return _copy_cache_control(part, block)


def _content_blocks(content: Any, where: str, allowed: tuple[str, ...]) -> list[dict]:
    """OpenAI message content (string or parts) -> Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(
            f"Invalid value for '{where}': expected a string or an array of content parts.",
            where,
        )
    blocks = []
    for k, part in enumerate(content):
        pw = f"{where}[{k}]"
        ptype = part.get("type") if isinstance(part, dict) else None
        if ptype not in allowed:
            raise _bad(
                f"Invalid value for '{pw}.type': {ptype!r} content parts are not supported here "
                f"for Anthropic models (supported: {', '.join(allowed)}).",
                f"{pw}.type",
            )
        if ptype == "text":
            block = _text_block(part, pw)
        elif ptype == "refusal":
            refusal = part.get("refusal")
            block = (
                {"type": "text", "text": refusal} if isinstance(refusal, str) and refusal else None
            )
        elif ptype == "image_url":
            block = _image_block(part, pw)
        else:
            block = _file_block(part, pw)
        if block is not None:
            blocks.append(block)
    return blocks


def _tool_use_blocks(calls: Any, where: str) -> list[dict]:
    if not isinstance(calls, list):
        raise _bad(f"Invalid value for '{where}': expected an array.", where)
    blocks = []
    for j, call in enumerate(calls):
        cw = f"{where}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"Missing required parameter: '{cw}.function.name'.", f"{cw}.function")
        args = fn.get("arguments") or "{}"
        try:
            parsed = json_decode(args) if isinstance(args, str) else args
        except msgspec.DecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise _bad(
                f"Invalid value for '{cw}.function.arguments': expected a JSON object "
                "(Anthropic tool inputs are objects).",
                f"{cw}.function.arguments",
            )
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise _bad(f"Missing required parameter: '{cw}.id'.", f"{cw}.id")
        blocks.append({"type": "tool_use", "id": call_id, "name": fn["name"], "input": parsed})
    return blocks


def _tool_result_block(msg: dict, where: str) -> dict:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"Missing required parameter: '{where}.tool_call_id'.", f"{where}.tool_call_id")
    content = msg.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    else:
        blocks = _content_blocks(content, f"{where}.content", ("text", "image_url"))
        if blocks:
            block["content"] = blocks
    return block


def _system_text(content: Any, where: str) -> list[dict]:
    return _content_blocks(content, where, ("text",))


def _translate_messages(messages: Any) -> tuple[list[dict], list[dict]]:
    if not isinstance(messages, list):
        raise _bad("Invalid value for 'messages': expected an array.", "messages")
    system: list[dict] = []
    out: list[dict] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"Invalid value for '{where}': expected an object.", where)
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            system.extend(_system_text(content, f"{where}.content"))
            continue
        if role == "user":
            blocks = _content_blocks(content, f"{where}.content", ("text", "image_url", "file"))
        elif role == "assistant":
            blocks = _content_blocks(content, f"{where}.content", ("text", "refusal"))
            if msg.get("tool_calls"):
                blocks.extend(_tool_use_blocks(msg["tool_calls"], f"{where}.tool_calls"))
        elif role == "tool":
            role = "user"
            blocks = [_tool_result_block(msg, where)]
        else:
            raise _bad(
                f"Invalid value for '{where}.role': {role!r} (expected system, developer, user, "
                "assistant or tool).",
                f"{where}.role",
            )
        if not blocks:
            continue  # an empty turn: Anthropic refuses empty content
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)  # Anthropic wants alternating turns
        else:
            out.append({"role": role, "content": blocks})
    for m in out:  # a lone plain text block is sent as a string, the compact form
        c = m["content"]
        if len(c) == 1 and c[0]["type"] == "text" and len(c[0]) == 2:
            m["content"] = c[0]["text"]
    return system, out


def _translate_tools(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        raise _bad("Invalid value for 'tools': expected an array.", "tools")
    out = []
    for j, tool in enumerate(tools):
        where = f"tools[{j}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _bad(
                f"Invalid value for '{where}.type': only 'function' tools can be translated "
                "for Anthropic models.",
                f"{where}.type",
            )
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"Missing required parameter: '{where}.function.name'.", f"{where}.function")
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        entry: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            entry["description"] = fn["description"]
        entry["input_schema"] = schema
        _copy_cache_control(tool, entry)
        out.append(entry)
    return out


def _translate_tool_choice(choice: Any, parallel: Any) -> dict | None:
    if choice is None:
        out: dict[str, Any] | None = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _bad(
            "Invalid value for 'tool_choice': expected 'auto', 'none', 'required' or "
            "{'type': 'function', 'function': {'name': ...}}.",
            "tool_choice",
        )
    if parallel is False:
        out = out or {"type": "auto"}
        out["disable_parallel_tool_use"] = True
    return out


def _format_instruction(fmt: Any) -> str | None:
    if fmt is None:
        return None
    ftype = fmt.get("type") if isinstance(fmt, dict) else None
    if ftype == "text":
        return None
    if ftype == "json_object":
        return _JSON_OBJECT_INSTRUCTION
    if ftype == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else {}
        schema = spec.get("schema")
        if schema is None:
            return _JSON_OBJECT_INSTRUCTION
        return (
            f"{_JSON_OBJECT_INSTRUCTION} The JSON object must conform to this JSON Schema:\n"
            + json_encode(schema).decode()
        )
    raise _bad(
        "Invalid value for 'response_format.type': expected 'text', 'json_object' or "
        "'json_schema'.",
        "response_format.type",
    )


def openai_to_anthropic_request(doc: dict, model_id: str | None, default_max_tokens: int) -> dict:
    """An OpenAI chat-completions request dict -> an Anthropic Messages request dict.

    ``model_id`` None leaves ``model`` out (Vertex AI names it in the URL).
    Raises HelixError(INVALID_REQUEST) naming the parameter it cannot translate.
    """
    for param, used in REJECTED_PARAMS.items():
        if param in doc and used(doc[param]):
            raise _unsupported(param, _REJECT_WHY[param])
    system, messages = _translate_messages(doc.get("messages"))
    out: dict[str, Any] = {}
    if model_id is not None:
        out["model"] = model_id
    max_tokens = doc.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = doc.get("max_tokens")
    out["max_tokens"] = default_max_tokens if max_tokens is None else max_tokens
    instruction = _format_instruction(doc.get("response_format"))
    if instruction is not None:
        system.append({"type": "text", "text": instruction})
    if system:
        if any(len(b) > 2 for b in system):  # cache_control: keep the blocks
            out["system"] = system
        else:
            out["system"] = "\n\n".join(b["text"] for b in system)
    out["messages"] = messages
    stop = doc.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = stop
    elif stop is not None and not isinstance(stop, list):
        raise _bad("Invalid value for 'stop': expected a string or an array of strings.", "stop")
    for key in ("temperature", "top_p"):
        if doc.get(key) is not None:
            out[key] = doc[key]
    tools = doc.get("tools")
    if tools:
        out["tools"] = _translate_tools(tools)
        choice = _translate_tool_choice(doc.get("tool_choice"), doc.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    user = doc.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if doc.get("stream"):
        out["stream"] = True
    for key, value in doc.items():  # Anthropic-native extensions (top_k, thinking, ...)
        if key not in _HANDLED and key not in DROPPED_PARAMS and key not in REJECTED_PARAMS:
            out[key] = value
    return out


# --- response: Anthropic -> OpenAI ------------------------------------------------------

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop")


def openai_usage(usage: Usage | None) -> dict:
    u = usage or Usage()
    cached = u.cache_read_input_tokens or 0
    written = u.cache_creation_input_tokens or 0
    prompt = (u.input_tokens or 0) + cached + written
    completion = u.output_tokens or 0
    details = {"cached_tokens": cached}
    if written:  # OpenAI's name; priced at the cache-write price (routing/models.py)
        details["cache_write_tokens"] = written
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }


def _arguments(value: Any) -> str:
    return json_encode(value if value is not None else {}).decode()


def anthropic_to_openai_response(doc: dict | Message, model: str, created: int) -> dict:
    """An Anthropic Message (dict or decoded Struct) -> an OpenAI ``chat.completion`` dict."""
    msg = doc if isinstance(doc, Message) else msgspec.convert(doc, Message)
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict] = []
    for block in msg.content:
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "tool_use":
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": _arguments(block.input)},
                }
            )
        elif block.type == "thinking" and block.thinking:
            thinking.append(block.thinking)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    return {
        "id": f"chatcmpl-{msg.id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(msg.stop_reason),
            }
        ],
        "usage": openai_usage(msg.usage),
        "service_tier": SERVICE_TIER,
        "system_fingerprint": system_fingerprint(msg.model or model),
    }


# --- errors -----------------------------------------------------------------------------

# Anthropic error type -> (status when none is known, OpenAI error type).
_ERROR_TYPES = {
    "invalid_request_error": (400, "invalid_request_error"),
    "authentication_error": (401, "authentication_error"),
    "billing_error": (402, "invalid_request_error"),
    "permission_error": (403, "permission_error"),
    "not_found_error": (404, "invalid_request_error"),
    "request_too_large": (413, "invalid_request_error"),
    "rate_limit_error": (429, "rate_limit_error"),
    "api_error": (500, "server_error"),
    "timeout_error": (504, "timeout_error"),
    "overloaded_error": (529, "server_error"),
}


def anthropic_error(
    detail: ErrorDetail, status: int | None = None, headers: list | None = None
) -> HelixError:
    """An Anthropic ``error`` object -> an OpenAI-shaped HelixError.

    ``status`` is the HTTP status when there is one (None for a mid-stream
    ``error`` event: the status then follows the error type).  The OpenAI
    ``code`` is Anthropic's error type, so nothing is lost in translation.
    """
    etype = detail.type or "api_error"
    default_status, otype = _ERROR_TYPES.get(etype, (502, "upstream_error"))
    status = status if status is not None else default_status
    message = detail.message or etype
    return HelixError.upstream(status, message, type=otype, code=etype, headers=headers)


def _keep_header(name: bytes) -> bool:
    return name == b"retry-after" or name.startswith((b"anthropic-ratelimit-", b"x-ratelimit-"))


# --- streaming --------------------------------------------------------------------------

_CHUNK_TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'
_DONE = b"data: [DONE]\n\n"
_ROLE_DELTA = b'{"role":"assistant","content":""}'


def _protocol_error(message: str) -> HelixError:
    return HelixError(ErrorKind.UPSTREAM_PROTOCOL, f"anthropic stream: {message}")


class AnthropicStreamRelay:
    """Anthropic's Messages event stream -> OpenAI ``chat.completion.chunk`` SSE.

    One per request.  Every chunk has the same id (``chatcmpl-<message id>``),
    created and model; the first carries ``delta.role``; each ``tool_use``
    block becomes a tool call whose first delta has its id and name and whose
    later deltas carry argument fragments, indexed in order of appearance.
    ``message_delta`` yields the finish chunk; ``message_stop`` the usage chunk
    (with ``include_usage``) and ``data: [DONE]``.  An ``error`` event raises
    HelixError from :meth:`feed` (after the chunks the same read completed
    before it have been returned: then from the next ``feed``/``close``); a
    stream ending before ``message_stop`` raises HelixError(UPSTREAM_PROTOCOL)
    from :meth:`close`.
    """

    __slots__ = (
        "_created",
        "_done",
        "_error",
        "_finish_sent",
        "_head",
        "_id",
        "_include_usage",
        "_model",
        "_parser",
        "_tools",
        "_usage",
        "usage",
    )
    passthrough = False

    def __init__(self, model: str, created: int, include_usage: bool = False) -> None:
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._parser = SSEParser()
        self._head: bytes | None = None  # b'data: {"id":...,"delta":' once message_start came
        self._id = ""
        self._tools: dict[int, int] = {}  # content block index -> OpenAI tool_call index
        self._usage = Usage()
        self._finish_sent = False
        self._done = False
        self._error: HelixError | None = None
        self.usage: dict | None = None

    # -- output ------------------------------------------------------------------------
    def _chunk(self, delta: bytes, tail: bytes = _CHUNK_TAIL) -> bytes:
        if self._head is None:
            raise _protocol_error("content before message_start")
        return self._head + delta + tail

    def _finish(self, reason: str) -> bytes:
        if self._finish_sent:
            return b""
        self._finish_sent = True
        tail = b',"logprobs":null,"finish_reason":"' + reason.encode() + b'"}]}\n\n'
        return self._chunk(b"{}", tail)

    def _usage_chunk(self) -> bytes:
        doc = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": self.usage,
        }
        return b"data: " + json_encode(doc) + b"\n\n"

    def _merge_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        u = self._usage
        for name in Usage.__struct_fields__:
            value = getattr(usage, name)
            if value is not None:
                setattr(u, name, value)
        self.usage = openai_usage(u)

    # -- input -------------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        events = self._parser.feed(data)
        if not events:
            return b""
        out = []
        for _name, payload in events:
            if self._done:
                break
            try:
                try:
                    ev = event_decoder.decode(payload)
                except msgspec.DecodeError as exc:
                    raise _protocol_error(f"unreadable event ({exc})") from None
                piece = self._event(ev)
            except HelixError as err:
                if not out:
                    raise
                # What this read completed before the error still goes out first;
                # the error is raised by the next feed() or close().
                self._error = err
                break
            if piece:
                out.append(piece)
        return b"".join(out)

    def _event(self, ev: StreamEvent) -> bytes:
        etype = ev.type
        if etype == "content_block_delta":
            return self._delta(ev)
        if etype == "content_block_start":
            return self._block_start(ev)
        if etype == "message_start":
            msg = ev.message
            if msg is None:
                raise _protocol_error("message_start without a message")
            self._id = f"chatcmpl-{msg.id}"
            self._head = (
                b'data: {"id":'
                + json_encode(self._id)
                + b',"object":"chat.completion.chunk","created":'
                + str(self._created).encode()
                + b',"model":'
                + json_encode(self._model)
                + b',"choices":[{"index":0,"delta":'
            )
            self._merge_usage(msg.usage)
            return self._chunk(_ROLE_DELTA)
        if etype == "message_delta":
            self._merge_usage(ev.usage)
            reason = finish_reason(ev.delta.stop_reason if ev.delta is not None else None)
            return self._finish(reason)
        if etype == "message_stop":
            out = [self._finish("stop")]
            self._done = True
            if self.usage is None:
                self.usage = openai_usage(self._usage)
            if self._include_usage:
                out.append(self._usage_chunk())
            out.append(_DONE)
            return b"".join(out)
        if etype == "error":
            raise anthropic_error(ev.error or ErrorDetail())
        return b""  # ping, content_block_stop, and event types added later

    def _block_start(self, ev: StreamEvent) -> bytes:
        block = ev.content_block or ContentBlock(type="")
        if block.type == "text":
            return self._chunk(json_encode({"content": block.text})) if block.text else b""
        if block.type == "tool_use":
            index = len(self._tools)
            self._tools[ev.index if ev.index is not None else -1] = index
            args = _arguments(block.input) if block.input else ""
            call = {
                "index": index,
                "id": block.id,
                "type": "function",
                "function": {"name": block.name, "arguments": args},
            }
            return self._chunk(json_encode({"tool_calls": [call]}))
        if block.type == "thinking" and block.thinking:
            return self._chunk(json_encode({"reasoning_content": block.thinking}))
        return b""

    def _delta(self, ev: StreamEvent) -> bytes:
        d = ev.delta
        if d is None:
            return b""
        if d.type == "text_delta":
            return self._chunk(json_encode({"content": d.text})) if d.text else b""
        if d.type == "input_json_delta":
            index = self._tools.get(ev.index if ev.index is not None else -1)
            if index is None or not d.partial_json:
                return b""  # a server tool's input, or the empty opening fragment
            call = {"index": index, "function": {"arguments": d.partial_json}}
            return self._chunk(json_encode({"tool_calls": [call]}))
        if d.type == "thinking_delta" and d.thinking:
            return self._chunk(json_encode({"reasoning_content": d.thinking}))
        return b""  # signature_delta, citations_delta, ...

    def close(self) -> bytes:
        self._parser.close()
        if self._error is not None:
            raise self._error
        if not self._done:
            raise _protocol_error("the stream ended before message_stop")
        return b""


# --- adapter ----------------------------------------------------------------------------


class AnthropicAdapter:
    """Adapter for Anthropic's Messages API (stateless: one instance per process)."""

    passthrough = False  # translates both ways (see base.Adapter)

    def chat_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        doc = json_decode(body)
        out = openai_to_anthropic_request(doc, dep.model_id, default_max_tokens(dep.model_id))
        path = f"{dep.base_path}/v1/messages"
        target = (f"{path}?{dep.query}" if dep.query else path).encode()
        return UpstreamRequest(b"POST", target, dep.static_headers, json_encode(out))

    def embeddings_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        raise HelixError(
            ErrorKind.INVALID_REQUEST,
            f"The model '{dep.model}' is served by Anthropic ({dep.provider}), which has no "
            "embeddings API; use an embedding model from another provider.",
            param="model",
            code="model_not_supported",
        )

    def chat_response(self, dep: Deployment, body: bytes) -> bytes:
        try:
            msg = message_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL, f"anthropic returned an unreadable message ({exc})"
            ) from None
        return json_encode(anthropic_to_openai_response(msg, dep.model, response_created()))

    def embeddings_response(self, dep: Deployment, body: bytes) -> bytes:
        return body  # never reached: embeddings_request always refuses

    def stream_relay(self, dep: Deployment, view) -> AnthropicStreamRelay:
        opts = view.stream_options
        include = bool(opts is not None and opts.include_usage)
        return AnthropicStreamRelay(dep.model, response_created(), include)

    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError:
        try:
            env = error_decoder.decode(body) if body else None
        except msgspec.DecodeError:
            env = None
        if env is None or env.error is None or not env.error.message:
            return upstream_error(dep.provider, status, headers, body)
        extra = [(k, v) for k, v in headers if _keep_header(k)]
        return anthropic_error(env.error, status, extra)


def anthropic_headers(cfg) -> list[tuple[bytes, bytes]]:
    """content-type, ``anthropic-version`` and ``x-api-key`` (plus configured extras)."""
    headers = base_headers(cfg.headers)
    if not any(k == b"anthropic-version" for k, _ in headers):
        version = cfg.anthropic_version or DEFAULT_ANTHROPIC_VERSION
        headers.append((b"anthropic-version", version.encode("latin-1")))
    if cfg.api_key:
        headers.append((b"x-api-key", cfg.api_key.encode("latin-1")))
    return headers


SPECS: dict[str, ProviderSpec] = {
    "anthropic": ProviderSpec(
        type="anthropic",
        adapter=AnthropicAdapter(),
        headers=anthropic_headers,
        default_base_url="https://api.anthropic.com",
        key_env="ANTHROPIC_API_KEY",
        default_models=(
            "claude-3-5-sonnet-latest",
            "claude-3-5-haiku-latest",
            "claude-3-7-sonnet-latest",
            "claude-sonnet-4-0",
            "claude-opus-4-0",
        ),
        notes={
            "embeddings": "Anthropic has no embeddings API: /v1/embeddings is refused (400).",
            "params": "see helix.providers.anthropic: DROPPED_PARAMS and REJECTED_PARAMS",
        },
    )
}
