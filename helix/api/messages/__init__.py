"""Anthropic Messages (``POST /v1/messages``, ``/v1/messages/count_tokens``): Claude Code
and the Anthropic SDKs.

Native on Claude deployments (Anthropic, Claude on Vertex AI, Claude on Bedrock):
the body goes upstream as sent, model resolved (plus the envelope Vertex and
Bedrock require), with ``anthropic-beta`` / ``anthropic-version``; the Message,
the event stream and Anthropic's own errors come back as sent, and only the
usage is read.  Every other deployment is reached through the hub: the request
becomes an OpenAI chat request (:mod:`.request`), the adapter's chat translation
does the rest, and the answer comes back as a Message or as Anthropic's event
stream (:mod:`.response`).  Errors are always Anthropic's shape.
"""

from __future__ import annotations

import math

import msgspec

from helix.api.base import Api, bearer
from helix.api.messages import replay
from helix.api.messages.request import to_chat
from helix.api.messages.response import AnthropicSink, error_json, to_message
from helix.api.prefix import messages_key
from helix.errors import ErrorKind, HelixError
from helix.observe import timing
from helix.schema.anthropic import (
    count_tokens_decoder,
    messages_request_decoder,
    usage_of,
    usage_only_decoder,
)
from helix.schema.openai import ChatRequestView, StreamOptions
from helix.schema.usage import Usage

__all__ = ["COUNT_TOKENS", "MESSAGES", "CountTokensApi", "MessagesApi", "estimate_tokens"]

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
# OpenAI's own models take max_completion_tokens (reasoning models refuse max_tokens).
_COMPLETION_TOKENS = frozenset({"openai", "azure"})
_MESSAGE_STOP = b'"message_stop"'


class MessagesApi(Api):
    name = "messages"
    paths = ("/v1/messages", "/messages")
    decoder = messages_request_decoder
    credential_hint = "x-api-key: YOUR_KEY, or Authorization: Bearer YOUR_KEY"
    cache_defaults = {"temperature": 1}
    native_headers = frozenset({b"request-id"})  # the SDKs' Message._request_id

    def credential(self, headers: dict[str, str]) -> str | None:
        """``x-api-key`` (the Anthropic SDKs) or ``Authorization: Bearer`` (Claude Code's
        ``ANTHROPIC_AUTH_TOKEN``)."""
        return headers.get("x-api-key") or bearer(headers.get("authorization"))

    def prefix_key(self, ctx) -> int:
        return messages_key(ctx.view)

    # -- errors --------------------------------------------------------------------
    def error_body(self, err: HelixError) -> bytes:
        native = err.native
        if native is not None and native[0] == "anthropic":
            return native[1]  # Anthropic's own error, as Anthropic sent it
        return error_json(err)

    def error_event(self, err: HelixError) -> bytes:
        return b"event: error\ndata: " + self.error_body(err) + b"\n\n"

    # -- translated: through the OpenAI chat hub -----------------------------------------
    def sink(self, ctx, dep=None) -> AnthropicSink:
        return AnthropicSink(dep.model if dep is not None else ctx.view.model)

    def _hub(self, ctx) -> dict:
        hub = ctx.hub
        if hub is None:
            doc = _decode(ctx.exchange.request.body)
            hub = ctx.hub = to_chat(doc)
        return hub

    def _chat_view(self, ctx, dep) -> ChatRequestView:
        hub = self._hub(ctx)
        stream = bool(hub.get("stream"))
        return ChatRequestView(
            model=dep.model_id, messages=[], stream=stream,
            stream_options=StreamOptions(include_usage=True) if stream else None,
            max_tokens=hub.get("max_tokens"),
        )

    def upstream_request(self, ctx, dep):
        doc = dict(self._hub(ctx))
        doc["model"] = dep.model_id
        if dep.provider_type in _COMPLETION_TOKENS and "max_tokens" in doc:
            doc["max_completion_tokens"] = doc.pop("max_tokens")
        return dep.adapter.chat_request_doc(dep, self._chat_view(ctx, dep), doc)

    def stream_relay(self, ctx, dep, sink):
        return dep.adapter.stream_relay(dep, self._chat_view(ctx, dep), sink)

    def translate_response(self, dep, body: bytes, ctx=None) -> tuple[bytes, Usage | None]:
        doc, usage = dep.adapter.chat_document(dep, body)
        return _encode(to_message(doc, dep.model, usage)), usage

    # -- native ------------------------------------------------------------------------
    def native_usage(self, body: bytes) -> Usage | None:
        try:
            usage = usage_only_decoder.decode(body).usage
        except msgspec.DecodeError:
            return None
        return usage_of(usage) if usage is not None else None

    # -- cache -------------------------------------------------------------------------
    def cache_complete(self, stream: bytes) -> bool:
        return _MESSAGE_STOP in stream[-256:]

    def cache_replay(self, ctx, stream_stored: bool, body: bytes) -> bytes:
        if ctx.view.stream:
            return body if stream_stored else replay.json_to_sse(body)
        return replay.sse_to_json(body) if stream_stored else body


