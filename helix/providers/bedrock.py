"""AWS Bedrock Runtime: Converse / ConverseStream for chat, InvokeModel for embeddings.

The adapter is sans-IO like every other: OpenAI JSON in, Bedrock JSON out, and
back.  Authentication is SigV4 (service ``bedrock``), computed per request by
:class:`BedrockSigner` just before sending; the credentials come from config or
the standard ``AWS_*`` variables, read once when the signer is built.

Streaming answers are binary AWS event-stream frames; :class:`BedrockStreamRelay`
decodes them incrementally and writes OpenAI ``chat.completion.chunk`` SSE.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import msgspec

from helix.errors import ErrorKind, HelixError, Retry, Source
from helix.providers import sigv4
from helix.providers.base import Deployment, FanOut, TranslatingAdapter, UpstreamRequest
from helix.providers.catalog import ProviderSpec
from helix.providers.eventstream import EventStreamDecoder
from helix.providers.features import (
    OUTPUT_TOOL,
    Capabilities,
    anthropic_thinking,
    capabilities,
    check_tool_names,
    effort_of,
    json_instruction,
    output_format,
    strict_schema,
    thinking_blocks_of,
)
from helix.providers.openai import base_headers
from helix.schema import bedrock as schema
from helix.schema.body import set_members
from helix.schema.openai import chat_completion
from helix.schema.usage import CACHED, Usage

__all__ = [
    "SPECS",
    "BedrockAdapter",
    "BedrockAnthropicRelay",
    "BedrockClaudeAdapter",
    "BedrockSigner",
    "BedrockStreamRelay",
    "base_url_for",
    "bedrock_error",
    "to_converse",
]

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode

SERVICE = "bedrock"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}
# Bedrock error types worth another attempt, whatever their status says.
_RETRYABLE_ERRORS = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "InternalServerException",
        "ModelTimeoutException",
        "ServiceQuotaExceededException",
    }
)


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _now() -> int:
    return int(time.time())


def _bad(message: str, param: str | None = None) -> HelixError:
    return HelixError(ErrorKind.INVALID_REQUEST, message, param=param)


# --- OpenAI request -> Converse ---------------------------------------------------------


def _image_block(url: Any, where: str) -> dict:
    if not isinstance(url, str):
        raise _bad("image_url.url must be a string", where)
    if not url.startswith("data:"):
        raise _bad(
            "Bedrock cannot fetch image URLs: send the image inline as a data URL "
            "(data:image/png;base64,...)",
            where,
        )
    meta, sep, data = url[5:].partition(",")
    mime, _, enc = meta.partition(";")
    fmt = _IMAGE_FORMATS.get(mime.removeprefix("image/").lower()) if mime else None
    if not sep or enc != "base64" or fmt is None:
        raise _bad(
            "image data URLs must be data:image/{png,jpeg,gif,webp};base64,<data>", where
        )
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("image data URL is not valid base64", where) from None
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _content_blocks(content: Any, where: str, *, images: bool) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _bad("content must be a string or an array of content parts", where)
    blocks: list[dict] = []
    for j, part in enumerate(content):
        pw = f"{where}[{j}]"
        ptype = part.get("type") if isinstance(part, dict) else None
        if ptype == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad("text parts need a string 'text'", pw)
            if text:
                blocks.append({"text": text})
        elif ptype == "image_url" and images:
            img = part.get("image_url")
            blocks.append(_image_block(img.get("url") if isinstance(img, dict) else img, pw))
        else:
            raise _bad(f"content part type {ptype!r} is not supported for Bedrock here", pw)
    return blocks


def _text_of(content: Any, where: str) -> str:
    return "".join(b["text"] for b in _content_blocks(content, where, images=False))


def _tool_use(call: Any, where: str) -> dict:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise _bad("tool_calls entries need function.name", where)
    args = fn.get("arguments") or "{}"
    try:
        parsed = _decode(args) if isinstance(args, str) else args
    except msgspec.DecodeError:
        raise _bad("tool_calls function.arguments must be JSON", where) from None
    if not isinstance(parsed, dict):
        raise _bad("tool_calls function.arguments must be a JSON object for Bedrock", where)
    call_id = str(call.get("id") or "")
    return {"toolUse": {"toolUseId": call_id, "name": fn["name"], "input": parsed}}


def _tool_result(msg: dict, where: str) -> dict:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad("tool messages need tool_call_id", f"{where}.tool_call_id")
    text = _text_of(msg.get("content"), f"{where}.content")
    try:
        parsed = _decode(text) if text.lstrip().startswith("{") else None
    except msgspec.DecodeError:
        parsed = None
    # A JSON object goes as json; anything else as text (Bedrock refuses a blank one).
    block = {"json": parsed} if isinstance(parsed, dict) else {"text": text or " "}
    return {"toolResult": {"toolUseId": call_id, "content": [block]}}


def _tool_config(doc: dict) -> dict | None:
    tools = doc.get("tools")
    choice = doc.get("tool_choice")
    if not tools or choice == "none":
        return None
    if not isinstance(tools, list):
        raise _bad("tools must be an array", "tools")
    specs = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad("tools entries need function.name", f"tools[{i}]")
        spec: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            spec["description"] = fn["description"]
        spec["inputSchema"] = {"json": fn.get("parameters") or {"type": "object", "properties": {}}}
        specs.append({"toolSpec": spec})
    cfg: dict[str, Any] = {"tools": specs}
    if choice == "required":
        cfg["toolChoice"] = {"any": {}}
    elif choice == "auto":
        cfg["toolChoice"] = {"auto": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise _bad("tool_choice needs function.name", "tool_choice")
        cfg["toolChoice"] = {"tool": {"name": name}}
    elif choice is not None:
        raise _bad(f"tool_choice {choice!r} is not supported", "tool_choice")
    return cfg


def _reasoning_blocks(msg: dict, where: str) -> list[dict]:
    """The signed thinking an assistant turn carries back, as Converse reasoning blocks."""
    out = []
    for b in thinking_blocks_of(msg, where):
        if b["type"] == "thinking":
            out.append({"reasoningContent": {"reasoningText": {
                "text": b["thinking"], "signature": b["signature"]}}})
        else:
            out.append({"reasoningContent": {"redactedContent": b["data"]}})
    return out


def _needs_reasoning_block(messages: list[dict]) -> bool:
    """Whether the last assistant turn used tools without its reasoning block in front."""
    for m in reversed(messages):
        if m["role"] == "assistant":
            content = m["content"]
            return any("toolUse" in b for b in content) and "reasoningContent" not in content[0]
    return False


def _structured_output(doc: dict, caps: Capabilities, claude: bool, body: dict,
                       system: list[dict], thinking: bool) -> None:
    """``response_format`` as ``outputConfig.textFormat``, the output tool or a system
    instruction."""
    fmt = output_format(doc)
    if fmt is None:
        return
    mode = caps.structured_output
    if mode == "native" and fmt.schema is not None:
        schema = strict_schema(fmt.schema) if claude else fmt.schema
        spec: dict[str, Any] = {"schema": _encode(schema).decode(), "name": fmt.name}
        if fmt.description:
            spec["description"] = fmt.description
        body["outputConfig"] = {"textFormat": {"type": "json_schema",
                                               "structure": {"jsonSchema": spec}}}
        return
    if mode == "prompt":
        system.append({"text": json_instruction(fmt)})
        return
    name, description, schema = fmt.tool()
    cfg = body.setdefault("toolConfig", {"tools": []})
    cfg["tools"].append({"toolSpec": {"name": name, "description": description,
                                      "inputSchema": {"json": schema}}})
    choice = cfg.get("toolChoice")
    if not thinking:  # Claude refuses a forced tool while thinking: then it is asked for
        if choice is not None and "tool" in choice:
            return  # the client forces one of its own tools: its answer is that call
        if len(cfg["tools"]) > 1:
            cfg["toolChoice"] = {"any": {}}
        else:
            cfg["toolChoice"] = {"tool": {"name": name}}
            return
    system.append({"text": f"When you have the final answer, give it by calling the "
                           f"`{OUTPUT_TOOL}` tool (its input is the answer) instead of "
                           "answering in text."})


def to_converse(doc: dict, model_id: str = "") -> dict:
    """An OpenAI chat request (decoded JSON) -> a Converse request body (no modelId).

    ``model_id`` (the Bedrock model) decides how structured output and reasoning are asked
    for (:mod:`helix.providers.features`): Claude reasons through
    ``additionalModelRequestFields`` (``thinking``, and ``output_config.effort`` for
    adaptive thinking); other models do not reason here."""
    claude = "anthropic.claude" in model_id
    caps = capabilities(model_id, "anthropic" if claude else "bedrock")
    check_tool_names(doc.get("tools"))
    effort = effort_of(doc, caps)
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty array", "messages")
    if (doc.get("n") or 1) != 1:
        raise _bad("Bedrock returns one choice per request: n must be 1", "n")
    system: list[dict] = []
    out: list[dict] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad("each message must be an object", where)
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _text_of(msg.get("content"), f"{where}.content")
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            brole = "user"
            blocks = _content_blocks(msg.get("content"), f"{where}.content", images=True)
        elif role == "assistant":
            brole = "assistant"
            blocks = _content_blocks(msg.get("content"), f"{where}.content", images=False)
            for j, call in enumerate(msg.get("tool_calls") or ()):
                blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
            if blocks and claude:  # signed thinking goes back first, as Claude answered it
                blocks[:0] = _reasoning_blocks(msg, where)
        elif role == "tool":
            brole = "user"
            blocks = [_tool_result(msg, where)]
        else:
            raise _bad(f"unsupported message role {role!r}", f"{where}.role")
        if not blocks:
            continue
        if out and out[-1]["role"] == brole:
            out[-1]["content"].extend(blocks)  # Bedrock wants roles to alternate
        else:
            out.append({"role": brole, "content": blocks})
    body: dict[str, Any] = {"messages": out}
    inference: dict[str, Any] = {}
    max_tokens = doc.get("max_completion_tokens") or doc.get("max_tokens")
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if doc.get("temperature") is not None:
        inference["temperature"] = doc["temperature"]
    if doc.get("top_p") is not None:
        inference["topP"] = doc["top_p"]
    stop = doc.get("stop")
    if stop:
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    thinking = None
    if effort is not None and claude:
        if "maxTokens" not in inference:  # the thinking budget must fit under it
            from helix.providers.anthropic import default_max_tokens

            inference["maxTokens"] = default_max_tokens(model_id)
        thinking, level = anthropic_thinking(effort, caps, inference["maxTokens"], doc)
        if thinking is not None and _needs_reasoning_block(out):
            thinking = None  # the client did not send the turn's thinking back: no thinking
        fields: dict[str, Any] = {}
        if thinking is not None:
            fields["thinking"] = thinking
        if level is not None:
            fields["output_config"] = {"effort": level}
        if fields:
            body["additionalModelRequestFields"] = fields
    if inference:
        body["inferenceConfig"] = inference
    tool_config = _tool_config(doc)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    _structured_output(doc, caps, claude, body, system, thinking is not None)
    if system:
        body["system"] = system
    return body


# --- Converse -> OpenAI -----------------------------------------------------------------


def usage_of(u: schema.TokenUsage | None) -> Usage | None:
    """Bedrock counts cache reads/writes apart from inputTokens; Usage.input has all."""
    if u is None:
        return None
    read = u.cacheReadInputTokens or 0
    write = u.cacheWriteInputTokens or 0
    prompt = u.inputTokens + read + write
    total = u.totalTokens if u.totalTokens is not None else prompt + u.outputTokens
    return Usage(input=prompt, output=u.outputTokens, cache_read=read, cache_write=write,
                 total=total, reported=CACHED if u.cacheReadInputTokens is not None else 0)


def openai_usage(u: schema.TokenUsage | None) -> dict | None:
    usage = usage_of(u)
    return usage.to_openai() if usage is not None else None


def _json_args(value: Any) -> str:
    return _encode(value if value is not None else {}).decode()


def _signed(rc: schema.ReasoningContent) -> dict | None:
    """A Converse reasoning block as a client's thinking block (None without a signature)."""
    if rc.redactedContent:
        return {"type": "redacted_thinking", "data": rc.redactedContent}
    rt = rc.reasoningText
    if rt is not None and rt.signature:
        return {"type": "thinking", "thinking": rt.text, "signature": rt.signature}
    return None


