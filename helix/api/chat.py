"""OpenAI Chat Completions (``POST /v1/chat/completions``): Helix's first client dialect.

Native for the OpenAI family (the body and the stream go through as sent);
every other provider is reached through its adapter's chat translation, and
its stream through :class:`OpenAIChunkSink`, which writes
``chat.completion.chunk`` events.
"""

from __future__ import annotations

from helix.api.base import Api
from helix.api.prefix import chat_key
from helix.cache.replay import json_to_sse, sse_for_client, sse_to_json
from helix.errors import ErrorKind, HelixError
from helix.schema.openai import chat_request_decoder, chunk_prefix, decode_request, json_encode
from helix.schema.stream import ABSENT
from helix.schema.usage import Usage, checked_openai_usage, read_openai_usage

__all__ = ["CHAT", "ChatApi", "OpenAIChunkSink"]

_TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'
_DONE = b"data: [DONE]\n\n"


class OpenAIChunkSink:
    """Canonical stream calls -> OpenAI ``chat.completion.chunk`` SSE bytes.

    The chunk head (id, created, model, service tier, system fingerprint) is
    encoded once per stream; a delta of choice 0 costs one encode of the delta
    itself.  Signed thinking blocks go out as ``delta.thinking_blocks``, each
    block whole (text and signature) once, so a client that concatenates the
    lists has the message's ``thinking_blocks`` to send back.
    """

    __slots__ = ("_head", "_include_usage", "_prefix")
    passthrough = True  # an OpenAI-compatible provider's own bytes may go through as they are

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._prefix = b""
        self._head = b""

    def start(self, id: str, model: str, created: int, backend: str | None = None) -> bytes:
        self._prefix = b"data: " + chunk_prefix(id, created, model, backend)
        self._head = self._prefix + b'[{"index":0,"delta":'
        return b""

    def delta(self, choice: int = 0, *, role: bool = False, content=ABSENT,
              reasoning: str | None = None, tools: list | None = None,
              thinking: list | None = None) -> bytes:
        d: dict = {}
        if role:
            d["role"] = "assistant"
        if content is not ABSENT:
            d["content"] = content
        if reasoning is not None:
            d["reasoning_content"] = reasoning
        if thinking is not None:
            d["thinking_blocks"] = thinking
        if tools is not None:
            d["tool_calls"] = tools
        if choice == 0:
            return self._head + json_encode(d) + _TAIL
        return self._choice(choice, d, None)

    def text(self, choice: int, text: str) -> bytes:
        if choice == 0:
            return self._head + b'{"content":' + json_encode(text) + b"}" + _TAIL
        return self._choice(choice, {"content": text}, None)

    def _choice(self, choice: int, delta: dict, finish: str | None) -> bytes:
        doc = [{"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return self._prefix + json_encode(doc) + b"}\n\n"

    def finish(self, choice: int, reason: str) -> bytes:
        return self._choice(choice, {}, reason)

    def usage(self, usage: Usage) -> bytes:
        if not self._include_usage:
            return b""
        return self._prefix + b'[],"usage":' + json_encode(usage.to_openai()) + b"}\n\n"

    def end(self) -> bytes:
        return _DONE

    def error(self, err) -> bytes:
        return b"data: " + err.to_json() + b"\n\n"


def wants_usage(view) -> bool:
    opts = view.stream_options
    return bool(opts is not None and opts.include_usage)


class ChatApi(Api):
    name = "chat"
    paths = ("/v1/chat/completions", "/chat/completions")
    decoder = chat_request_decoder
    cache_defaults = {
        "temperature": 1,
        "top_p": 1,
        "n": 1,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "logprobs": False,
        "parallel_tool_calls": True,
    }

    def decode(self, body: bytes):
        view = decode_request(chat_request_decoder, body)
        if not view.messages:
            raise HelixError(
                ErrorKind.INVALID_REQUEST,
                "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                param="messages",
                code="empty_array",
            )
        return view

    def prefix_key(self, ctx) -> int:
        return chat_key(ctx.exchange.request.body, ctx.view.messages)

    def sink(self, ctx, dep=None) -> OpenAIChunkSink:
        return OpenAIChunkSink(wants_usage(ctx.view))

    # -- translated ----------------------------------------------------------------------
    def upstream_request(self, ctx, dep):
        return dep.adapter.chat_request(dep, ctx.view, ctx.exchange.request.body)

    def stream_relay(self, ctx, dep, sink):
        return dep.adapter.stream_relay(dep, ctx.view, sink)

    def translate_response(self, dep, body: bytes, ctx=None) -> tuple[bytes, Usage | None]:
        doc, usage = dep.adapter.chat_document(dep, body)
        return json_encode(doc), usage

    # -- native ----------------------------------------------------------------------------
    # The reader itself, not a method around it: one Python frame fewer per answer.
    native_usage = staticmethod(read_openai_usage)
    native_check = staticmethod(checked_openai_usage)

    # -- cache -------------------------------------------------------------------------------
    def cache_complete(self, stream: bytes) -> bool:
        return stream.rstrip().endswith(b"[DONE]")

    def cache_replay(self, ctx, stream_stored: bool, body: bytes) -> bytes:
        view = ctx.view
        if view.stream:
            if stream_stored:
                return sse_for_client(body, wants_usage(view))
            return json_to_sse(body, wants_usage(view))
        return sse_to_json(body) if stream_stored else body


CHAT = ChatApi()