class CountTokensApi(MessagesApi):
    """``POST /v1/messages/count_tokens``: the provider's count for Claude deployments; an
    estimate, marked ``x-helix-token-count: estimate``, for every other one (no other
    provider counts Anthropic-shaped requests).  Not limited, not cached: counting is free."""

    name = "count_tokens"
    paths = ("/v1/messages/count_tokens", "/messages/count_tokens")
    decoder = count_tokens_decoder
    streams = False
    cacheable = False
    admitted = False

    def prefix_key(self, ctx) -> int:
        return 0  # counting reads no prompt cache

    def upstream_request(self, ctx, dep):
        raise HelixError(
            ErrorKind.INVALID_REQUEST,
            f"Counting tokens is not available for '{dep.model}' (served by {dep.provider}).",
            param="model",
        )

    def native_usage(self, body: bytes) -> Usage | None:
        return None  # a count is not a use

    def local_phase(self):
        """Before ``forward``: answer with an estimate when no candidate counts natively."""
        name = self.name

        def count_locally(ctx) -> bool:
            native = [d for d in ctx.candidates if name in d.adapter.native]
            if native:
                ctx.candidates = native
                if ctx.deployment not in native:
                    ctx.deployment = native[0]
                return False
            body = _encode({"input_tokens": estimate_tokens(_decode(ctx.exchange.request.body))})
            headers = [(b"content-type", b"application/json"),
                       (b"x-helix-token-count", b"estimate"), *ctx.response_headers]
            if timing.ON:
                headers.append(timing.header(ctx))
            ctx.status = 200
            ctx.exchange.respond(200, headers, body)
            return True

        return count_locally


# Images cost about (width x height) / 750 tokens on Claude; their size is not known
# here, so each counts as a ~1.1 megapixel image would.
IMAGE_TOKENS = 1600


def estimate_tokens(doc) -> int:
    """Helix's estimate of a Messages request's input tokens: one token per 4 characters of
    text (system, messages, tool definitions, tool inputs and results), 1,600 per image,
    and for base64 documents one per 4 bytes of their content; rounded up."""
    chars = 0
    images = 0

    def walk(value) -> None:
        nonlocal chars, images
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            if value.get("type") == "image":
                images += 1
                return
            src = value.get("source") if value.get("type") == "document" else None
            if isinstance(src, dict) and src.get("type") == "base64":
                chars += len(src.get("data") or "") * 3 // 4
                return
            for k, v in value.items():
                if k not in ("type", "cache_control", "id", "tool_use_id"):
                    walk(v)

    if isinstance(doc, dict):
        for key in ("system", "messages", "tools"):
            walk(doc.get(key))
    return math.ceil(chars / 4) + images * IMAGE_TOKENS


MESSAGES = MessagesApi()
COUNT_TOKENS = CountTokensApi()