def from_converse(resp: schema.ConverseResponse, model: str) -> tuple[dict, Usage | None]:
    text_parts: list[str] = []
    calls: list[dict] = []
    reasoning: list[str] = []
    signed: list[dict] = []
    output: str | None = None
    msg = resp.output.message if resp.output is not None else None
    for block in msg.content if msg is not None else ():
        if block.text is not None:
            text_parts.append(block.text)
        elif block.reasoningContent is not None:
            rc = block.reasoningContent
            if rc.reasoningText is not None and rc.reasoningText.text:
                reasoning.append(rc.reasoningText.text)
            one = _signed(rc)
            if one is not None:
                signed.append(one)
        elif block.toolUse is not None and block.toolUse.name == OUTPUT_TOOL:
            output = _json_args(block.toolUse.input)  # structured output: the answer
        elif block.toolUse is not None:
            tu = block.toolUse
            calls.append(
                {
                    "id": tu.toolUseId,
                    "type": "function",
                    "function": {"name": tu.name, "arguments": _json_args(tu.input)},
                }
            )
    if output is not None:
        text_parts = [output]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text_parts) if text_parts or not calls else None,
    }
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if signed:
        message["thinking_blocks"] = signed
    finish = STOP_REASONS.get(resp.stopReason or "end_turn", "stop")
    if output is not None and not calls and finish == "tool_calls":
        finish = "stop"
    usage = usage_of(resp.usage)
    doc = chat_completion(_new_id("chatcmpl-"), _now(), model, message, finish,
                          usage.to_openai() if usage is not None else None)
    return doc, usage


