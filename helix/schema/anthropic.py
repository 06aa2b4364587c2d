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

# At module level: a function-level ``from module import name`` looks the module's
# ``__path__`` up on every call, formatting two AttributeErrors for a plain module (about
# 4,000 instructions; usage_of runs twice a stream).
from helix.schema.usage import CACHED, REASONING
from helix.schema.usage import Usage as HelixUsage

__all__ = [
    "ERROR_TYPES",
    "FINISH_REASONS",
    "STOP_REASONS",
    "ContentBlock",
    "Delta",
    "ErrorDetail",
    "ErrorEnvelope",
    "Message",
    "StreamEvent",
    "Usage",
    "count_tokens_decoder",
    "error_decoder",
    "error_type_for",
    "event_decoder",
    "json_decode",
    "json_encode",
    "message_decoder",
    "messages_request_decoder",
    "usage_of",
    "usage_only_decoder",
]


class OutputTokensDetails(msgspec.Struct):
    thinking_tokens: int | None = None  # the part of output_tokens spent thinking


class Usage(msgspec.Struct):
    """``usage`` of a message, or the (cumulative) ``usage`` of a ``message_delta``."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: OutputTokensDetails | None = None


class ContentBlock(msgspec.Struct):
    """One content block: ``text``, ``tool_use``, ``thinking``, ... (flat, by ``type``)."""

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    thinking: str | None = None
    signature: str | None = None  # a thinking block's
    data: str | None = None  # a redacted_thinking block's


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
    signature: str | None = None
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


class MessagesRequestView(msgspec.Struct):
    """What Helix needs from an Anthropic client's ``POST /v1/messages``; the body itself
    is what a Claude deployment gets (model resolved)."""

    model: str
    messages: list[msgspec.Raw]
    max_tokens: int
    system: msgspec.Raw = msgspec.Raw(b"")
    tools: list[msgspec.Raw] | None = None
    stream: bool | None = None

    def tokens(self) -> tuple[int, int | None]:
        """(prompt, most completion) tokens: ~4 bytes a prompt token, ``max_tokens``."""
        size = sum(len(m) for m in self.messages) + len(self.system)
        if self.tools:
            size += sum(len(t) for t in self.tools)
        return size // 4, self.max_tokens


class CountTokensView(msgspec.Struct):
    """``POST /v1/messages/count_tokens``: a Messages request without ``max_tokens``."""

    model: str
    messages: list[msgspec.Raw]
    system: msgspec.Raw = msgspec.Raw(b"")
    tools: list[msgspec.Raw] | None = None
    stream = None  # never streamed

    def tokens(self) -> tuple[int, int | None]:
        return 0, 0  # counting is free: nothing to reserve


class UsageOnly(msgspec.Struct):
    """Any Message, reduced to its ``usage``."""

    usage: Usage | None = None


message_decoder = msgspec.json.Decoder(Message)
messages_request_decoder = msgspec.json.Decoder(MessagesRequestView)
count_tokens_decoder = msgspec.json.Decoder(CountTokensView)
usage_only_decoder = msgspec.json.Decoder(UsageOnly)
event_decoder = msgspec.json.Decoder(StreamEvent)
error_decoder = msgspec.json.Decoder(ErrorEnvelope)
json_decode = msgspec.json.decode
json_encode = msgspec.json.Encoder().encode


# --- format tables, shared by both directions (OpenAI client -> Anthropic, and back) ------

# Anthropic stop_reason -> OpenAI finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# OpenAI finish_reason -> Anthropic stop_reason (the inverse, for Anthropic clients).
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic error type -> (status when none is known, OpenAI error type).
ERROR_TYPES = {
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
_BY_STATUS = {status: etype for etype, (status, _) in ERROR_TYPES.items()}


def error_type_for(status: int, code: object = None) -> str:
    """The Anthropic error type of an answer with ``status`` (the inverse of ERROR_TYPES):
    an Anthropic type already carried as the error's ``code`` wins; a 503 is an
    ``overloaded_error``, any other 5xx an ``api_error``; an unknown 4xx is an
    ``invalid_request_error``."""
    if isinstance(code, str) and code in ERROR_TYPES:
        return code
    etype = _BY_STATUS.get(status)
    if etype is not None:
        return etype
    if status == 503:
        return "overloaded_error"
    return "api_error" if status >= 500 else "invalid_request_error"


def usage_of(usage: Usage | None):
    """Anthropic's usage (input tokens apart from cache reads and writes) as a Helix Usage."""
    u = usage or Usage()
    read = u.cache_read_input_tokens or 0
    write = u.cache_creation_input_tokens or 0
    details = u.output_tokens_details
    thinking = details.thinking_tokens if details is not None else None
    return HelixUsage(input=(u.input_tokens or 0) + read + write, output=u.output_tokens or 0,
                      cache_read=read, cache_write=write, reasoning=thinking or 0,
                      reported=CACHED | (REASONING if thinking is not None else 0))
