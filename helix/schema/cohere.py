"""Cohere v2 wire shapes Helix reads (``/v2/chat``, its SSE events, ``/v2/embed``).

Only the fields Helix translates are declared; unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any

import msgspec


class ToolCallFunction(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class ToolCall(msgspec.Struct):
    id: str | None = None
    type: str = "function"
    function: ToolCallFunction | None = None


class ContentItem(msgspec.Struct):
    type: str = "text"
    text: str | None = None


class AssistantMessage(msgspec.Struct):
    role: str = "assistant"
    content: list[ContentItem] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_plan: str | None = None


class Tokens(msgspec.Struct):
    input_tokens: float | None = None
    output_tokens: float | None = None


class Usage(msgspec.Struct):
    billed_units: Tokens | None = None
    tokens: Tokens | None = None


class ChatResponse(msgspec.Struct):
    id: str | None = None
    finish_reason: str | None = None
    message: AssistantMessage | None = None
    usage: Usage | None = None


# --- streaming: one struct covers every event's `delta.message` shape ------------------


class DeltaContent(msgspec.Struct):
    type: str | None = None
    text: str | None = None


class DeltaMessage(msgspec.Struct):
    role: str | None = None
    content: DeltaContent | list[Any] | None = None
    tool_plan: str | None = None
    tool_calls: ToolCall | list[Any] | None = None


class Delta(msgspec.Struct):
    message: DeltaMessage | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    error: str | None = None


class StreamEvent(msgspec.Struct):
    type: str = ""
    id: str | None = None
    index: int | None = None
    delta: Delta | None = None


class EmbedResponse(msgspec.Struct):
    id: str | None = None
    # embedding_types given: {"float": [[...]]}; legacy: [[...]]
    embeddings: dict[str, list[list[float]]] | list[list[float]] = {}
    meta: Any = None


class ErrorBody(msgspec.Struct):
    message: str | None = None


chat_response_decoder = msgspec.json.Decoder(ChatResponse)
stream_event_decoder = msgspec.json.Decoder(StreamEvent)
embed_response_decoder = msgspec.json.Decoder(EmbedResponse)