# --- errors -----------------------------------------------------------------------------


def bedrock_error(
    provider: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> HelixError:
    """``{"message": ...}`` + ``x-amzn-errortype: ThrottlingException:http://...``."""
    etype = ""
    extra = []
    for k, v in headers:
        if k == b"x-amzn-errortype":
            etype = v.decode("latin-1").split(":", 1)[0].strip()
        elif k == b"retry-after":
            extra.append((k, v))
    try:
        doc = schema.error_decoder.decode(body) if body else None
    except msgspec.DecodeError:
        doc = None
    text = (doc.message or doc.Message) if doc is not None else None
    if not text:
        text = body[:300].decode("utf-8", "replace").strip() or "(empty body)"
    retry = (
        Retry.YES
        if etype in _RETRYABLE_ERRORS or status in (408, 429) or status >= 500
        else Retry.NO
    )
    label = f"{etype}: " if etype else ""
    return HelixError.upstream(
        status,
        f"{provider} (Bedrock) returned HTTP {status}: {label}{text}",
        type="rate_limit_error" if status == 429 else "upstream_error",
        code=etype or None,
        headers=extra,
        retry=retry,
    )


def _stream_exception(headers: dict, payload: bytes) -> HelixError:
    if headers.get(":message-type") == "error":
        etype = str(headers.get(":error-code") or "error")
        text = str(headers.get(":error-message") or "")
    else:
        etype = str(headers.get(":exception-type") or "exception")
        try:
            doc = schema.error_decoder.decode(payload) if payload else None
        except msgspec.DecodeError:
            doc = None
        text = ((doc.message or doc.Message) if doc is not None else None) or ""
    retryable = etype[:1].upper() + etype[1:] in _RETRYABLE_ERRORS
    throttled = etype.lower().startswith("throttling")
    return HelixError(
        ErrorKind.RATE_LIMITED if throttled else ErrorKind.UPSTREAM_STATUS,
        f"Bedrock stream error {etype}: {text or '(no message)'}",
        code=etype,
        type="upstream_error",
        source=Source.UPSTREAM,
        retry=Retry.YES if retryable else Retry.NO,
    )


# --- streaming ----------------------------------------------------------------------------


class BedrockStreamRelay:
    """ConverseStream event-stream frames in, the calls of a stream sink out.

    Reasoning text is ``reasoning`` as it comes; a reasoning block, once its signature is
    in (``contentBlockStop``), goes out whole as ``thinking``; the structured-output tool's
    input fragments are ``content``."""

    __slots__ = (
        "_blocks",
        "_decoder",
        "_finished",
        "_n_tools",
        "_output",
        "_reasoning",
        "_role_sent",
        "_sink",
        "_start",
        "usage",
    )
    passthrough = False

    def __init__(self, model: str, sink) -> None:
        self._decoder = EventStreamDecoder()
        self._sink = sink
        self._start = sink.start(_new_id("chatcmpl-"), model, _now())
        self._role_sent = False
        self._finished = False
        self._blocks: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool_calls index
        self._n_tools = 0
        self._output: int | None = None  # contentBlockIndex of the structured-output tool
        self._reasoning: dict[int, list] = {}  # contentBlockIndex -> [text pieces, signature]
        self.usage: Usage | None = None

    def _delta(self, **delta) -> bytes:
        if not self._role_sent:
            self._role_sent = True
            return self._sink.delta(0, role=True, **delta)
        return self._sink.delta(0, **delta)

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        if self._start:
            out.append(self._start)
            self._start = b""
        sink = self._sink
        for msg in self._decoder.feed(data):
            headers = msg.headers
            mtype = headers.get(":message-type", "event")
            if mtype != "event":
                raise _stream_exception(headers, msg.payload)
            etype = headers.get(":event-type")
            dec = schema.STREAM_EVENT_DECODERS.get(etype)
            if dec is None:
                continue  # contentBlockStop and events Helix has no use for
            try:
                ev = dec.decode(msg.payload)
            except msgspec.DecodeError as exc:
                raise HelixError(
                    ErrorKind.UPSTREAM_PROTOCOL, f"Bedrock sent a malformed {etype} event: {exc}"
                ) from None
            if etype == "contentBlockDelta":
                d = ev.delta
                if d is None:
                    continue
                if d.text is not None:
                    if d.text:
                        out.append(self._delta(content=d.text))
                elif d.reasoningContent is not None:
                    self._reasoning_delta(ev.contentBlockIndex, d.reasoningContent, out)
                elif d.toolUse is not None and ev.contentBlockIndex == self._output:
                    if d.toolUse.input:
                        out.append(self._delta(content=d.toolUse.input))
                elif d.toolUse is not None:
                    idx = self._blocks.get(ev.contentBlockIndex)
                    if idx is None:
                        raise HelixError(
                            ErrorKind.UPSTREAM_PROTOCOL,
                            "Bedrock sent tool input for a block it never started",
                        )
                    fn = {"arguments": d.toolUse.input}
                    out.append(self._delta(tools=[{"index": idx, "function": fn}]))
            elif etype == "contentBlockStop":
                state = self._reasoning.pop(ev.contentBlockIndex, None)
                if state is not None and state[1]:
                    signed = {"type": "thinking", "thinking": "".join(state[0]),
                              "signature": state[1]}
                    out.append(self._delta(thinking=[signed]))
            elif etype == "contentBlockStart":
                tu = ev.start.toolUse if ev.start is not None else None
                if tu is not None and tu.name == OUTPUT_TOOL:
                    self._output = ev.contentBlockIndex
                elif tu is not None:
                    idx = self._n_tools
                    self._n_tools += 1
                    self._blocks[ev.contentBlockIndex] = idx
                    call = {
                        "index": idx,
                        "id": tu.toolUseId,
                        "type": "function",
                        "function": {"name": tu.name, "arguments": ""},
                    }
                    out.append(self._delta(content=None, tools=[call]))
            elif etype == "messageStart":
                if not self._role_sent:
                    self._role_sent = True
                    out.append(sink.delta(0, role=True, content=""))
            elif etype == "messageStop":
                self._finished = True
                finish = STOP_REASONS.get(ev.stopReason or "end_turn", "stop")
                if finish == "tool_calls" and self._output is not None and not self._n_tools:
                    finish = "stop"  # the structured-output tool answered
                out.append(sink.finish(0, finish))
            elif etype == "metadata":
                self.usage = usage_of(ev.usage)
                if self.usage is not None:
                    out.append(sink.usage(self.usage))
        return b"".join(out)

    def _reasoning_delta(self, index: int, rd: schema.ReasoningDelta, out: list[bytes]) -> None:
        state = self._reasoning.setdefault(index, [[], None])
        if rd.text:
            state[0].append(rd.text)
            out.append(self._delta(reasoning=rd.text))
        if rd.signature:
            state[1] = rd.signature
        if rd.redactedContent:
            out.append(self._delta(thinking=[{"type": "redacted_thinking",
                                              "data": rd.redactedContent}]))

    def close(self) -> bytes:
        if self._decoder.pending:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL, "Bedrock stream ended in the middle of a frame"
            )
        if not self._finished:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL, "Bedrock stream ended before messageStop"
            )
        return self._start + self._sink.end()


