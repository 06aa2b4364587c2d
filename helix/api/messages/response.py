"""OpenAI chat answers -> Anthropic's: the Message, the event stream, and errors.

* :func:`to_message` -- a ``chat.completion`` document as a Message;
* :class:`AnthropicSink` -- the stream sink that writes Anthropic's event
  sequence (``message_start``, ``ping``, ``content_block_start`` /
  ``content_block_delta`` (``text_delta``, ``thinking_delta``,
  ``input_json_delta``) / ``content_block_stop`` per block, ``message_delta``
  with the stop reason and usage, ``message_stop``; ``error`` in-band);
* :func:`error_json` -- any HelixError in Anthropic's error shape.

Blocks are numbered in the order they open; a text, thinking or tool block is
closed when a block of another kind (or another tool) opens, so text and
several tool calls may interleave and every index is right.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from helix.errors import ErrorKind, HelixError
from helix.schema.anthropic import STOP_REASONS, error_type_for
from helix.schema.stream import ABSENT, tool_delta
from helix.schema.usage import Usage

__all__ = ["AnthropicSink", "error_json", "event", "to_message"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


def message_id(source: str | None) -> str:
    """``msg_`` + the provider's id (Anthropic's prefix, so clients that check it are served)."""
    if source:
        return "msg_" + source.removeprefix("chatcmpl-")
    return "msg_" + os.urandom(12).hex()


def stop_reason(finish: str | None) -> str:
    return STOP_REASONS.get(finish or "stop", "end_turn")


def usage_json(usage: Usage | None) -> dict:
    return (usage or Usage()).to_anthropic()


def error_json(err: HelixError) -> bytes:
    return _encode({"type": "error", "error": {"type": error_type_for(err.status, err.code),
                                              "message": err.message}})


def event(name: bytes, doc: dict) -> bytes:
    return b"event: " + name + b"\ndata: " + _encode(doc) + b"\n\n"


# A streamed answer's usual event, a text delta, from a template: the bytes of
# event(b"content_block_delta", {"type": ..., "index": i, "delta": {"type": "text_delta",
# "text": text}}) (msgspec writes keys in order, without spaces) without two dicts, a dict
# encode and four frames per event (tests/unit/test_messages_sink.py checks it is the same).
# The head is the same for every delta of a block: the sink makes it once per text block.
_TEXT_HEAD = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
              b'"delta":{"type":"text_delta","text":')
_TEXT_END = b"}}\n\n"


def text_head(index: int) -> bytes:
    return _TEXT_HEAD % index


def text_delta_event(index: int, text: str) -> bytes:
    """The whole event from the template (the sink keeps the head per block instead)."""
    return _TEXT_HEAD % index + _encode(text) + _TEXT_END


def _tool_input(arguments: Any) -> dict:
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = _decode(arguments)
    except msgspec.DecodeError:
        raise HelixError(
            ErrorKind.UPSTREAM_PROTOCOL,
            "the provider returned tool call arguments that are not JSON",
        ) from None
    return value if isinstance(value, dict) else {"value": value}


def to_message(doc: dict, model: str, usage: Usage | None) -> dict:
    """A ``chat.completion`` document (its first choice) as an Anthropic Message."""
    choices = doc.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    content: list[dict] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = msg.get("content")
    if isinstance(text, list):  # some compatible servers answer with parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if not text and msg.get("refusal"):
        text = msg["refusal"]
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or message_id(None),
                        "name": fn.get("name", ""), "input": _tool_input(fn.get("arguments"))})
    return {
        "id": message_id(doc.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": usage_json(usage),
    }


_TEXT, _THINKING, _TOOL = 1, 2, 3


class AnthropicSink:
    """Canonical stream calls -> Anthropic's Messages event stream (one per request)."""

    __slots__ = ("_index", "_model", "_open", "_open_tool", "_stop", "_text_head", "_tools",
                 "_usage")
    passthrough = False

    def __init__(self, model: str) -> None:
        self._model = model
        self._index = -1  # the last block opened
        self._open = 0  # kind of the open block, 0 when none is
        self._open_tool = -1  # the tool call the open tool block is
        self._tools: dict[int, int] = {}  # tool call index -> block index
        self._stop: str | None = None
        self._usage: Usage | None = None
        self._text_head = b""  # text_head() of the open text block

    def start(self, id: str, model: str, created: int, backend: str | None = None) -> bytes:
        msg = {"id": message_id(id), "type": "message", "role": "assistant",
               "model": self._model, "content": [], "stop_reason": None,
               "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}
        return (event(b"message_start", {"type": "message_start", "message": msg})
                + event(b"ping", {"type": "ping"}))

    def _close(self, out: list[bytes]) -> None:
        if self._open:
            out.append(event(b"content_block_stop",
                             {"type": "content_block_stop", "index": self._index}))
            self._open = 0
            self._open_tool = -1

    def _begin(self, kind: int, block: dict, out: list[bytes]) -> None:
        self._close(out)
        self._index += 1
        self._open = kind
        if kind == _TEXT:
            self._text_head = text_head(self._index)
        out.append(event(b"content_block_start", {"type": "content_block_start",
                                                  "index": self._index, "content_block": block}))

    def _delta(self, delta: dict, out: list[bytes]) -> None:
        out.append(event(b"content_block_delta",
                         {"type": "content_block_delta", "index": self._index, "delta": delta}))

    def delta(self, choice: int = 0, *, role: bool = False, content=ABSENT,
              reasoning: str | None = None, tools: list | None = None,
              thinking: list | None = None) -> bytes:
        if choice != 0:
            return b""  # Anthropic has one choice
        if (type(content) is str and content and self._open == _TEXT and not reasoning
                and not thinking and not tools):  # more text for the open text block
            return self._text_head + _encode(content) + _TEXT_END
        out: list[bytes] = []
        if reasoning:
            if self._open != _THINKING:
                self._begin(_THINKING, {"type": "thinking", "thinking": "", "signature": ""}, out)
            self._delta({"type": "thinking_delta", "thinking": reasoning}, out)
        for block in thinking or ():  # a signed block, whole: its signature ends ours
            if block.get("type") == "thinking" and self._open == _THINKING:
                self._delta({"type": "signature_delta", "signature": block["signature"]}, out)
        if isinstance(content, str) and content:
            if self._open != _TEXT:
                self._begin(_TEXT, {"type": "text", "text": ""}, out)
            out.append(self._text_head + _encode(content) + _TEXT_END)
        for call in tools or ():
            self._tool(call, out)
        return b"".join(out)

    def text(self, choice: int, text: str) -> bytes:
        if choice == 0 and self._open == _TEXT:  # more text for the open text block
            return self._text_head + _encode(text) + _TEXT_END
        return self.delta(choice, content=text)

    def _tool(self, call: dict, out: list[bytes]) -> None:
        index, call_id, name, args = tool_delta(call)
        if call_id is not None:
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            self._begin(_TOOL, block, out)
            self._open_tool = index
            self._tools[index] = self._index
        elif self._open != _TOOL or self._open_tool != index:
            if index not in self._tools:
                raise HelixError(ErrorKind.UPSTREAM_PROTOCOL,
                                 "the provider streamed arguments for a tool call it never started")
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL,
                "the provider interleaved the arguments of several tool calls, which "
                "Anthropic's stream format cannot carry",
            )
        if args:
            self._delta({"type": "input_json_delta", "partial_json": args}, out)

    def finish(self, choice: int, reason: str) -> bytes:
        if choice != 0:
            return b""
        out: list[bytes] = []
        self._close(out)
        self._stop = stop_reason(reason)
        return b"".join(out)

    def usage(self, usage: Usage) -> bytes:
        self._usage = usage
        return b""

    def end(self) -> bytes:
        out: list[bytes] = []
        self._close(out)
        usage = usage_json(self._usage)
        out.append(event(b"message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop or "end_turn", "stop_sequence": None},
            "usage": usage,
        }))
        out.append(event(b"message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def error(self, err: HelixError) -> bytes:
        return b"event: error\ndata: " + error_json(err) + b"\n\n"
