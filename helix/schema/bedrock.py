"""AWS Bedrock Runtime wire shapes Helix reads (Converse, ConverseStream, embeddings).

Only the fields Helix translates are declared; anything else in a response is
ignored, so new Bedrock fields never break decoding.  Requests are built as
plain dicts (validated in tests against botocore's bedrock-runtime model).
"""

from __future__ import annotations

from typing import Any

import msgspec


class ToolUse(msgspec.Struct):
    toolUseId: str = ""
    name: str = ""
    input: Any = None


class ReasoningText(msgspec.Struct):
    text: str = ""
    signature: str | None = None


class ReasoningContent(msgspec.Struct):
    """Claude's thinking: signed text, or redacted (base64 bytes)."""

    reasoningText: ReasoningText | None = None
    redactedContent: str | None = None


class ContentBlock(msgspec.Struct):
    text: str | None = None
    toolUse: ToolUse | None = None
    reasoningContent: ReasoningContent | None = None


class Message(msgspec.Struct):
    role: str = "assistant"
    content: list[ContentBlock] = []


class Output(msgspec.Struct):
    message: Message | None = None


class TokenUsage(msgspec.Struct):
    inputTokens: int = 0
    outputTokens: int = 0
    totalTokens: int | None = None
    cacheReadInputTokens: int | None = None
    cacheWriteInputTokens: int | None = None


class ConverseResponse(msgspec.Struct):
    output: Output | None = None
    stopReason: str | None = None
    usage: TokenUsage | None = None


# --- ConverseStream event payloads (one per `:event-type`) ---------------------------


class MessageStartEvent(msgspec.Struct):
    role: str = "assistant"


class ToolUseStart(msgspec.Struct):
    toolUseId: str = ""
    name: str = ""


class BlockStart(msgspec.Struct):
    toolUse: ToolUseStart | None = None


class ContentBlockStartEvent(msgspec.Struct):
    contentBlockIndex: int = 0
    start: BlockStart | None = None


class ToolUseDelta(msgspec.Struct):
    input: str = ""


class ReasoningDelta(msgspec.Struct):
    """One of: a piece of thinking text, the block's signature, redacted thinking."""

    text: str | None = None
    signature: str | None = None
    redactedContent: str | None = None


class BlockDelta(msgspec.Struct):
    text: str | None = None
    toolUse: ToolUseDelta | None = None
    reasoningContent: ReasoningDelta | None = None


class ContentBlockDeltaEvent(msgspec.Struct):
    contentBlockIndex: int = 0
    delta: BlockDelta | None = None


class ContentBlockStopEvent(msgspec.Struct):
    contentBlockIndex: int = 0


class MessageStopEvent(msgspec.Struct):
    stopReason: str | None = None


class MetadataEvent(msgspec.Struct):
    usage: TokenUsage | None = None


class ErrorBody(msgspec.Struct):
    """``{"message": ...}`` (some services spell it ``Message``)."""

    message: str | None = None
    Message: str | None = None


# --- InvokeModel embedding bodies -----------------------------------------------------


class TitanEmbedResponse(msgspec.Struct):
    """One Titan answer (``embedding``), or Helix's join of a batch's (``embeddings``)."""

    embedding: list[float] | None = None
    embeddings: list[list[float]] | None = None
    inputTextTokenCount: int = 0


class CohereEmbedResponse(msgspec.Struct):
    # embeddings_floats: [[...]]; embeddings_by_type: {"float": [[...]]}
    embeddings: list[list[float]] | dict[str, list[list[float]]]


converse_response_decoder = msgspec.json.Decoder(ConverseResponse)
error_decoder = msgspec.json.Decoder(ErrorBody)
titan_embed_decoder = msgspec.json.Decoder(TitanEmbedResponse)
cohere_embed_decoder = msgspec.json.Decoder(CohereEmbedResponse)
STREAM_EVENT_DECODERS = {
    "messageStart": msgspec.json.Decoder(MessageStartEvent),
    "contentBlockStart": msgspec.json.Decoder(ContentBlockStartEvent),
    "contentBlockDelta": msgspec.json.Decoder(ContentBlockDeltaEvent),
    "contentBlockStop": msgspec.json.Decoder(ContentBlockStopEvent),
    "messageStop": msgspec.json.Decoder(MessageStopEvent),
    "metadata": msgspec.json.Decoder(MetadataEvent),
}