# --- embeddings ---------------------------------------------------------------------------


def _embedding_family(model_id: str) -> str:
    if "titan-embed" in model_id:
        return "titan"
    if "cohere.embed" in model_id:
        return "cohere"
    raise _bad(
        f"embeddings with Bedrock model {model_id!r} are not supported: use an Amazon Titan "
        f"(amazon.titan-embed-*) or Cohere (cohere.embed-*) embedding model",
        "model",
    )


def _embedding_texts(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        return raw
    raise _bad("Bedrock embeddings take 'input' as a string or an array of strings", "input")


def _embedding_list(vectors: list[list[float]], model: str, tokens: int) -> bytes:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return _encode(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _titan_batch(bodies: list[bytes]) -> bytes:
    """Titan answers, one per text, as one Titan-shaped answer with every vector in order
    (``embeddings_response`` reads both shapes) and the token counts summed."""
    vectors, tokens = [], 0
    for body in bodies:
        try:
            one = schema.titan_embed_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL, f"Bedrock sent a malformed embedding response: {exc}"
            ) from None
        if one.embedding is None:
            raise HelixError(ErrorKind.UPSTREAM_PROTOCOL,
                             "Bedrock sent an embedding response without a vector")
        vectors.append(one.embedding)
        tokens += one.inputTextTokenCount
    return _encode({"embeddings": vectors, "inputTextTokenCount": tokens})


# --- adapter ------------------------------------------------------------------------------


class BedrockAdapter(TranslatingAdapter):
    """OpenAI <-> Bedrock Converse / InvokeModel (stateless: one per process)."""

    def _target(self, dep: Deployment, action: str) -> bytes:
        # The model id is one path segment: ':' and '/' (ARNs) are percent-encoded.
        return f"{dep.base_path}/model/{quote(dep.model_id, safe='')}/{action}".encode()

    def chat_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        try:
            doc = _decode(body)
        except msgspec.DecodeError as exc:
            raise _bad(f"We could not parse the JSON body of your request ({exc}).") from None
        return self.chat_request_doc(dep, view, doc)

    def chat_request_doc(self, dep: Deployment, view, doc: dict) -> UpstreamRequest:
        action = "converse-stream" if doc.get("stream") else "converse"
        converse = _encode(to_converse(doc, dep.model_id))
        return UpstreamRequest(b"POST", self._target(dep, action), dep.static_headers, converse)

    def embeddings_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        doc = _decode(body)
        family = _embedding_family(dep.model_id)
        texts = _embedding_texts(doc.get("input"))
        if family == "titan":
            # Titan embeds one text per call: a batch is one call per text, answered as one.
            target = self._target(dep, "invoke")
            calls = []
            for text in texts:
                payload: dict[str, Any] = {"inputText": text}
                if doc.get("dimensions") is not None:
                    payload["dimensions"] = doc["dimensions"]
                calls.append(UpstreamRequest(b"POST", target, dep.static_headers,
                                             _encode(payload)))
            if len(calls) == 1:
                return calls[0]
            return FanOut(calls, _titan_batch)
        else:
            payload = {"texts": texts, "input_type": "search_document"}
        return UpstreamRequest(
            b"POST", self._target(dep, "invoke"), dep.static_headers, _encode(payload)
        )

    def chat_document(self, dep: Deployment, body: bytes) -> tuple[dict, Usage | None]:
        try:
            resp = schema.converse_response_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL, f"Bedrock sent a malformed Converse response: {exc}"
            ) from None
        return from_converse(resp, dep.model_id)

    def embeddings_response(self, dep: Deployment, body: bytes) -> bytes:
        try:
            if _embedding_family(dep.model_id) == "titan":
                titan = schema.titan_embed_decoder.decode(body)
                vectors = titan.embeddings if titan.embeddings is not None else [titan.embedding]
                if any(v is None for v in vectors):
                    raise HelixError(ErrorKind.UPSTREAM_PROTOCOL,
                                     "Bedrock sent an embedding response without a vector")
                return _embedding_list(vectors, dep.model_id, titan.inputTextTokenCount)
            emb = schema.cohere_embed_decoder.decode(body).embeddings
        except msgspec.DecodeError as exc:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL, f"Bedrock sent a malformed embedding response: {exc}"
            ) from None
        vectors = emb.get("float", []) if isinstance(emb, dict) else emb
        return _embedding_list(vectors, dep.model_id, 0)

    def stream_relay(self, dep: Deployment, view, sink) -> BedrockStreamRelay:
        return BedrockStreamRelay(dep.model_id, sink)

    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError:
        return bedrock_error(dep.provider, status, headers, body)


