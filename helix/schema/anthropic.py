"""Anthropic Messages API wire-format Structs: what Helix reads from Anthropic.

Requests to Anthropic are built as plain dicts (see ``providers/anthropic.py``)
and encoded with :data:`json_encode`; responses, stream events and error
bodies are decoded into the Structs below.  Every Struct ignores fields it
does not name, and content blocks, deltas and events are *flat* Structs keyed
by ``type`` rather than tagged unions, so a block or event type Anthropic adds
tomorrow decodes fine and is simply skipped by the translator.

Decoders and the encoder are module globals (built once, reused per request).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ContentBlock",
    "Delta",
    "ErrorDetail",
    "ErrorEnvelope",
    "Message",
    "StreamEvent",
    "Usage",
    "error_decoder",
    "event_decoder",
    "json_decode",
    "json_encode",
    "message_decoder",
]


class Usage(msgspec.Struct):
    """``usage`` of a message, or the (cumulative) ``usage`` of a ``message_delta``."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class ContentBlock(msgspec.Struct):
    """One content block: ``text``, ``tool_use``, ``thinking``, ... (flat, by ``type``)."""

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    thinking: str | None = None


class Message(msgspec.Struct):
    """A non-streamed Messages API answer (``type: "message"``)."""

    id: str
    content: list[ContentBlock] = []
    type: str = "message"
    role: str = "assistant"
    model: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None


class Delta(msgspec.Struct):
    """``delta`` of ``content_block_delta`` (text/input_json/thinking/signature...)
    and of ``message_delta`` (stop_reason, stop_sequence)."""

    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class ErrorDetail(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class StreamEvent(msgspec.Struct):
    """Any streamed event's ``data:`` payload (message_start, content_block_*,
    message_delta, message_stop, ping, error)."""

    type: str
    message: Message | None = None
    index: int | None = None
    content_block: ContentBlock | None = None
    delta: Delta | None = None
    usage: Usage | None = None
    error: ErrorDetail | None = None


class ErrorEnvelope(msgspec.Struct):
    """``{"type": "error", "error": {"type": ..., "message": ...}}``."""

    type: str | None = None
    error: ErrorDetail | None = None


message_decoder = msgspec.json.Decoder(Message)
event_decoder = msgspec.json.Decoder(StreamEvent)
error_decoder = msgspec.json.Decoder(ErrorEnvelope)
json_decode = msgspec.json.decode
json_encode = msgspec.json.Encoder().encode
