"""Anthropic Message -> OpenAI ``chat.completion``, usage, and Anthropic errors.

Text blocks are joined into ``message.content``; ``tool_use`` blocks become
``tool_calls``, except the structured-output tool's (:data:`OUTPUT_TOOL`), whose input is
the ``content`` (``finish_reason: "stop"``); ``thinking`` blocks are exposed as
``message.reasoning_content`` and, signed, as ``message.thinking_blocks`` (with
``redacted_thinking`` ones) for the client to send back; other block types are skipped.
``id`` is ``chatcmpl-<Anthropic message id>``; ``model`` is the deployment's public model
name.  Usage: ``prompt_tokens`` = input + cache read + cache creation tokens,
``prompt_tokens_details.cached_tokens`` = cache read tokens (``cache_write_tokens`` the
cache creation tokens), ``completion_tokens_details.reasoning_tokens`` = the thinking
tokens when Anthropic reports them.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from helix.errors import HelixError
from helix.providers.features import OUTPUT_TOOL
from helix.schema.anthropic import (
    ERROR_TYPES,
    FINISH_REASONS,
    ErrorDetail,
    Message,
    json_encode,
    usage_of,
)
from helix.schema.anthropic import Usage as AnthropicUsage
from helix.schema.openai import SERVICE_TIER, system_fingerprint
from helix.schema.usage import Usage


def response_created() -> int:
    """``created`` of a translated response: the only clock read of the translation."""
    return int(time.time())


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop")


def openai_usage(usage: AnthropicUsage | None) -> dict:
    return usage_of(usage).to_openai()


def _arguments(value: Any) -> str:
    return json_encode(value if value is not None else {}).decode()


def anthropic_to_openai_response(
    doc: dict | Message, model: str, created: int
) -> tuple[dict, Usage]:
    """An Anthropic Message (dict or decoded Struct) -> (``chat.completion`` dict, usage)."""
    msg = doc if isinstance(doc, Message) else msgspec.convert(doc, Message)
    texts: list[str] = []
    thinking: list[str] = []
    signed: list[dict] = []
    calls: list[dict] = []
    output: str | None = None
    for block in msg.content:
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "tool_use" and block.name == OUTPUT_TOOL:
            output = _arguments(block.input)
        elif block.type == "tool_use":
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": _arguments(block.input)},
                }
            )
        elif block.type == "thinking":
            if block.thinking:
                thinking.append(block.thinking)
            if block.signature:
                signed.append({"type": "thinking", "thinking": block.thinking or "",
                               "signature": block.signature})
        elif block.type == "redacted_thinking" and block.data:
            signed.append({"type": "redacted_thinking", "data": block.data})
    if output is not None:  # the structured-output tool's input is the answer
        texts = [output]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if signed:
        message["thinking_blocks"] = signed
    reason = finish_reason(msg.stop_reason)
    if output is not None and not calls and reason == "tool_calls":
        reason = "stop"
    usage = usage_of(msg.usage)
    out = {
        "id": f"chatcmpl-{msg.id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reason,
            }
        ],
        "usage": usage.to_openai(),
        "service_tier": SERVICE_TIER,
        "system_fingerprint": system_fingerprint(msg.model or model),
    }
    return out, usage


# --- errors -----------------------------------------------------------------------------


def anthropic_error(
    detail: ErrorDetail, status: int | None = None, headers: list | None = None
) -> HelixError:
    """An Anthropic ``error`` object -> a HelixError.

    ``status`` is the HTTP status when there is one (None for a mid-stream
    ``error`` event: the status then follows the error type).  The OpenAI
    ``code`` is Anthropic's error type, so nothing is lost in translation.
    """
    etype = detail.type or "api_error"
    default_status, otype = ERROR_TYPES.get(etype, (502, "upstream_error"))
    status = status if status is not None else default_status
    message = detail.message or etype
    return HelixError.upstream(status, message, type=otype, code=etype, headers=headers)


def keep_header(name: bytes) -> bool:
    return name == b"retry-after" or name.startswith((b"anthropic-ratelimit-", b"x-ratelimit-"))