# --- Claude on Bedrock: Anthropic's Messages format through InvokeModel ------------------

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"


class _Chunk(msgspec.Struct):
    bytes: str = ""


_chunk_decoder = msgspec.json.Decoder(_Chunk)


class _EventType(msgspec.Struct):
    type: str = ""


_event_type_decoder = msgspec.json.Decoder(_EventType)


class BedrockAnthropicRelay:
    """``InvokeModelWithResponseStream`` for Claude -> Anthropic's own SSE, event for event.

    Each event-stream ``chunk`` carries one Anthropic event as base64 JSON; it goes to
    the client as ``event: <type>`` / ``data: <the same JSON>``, and its usage is read
    on the way (the Anthropic pass-through relay's reader).  An exception frame raises
    HelixError, which the Messages API reports as an in-band ``error`` event.
    """

    __slots__ = ("_decoder", "_reader", "usage")
    passthrough = False  # the provider's frames are re-framed: SSE headers, not Bedrock's

    def __init__(self) -> None:
        from helix.providers.anthropic import AnthropicPassthroughRelay

        self._decoder = EventStreamDecoder()
        self._reader = AnthropicPassthroughRelay()
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for msg in self._decoder.feed(data):
            headers = msg.headers
            if headers.get(":message-type", "event") != "event":
                raise _stream_exception(headers, msg.payload)
            if headers.get(":event-type") != "chunk":
                continue
            try:
                payload = base64.b64decode(_chunk_decoder.decode(msg.payload).bytes)
                etype = _event_type_decoder.decode(payload).type
            except (msgspec.DecodeError, binascii.Error, ValueError) as exc:
                raise HelixError(
                    ErrorKind.UPSTREAM_PROTOCOL, f"Bedrock sent a malformed chunk: {exc}"
                ) from None
            self._reader.see(etype, payload)
            name = etype.encode()
            out.append(b"event: " + name + b"\ndata: " + payload + b"\n\n")
        self.usage = self._reader.usage
        return b"".join(out)

    def close(self) -> bytes:
        if self._decoder.pending:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL, "Bedrock stream ended in the middle of a frame"
            )
        return b""


