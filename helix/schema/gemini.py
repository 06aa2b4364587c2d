"""Google's Gemini wire format (Gemini API and Vertex AI), reduced to what Helix reads.

Only *responses* are typed: they are decoded on the hot path (every streamed
event), so a msgspec Struct that skips unknown fields beats a dict.  Requests
are built as plain dicts by ``helix.providers.gemini``.  Unknown fields are
ignored, so new Google fields never break decoding.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Candidate",
    "Content",
    "EmbedResponse",
    "ErrorEnvelope",
    "FunctionCall",
    "GenerateContentResponse",
    "GoogleError",
    "Part",
    "PromptFeedback",
    "UsageMetadata",
    "VertexPredictResponse",
    "embed_decoder",
    "error_decoder",
    "error_list_decoder",
    "response_decoder",
    "vertex_predict_decoder",
]


class FunctionCall(msgspec.Struct):
    name: str = ""
    args: dict | None = None
    id: str | None = None


class Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    function_call: FunctionCall | None = None
    thought_signature: str | None = None


class Content(msgspec.Struct):
    role: str | None = None
    parts: list[Part] = []


class Candidate(msgspec.Struct, rename="camel"):
    content: Content | None = None
    finish_reason: str | None = None
    index: int = 0


class UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    total_token_count: int | None = None
    cached_content_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0


class PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None
    block_reason_message: str | None = None


class GoogleError(msgspec.Struct):
    code: int | None = None
    message: str | None = None
    status: str | None = None


class GenerateContentResponse(msgspec.Struct, rename="camel"):
    candidates: list[Candidate] = []
    usage_metadata: UsageMetadata | None = None
    prompt_feedback: PromptFeedback | None = None
    response_id: str | None = None
    model_version: str | None = None
    error: GoogleError | None = None  # an error event inside a stream


class ContentEmbedding(msgspec.Struct):
    values: list[float] = []


class EmbedResponse(msgspec.Struct):
    """``embedContent`` (``embedding``) and ``batchEmbedContents`` (``embeddings``)."""

    embedding: ContentEmbedding | None = None
    embeddings: list[ContentEmbedding] | None = None


class VertexEmbeddingStatistics(msgspec.Struct):
    token_count: float = 0
    truncated: bool = False


class VertexEmbedding(msgspec.Struct):
    values: list[float] = []
    statistics: VertexEmbeddingStatistics | None = None


class VertexPrediction(msgspec.Struct):
    embeddings: VertexEmbedding | None = None


class VertexPredictResponse(msgspec.Struct):
    """Vertex ``:predict`` for text-embedding models."""

    predictions: list[VertexPrediction] = []


class ErrorEnvelope(msgspec.Struct):
    error: GoogleError | None = None


response_decoder = msgspec.json.Decoder(GenerateContentResponse)
embed_decoder = msgspec.json.Decoder(EmbedResponse)
vertex_predict_decoder = msgspec.json.Decoder(VertexPredictResponse)
error_decoder = msgspec.json.Decoder(ErrorEnvelope)
error_list_decoder = msgspec.json.Decoder(list[ErrorEnvelope])
