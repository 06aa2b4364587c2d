"""Cohere v2: ``/v2/chat`` (with SSE streaming and tools) and ``/v2/embed``.

Cohere's v2 messages are close to OpenAI's (roles, ``tool_calls``, ``tool``
messages with ``tool_call_id``); the differences translated here are the
parameter names, ``tool_choice``, the response and usage shapes, the finish
reasons and the typed SSE events of a stream.
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec

from helix._fast import SSEParser
from helix.errors import ErrorKind, HelixError
from helix.providers.base import Deployment, TranslatingAdapter, UpstreamRequest
from helix.providers.catalog import ProviderSpec
from helix.providers.features import capabilities, effort_of, output_format
from helix.providers.openai import bearer_headers, upstream_error
from helix.schema import cohere as schema
from helix.schema.openai import chat_completion
from helix.schema.usage import Usage

__all__ = ["SPECS", "CohereAdapter", "CohereStreamRelay", "from_cohere", "to_cohere"]

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "error",
    "ERROR_TOXIC": "content_filter",
    "ERROR_LIMIT": "length",
    "USER_CANCEL": "stop",
}
# OpenAI parameter -> Cohere v2 parameter (same meaning, same value).
_RENAMED = {
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "logprobs": "logprobs",
}


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _now() -> int:
    return int(time.time())


def _bad(message: str, param: str | None = None) -> HelixError:
    return HelixError(ErrorKind.INVALID_REQUEST, message, param=param)


# --- OpenAI -> Cohere ---------------------------------------------------------------------


def _content(content: Any, where: str, *, images: bool) -> str | list[dict] | None:
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("content must be a string or an array of content parts", where)
    parts: list[dict] = []
    for j, part in enumerate(content):
        ptype = part.get("type") if isinstance(part, dict) else None
        if ptype == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif ptype == "image_url" and images:
            img = part.get("image_url")
            url = img.get("url") if isinstance(img, dict) else img
            if not isinstance(url, str):
                raise _bad("image_url.url must be a string", f"{where}[{j}]")
            item: dict[str, Any] = {"url": url}
            if isinstance(img, dict) and img.get("detail"):
                item["detail"] = img["detail"]
            parts.append({"type": "image_url", "image_url": item})
        else:
            raise _bad(f"content part type {ptype!r} is not supported for Cohere here",
                       f"{where}[{j}]")
    return parts


def _plain_text(content: Any, where: str) -> str:
    value = _content(content, where, images=False)
    if isinstance(value, list):
        return "".join(p["text"] for p in value)
    return value or ""


def _messages(messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty array", "messages")
    out: list[dict] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad("each message must be an object", where)
        role = msg.get("role")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": _plain_text(msg.get("content"),
                                                                  f"{where}.content")})
        elif role == "user":
            out.append({"role": "user",
                        "content": _content(msg.get("content"), f"{where}.content", images=True)
                        or ""})
        elif role == "assistant":
            item: dict[str, Any] = {"role": "assistant"}
            text = _plain_text(msg.get("content"), f"{where}.content")
            if text:
                item["content"] = text
            calls = msg.get("tool_calls")
            if calls:
                item["tool_calls"] = [
                    {
                        "id": c.get("id"),
                        "type": "function",
                        "function": {
                            "name": (c.get("function") or {}).get("name"),
                            "arguments": (c.get("function") or {}).get("arguments") or "{}",
                        },
                    }
                    for c in calls
                    if isinstance(c, dict)
                ]
            out.append(item)
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad("tool messages need tool_call_id", f"{where}.tool_call_id")
            out.append({"role": "tool", "tool_call_id": call_id,
                        "content": _plain_text(msg.get("content"), f"{where}.content")})
        else:
            raise _bad(f"unsupported message role {role!r}", f"{where}.role")
    return out


def _tools(doc: dict, body: dict) -> None:
    tools = doc.get("tools")
    choice = doc.get("tool_choice")
    if not tools:
        return
    if not isinstance(tools, list):
        raise _bad("tools must be an array", "tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad("tools entries need function.name", f"tools[{i}]")
        item: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            item["description"] = fn["description"]
        item["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
        out.append({"type": "function", "function": item})
    if choice == "none":
        body["tools"] = out
        body["tool_choice"] = "NONE"
        return
    if choice == "required":
        body["tool_choice"] = "REQUIRED"
    elif isinstance(choice, dict):
        # Cohere has no "this tool" choice: offer only that tool, and require a call.
        name = (choice.get("function") or {}).get("name")
        out = [t for t in out if t["function"]["name"] == name]
        if not out:
            raise _bad(f"tool_choice names {name!r}, which is not in tools", "tool_choice")
        body["tool_choice"] = "REQUIRED"
    elif choice not in (None, "auto"):
        raise _bad(f"tool_choice {choice!r} is not supported", "tool_choice")
    body["tools"] = out


def to_cohere(doc: dict, model_id: str) -> dict:
    """An OpenAI chat request (decoded JSON) -> a Cohere ``/v2/chat`` body."""
    if (doc.get("n") or 1) != 1:
        raise _bad("Cohere returns one choice per request: n must be 1", "n")
    body: dict[str, Any] = {"model": model_id, "messages": _messages(doc.get("messages"))}
    if doc.get("stream"):
        body["stream"] = True
    for src, dst in _RENAMED.items():
        if doc.get(src) is not None:
            body[dst] = doc[src]
    stop = doc.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = output_format(doc)  # Cohere's own JSON mode, with the schema when there is one
    if fmt is not None and fmt.schema is None:
        body["response_format"] = {"type": "json_object"}
    elif fmt is not None:
        body["response_format"] = {"type": "json_object", "json_schema": fmt.schema}
    effort_of(doc, capabilities(model_id, "cohere"))
    _tools(doc, body)
    return body


# --- Cohere -> OpenAI ---------------------------------------------------------------------


def usage_of(u: schema.Usage | None) -> Usage | None:
    if u is None:
        return None
    tok = u.tokens or u.billed_units
    if tok is None:
        return None
    return Usage(input=int(tok.input_tokens or 0), output=int(tok.output_tokens or 0))


def openai_usage(u: schema.Usage | None) -> dict | None:
    usage = usage_of(u)
    return usage.to_openai() if usage is not None else None


def from_cohere(resp: schema.ChatResponse, model: str) -> tuple[dict, Usage | None]:
    msg = resp.message
    text = "".join(c.text or "" for c in (msg.content or ()) if c.type == "text") if msg else ""
    calls = []
    for c in (msg.tool_calls or ()) if msg else ():
        fn = c.function or schema.ToolCallFunction()
        calls.append(
            {
                "id": c.id or _new_id("call_"),
                "type": "function",
                "function": {"name": fn.name or "", "arguments": fn.arguments or "{}"},
            }
        )
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    finish = FINISH_REASONS.get(resp.finish_reason or "COMPLETE", "stop")
    usage = usage_of(resp.usage)
    doc = chat_completion(resp.id or _new_id("chatcmpl-"), _now(), model, message, finish,
                          usage.to_openai() if usage is not None else None)
    return doc, usage


class CohereStreamRelay:
    """Cohere v2 SSE events in, the calls of a stream sink out (one per request)."""

    __slots__ = (
        "_buf",
        "_finished",
        "_model",
        "_role_sent",
        "_sink",
        "_started",
        "_tools",
        "usage",
    )
    passthrough = False

    def __init__(self, model: str, sink) -> None:
        self._buf = SSEParser()
        self._model = model
        self._sink = sink
        self._started = False
        self._role_sent = False
        self._finished = False
        self._tools: dict[int, int] = {}  # Cohere tool-call index -> OpenAI index
        self.usage: Usage | None = None

    def _delta(self, **delta) -> bytes:
        if not self._role_sent:
            self._role_sent = True
            return self._sink.delta(0, role=True, **delta)
        return self._sink.delta(0, **delta)

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for _event, payload in self._buf.feed(data):
            if payload == b"[DONE]":
                continue
            try:
                ev = schema.stream_event_decoder.decode(payload)
            except msgspec.DecodeError as exc:
                raise HelixError(
                    ErrorKind.UPSTREAM_PROTOCOL, f"Cohere sent a malformed stream event: {exc}"
                ) from None
            if not self._started:
                self._started = True
                cid = ev.id if ev.type == "message-start" else None
                out.append(self._sink.start(cid or _new_id("chatcmpl-"), self._model, _now()))
            self._event(ev, out)
        return b"".join(out)

    def _event(self, ev: schema.StreamEvent, out: list[bytes]) -> None:
        etype = ev.type
        msg = ev.delta.message if ev.delta is not None else None
        if etype == "content-delta":
            content = msg.content if msg is not None else None
            if isinstance(content, schema.DeltaContent) and content.text:
                out.append(self._delta(content=content.text))
        elif etype == "message-start":
            if not self._role_sent:
                self._role_sent = True
                out.append(self._sink.delta(0, role=True, content=""))
        elif etype == "tool-call-start":
            call = msg.tool_calls if msg is not None else None
            if not isinstance(call, schema.ToolCall):
                return
            idx = len(self._tools)
            self._tools[ev.index if ev.index is not None else idx] = idx
            fn = call.function or schema.ToolCallFunction()
            item = {
                "index": idx,
                "id": call.id or _new_id("call_"),
                "type": "function",
                "function": {"name": fn.name or "", "arguments": fn.arguments or ""},
            }
            out.append(self._delta(content=None, tools=[item]))
        elif etype == "tool-call-delta":
            call = msg.tool_calls if msg is not None else None
            if not isinstance(call, schema.ToolCall) or call.function is None:
                return
            idx = self._tools.get(ev.index if ev.index is not None else len(self._tools) - 1)
            if idx is None:
                raise HelixError(
                    ErrorKind.UPSTREAM_PROTOCOL, "Cohere sent a tool-call-delta before its start"
                )
            if call.function.arguments:
                fn = {"arguments": call.function.arguments}
                out.append(self._delta(tools=[{"index": idx, "function": fn}]))
        elif etype == "message-end":
            delta = ev.delta or schema.Delta()
            if delta.finish_reason == "ERROR" and delta.error:
                raise HelixError(
                    ErrorKind.UPSTREAM_STATUS, f"Cohere stream error: {delta.error}",
                    type="upstream_error",
                )
            self._finished = True
            finish = FINISH_REASONS.get(delta.finish_reason or "COMPLETE", "stop")
            out.append(self._sink.finish(0, finish))
            self.usage = usage_of(delta.usage)
            if self.usage is not None:
                out.append(self._sink.usage(self.usage))
        # tool-plan-delta, content-start/end, tool-call-end, citations: nothing to say in OpenAI

    def close(self) -> bytes:
        if not self._finished:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL, "Cohere stream ended before message-end"
            )
        return self._sink.end()


# --- adapter ------------------------------------------------------------------------------


def _embedding_texts(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        return raw
    raise _bad("Cohere embeddings take 'input' as a string or an array of strings", "input")


class CohereAdapter(TranslatingAdapter):
    """OpenAI <-> Cohere v2 (stateless: one per process)."""

    def _decode(self, body: bytes) -> dict:
        try:
            return _decode(body)
        except msgspec.DecodeError as exc:
            raise _bad(f"We could not parse the JSON body of your request ({exc}).") from None

    def chat_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        return self.chat_request_doc(dep, view, self._decode(body))

    def chat_request_doc(self, dep: Deployment, view, doc: dict) -> UpstreamRequest:
        payload = _encode(to_cohere(doc, dep.model_id))
        return UpstreamRequest(
            b"POST", f"{dep.base_path}/v2/chat".encode(), dep.static_headers, payload
        )

    def embeddings_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        doc = self._decode(body)
        payload: dict[str, Any] = {
            "model": dep.model_id,
            "texts": _embedding_texts(doc.get("input")),
            "input_type": "search_document",
            "embedding_types": ["float"],
        }
        if doc.get("dimensions") is not None:
            payload["output_dimension"] = doc["dimensions"]
        return UpstreamRequest(
            b"POST", f"{dep.base_path}/v2/embed".encode(), dep.static_headers, _encode(payload)
        )

    def chat_document(self, dep: Deployment, body: bytes) -> tuple[dict, Usage | None]:
        try:
            resp = schema.chat_response_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL, f"Cohere sent a malformed chat response: {exc}"
            ) from None
        return from_cohere(resp, dep.model_id)

    def embeddings_response(self, dep: Deployment, body: bytes) -> bytes:
        try:
            resp = schema.embed_response_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL, f"Cohere sent a malformed embed response: {exc}"
            ) from None
        emb = resp.embeddings
        vectors = emb.get("float", []) if isinstance(emb, dict) else emb
        tokens = 0
        if isinstance(resp.meta, dict):
            units = resp.meta.get("billed_units") or {}
            tokens = int(units.get("input_tokens") or 0)
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return _encode(
            {
                "object": "list",
                "data": data,
                "model": dep.model_id,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def stream_relay(self, dep: Deployment, view, sink) -> CohereStreamRelay:
        return CohereStreamRelay(dep.model_id, sink)

    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError:
        return upstream_error(dep.provider, status, headers, body)


SPECS: dict[str, ProviderSpec] = {
    "cohere": ProviderSpec(
        type="cohere",
        adapter=CohereAdapter(),
        headers=bearer_headers,
        default_base_url="https://api.cohere.com",
        key_env="COHERE_API_KEY",
        default_models=(
            "command-a-03-2025",
            "command-r-plus",
            "command-r",
            "embed-english-v3.0",
            "embed-multilingual-v3.0",
        ),
    )
}