class _CountTokens(msgspec.Struct):
    inputTokens: int


_count_decoder = msgspec.json.Decoder(_CountTokens)


class BedrockClaudeAdapter(BedrockAdapter):
    """Claude on Bedrock: OpenAI clients through Converse (as every Bedrock model),
    Anthropic clients natively through InvokeModel with Anthropic's Messages body.

    The native body is the client's, with the envelope Bedrock requires: no
    ``model`` (the URL names it) and no ``stream`` (the action says it),
    ``anthropic_version: bedrock-2023-05-31``, and the client's
    ``anthropic-beta`` header as the body's ``anthropic_beta`` list.
    ``count_tokens`` goes to Bedrock's CountTokens with that body inside.
    """

    native = frozenset({"messages", "count_tokens"})

    def _invoke_body(self, request, count: bool = False) -> bytes:
        members: dict[str, Any] = {"anthropic_version": BEDROCK_ANTHROPIC_VERSION}
        beta = request.headers.get("anthropic-beta")
        if beta:
            members["anthropic_beta"] = [b.strip() for b in beta.split(",") if b.strip()]
        if count and b'"max_tokens"' not in request.body:
            members["max_tokens"] = 1  # InvokeModel requires it; it does not change the count
        return set_members(request.body, members, drop=("model", "stream"))

    def native_request(self, api: str, dep: Deployment, view, request) -> UpstreamRequest:
        if api == "count_tokens":
            body = self._invoke_body(request, count=True)
            doc = {"input": {"invokeModel": {"body": base64.b64encode(body).decode()}}}
            return UpstreamRequest(b"POST", self._target(dep, "count-tokens"),
                                   dep.static_headers, _encode(doc))
        action = "invoke-with-response-stream" if view.stream else "invoke"
        return UpstreamRequest(b"POST", self._target(dep, action), dep.static_headers,
                               self._invoke_body(request))

    def native_response(self, api: str, dep: Deployment, body: bytes) -> bytes:
        if api != "count_tokens":
            return body  # InvokeModel answers with Anthropic's own Message
        try:
            return _encode({"input_tokens": _count_decoder.decode(body).inputTokens})
        except msgspec.DecodeError as exc:
            raise HelixError(ErrorKind.UPSTREAM_PROTOCOL,
                             f"Bedrock sent a malformed CountTokens answer: {exc}") from None

    def native_relay(self, api: str, dep: Deployment, view) -> BedrockAnthropicRelay:
        return BedrockAnthropicRelay()

    def native_error(self, api: str, dep: Deployment, status: int, headers,
                     body: bytes) -> HelixError:
        return self.error(dep, status, headers, body)


_CONVERSE = BedrockAdapter()
_CLAUDE = BedrockClaudeAdapter()


def adapter_for(model_id: str) -> BedrockAdapter:
    """Claude models (foundation ids and inference profiles) also speak Anthropic's format."""
    return _CLAUDE if "anthropic.claude" in model_id else _CONVERSE


# --- SigV4 signer -------------------------------------------------------------------------


def _credentials(cfg, env: dict[str, str]) -> sigv4.Credentials | None:
    if cfg.aws_access_key_id or cfg.aws_secret_access_key:
        if not (cfg.aws_access_key_id and cfg.aws_secret_access_key):
            return None
        return sigv4.Credentials(
            cfg.aws_access_key_id, cfg.aws_secret_access_key, cfg.aws_session_token or None
        )
    akid = env.get("AWS_ACCESS_KEY_ID")
    secret = env.get("AWS_SECRET_ACCESS_KEY")
    if not (akid and secret):
        return None
    return sigv4.Credentials(akid, secret, env.get("AWS_SESSION_TOKEN") or None)


class BedrockSigner:
    """SigV4 for one configured provider; credentials resolved once, at construction."""

    __slots__ = ("credentials", "keys", "name", "region")

    def __init__(self, cfg, env: dict[str, str] | None = None) -> None:
        # None: no credentials anywhere; requests then fail with a clear 503 (the config
        # loader cannot see the process environment, so this is not a config error).
        self.credentials = _credentials(cfg, dict(os.environ) if env is None else env)
        self.name = cfg.name
        self.region = cfg.region
        self.keys = sigv4.SigningKeyCache()

    def sign_now(self, dep: Deployment, up: UpstreamRequest, now: datetime) -> UpstreamRequest:
        if self.credentials is None:
            raise HelixError(
                ErrorKind.UNAVAILABLE,
                f"provider {self.name!r} has no AWS credentials: set aws_access_key_id and "
                "aws_secret_access_key in its config, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in Helix's environment",
                code="provider_credentials_missing",
            )
        origin = dep.origin
        host = f"[{origin.host}]" if ":" in origin.host else origin.host
        if origin.port != _DEFAULT_PORTS.get(origin.scheme):
            host = f"{host}:{origin.port}"
        target = up.target.decode("latin-1")
        path, _, query = target.partition("?")
        headers = sigv4.sign(
            up.method, host, path, query, up.headers, up.body, self.region, SERVICE,
            self.credentials, now, key_cache=self.keys,
        )
        return UpstreamRequest(up.method, up.target, headers, up.body)

    async def sign(self, dep: Deployment, up: UpstreamRequest) -> UpstreamRequest:
        return self.sign_now(dep, up, datetime.now(UTC))


# --- spec ---------------------------------------------------------------------------------


def base_url_for(cfg) -> str | None:
    """The provider's URL: ``base_url`` if set, else the region's public endpoint."""
    if cfg.base_url:
        return cfg.base_url
    if cfg.region:
        return f"https://bedrock-runtime.{cfg.region}.amazonaws.com"
    return None


def _validate(cfg, where: str) -> None:
    from helix.config import ConfigError

    if not cfg.region:
        raise ConfigError(f"{where}.region: required for type 'bedrock' (e.g. us-east-1)")
    if not all(c.isalnum() or c == "-" for c in cfg.region):
        raise ConfigError(f"{where}.region: not an AWS region name: {cfg.region!r}")
    if bool(cfg.aws_access_key_id) != bool(cfg.aws_secret_access_key):
        missing = "aws_secret_access_key" if cfg.aws_access_key_id else "aws_access_key_id"
        raise ConfigError(f"{where}.{missing}: required when the other AWS key is set")
    if cfg.aws_session_token and not cfg.aws_access_key_id:
        raise ConfigError(
            f"{where}.aws_session_token: needs aws_access_key_id and aws_secret_access_key"
        )


def _headers(cfg) -> list[tuple[bytes, bytes]]:
    return base_headers(cfg.headers)


SPECS: dict[str, ProviderSpec] = {
    "bedrock": ProviderSpec(
        type="bedrock",
        adapter=_CONVERSE,
        adapter_for=adapter_for,
        headers=_headers,
        base_url_for=base_url_for,  # bedrock-runtime.{region}.amazonaws.com
        key_env=None,
        key_required=False,
        default_models=(
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "amazon.nova-pro-v1:0",
            "meta.llama3-1-70b-instruct-v1:0",
            "amazon.titan-embed-text-v2:0",
            "cohere.embed-english-v3",
        ),
        validate=_validate,
        signer=BedrockSigner,
    )
}
