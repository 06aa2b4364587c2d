"""OpenAI chat answers -> Responses answers: the Response object and its event stream.

* :func:`build_response` -- a ``chat.completion`` document as a Response
  (``output``: a ``reasoning`` item when the provider reasoned aloud, a
  ``message`` with ``output_text``, ``function_call`` items; ``status``
  ``completed`` or ``incomplete`` with ``incomplete_details.reason``);
* :class:`ResponsesSink` -- the stream sink writing the Responses event
  sequence: ``response.created``, ``response.in_progress``, per output item
  ``response.output_item.added``, its content part / text / reasoning /
  function-call-argument deltas and ``done`` events, ``response.output_item.done``,
  then ``response.completed`` or ``response.incomplete`` -- every event with
  an increasing ``sequence_number``; on failure ``error`` and ``response.failed``.

The Response echoes the request's parameters (instructions, tools, tool_choice,
text, reasoning, temperature, ...) as OpenAI's does.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import msgspec

from helix.providers.features import pack_thinking
from helix.schema.stream import ABSENT, tool_delta
from helix.schema.usage import Usage

__all__ = ["ResponsesSink", "build_response", "new_id", "response_skeleton", "usage_json"]

_encode = msgspec.json.Encoder().encode

# A streamed answer's usual event, a text delta, from a template: the bytes _event gives for
# ("response.output_text.delta", {"item_id", "output_index", "content_index": 0, "delta",
# "logprobs": []}) without three dicts and a dict encode per event
# (tests/unit/test_responses_sink.py checks it is the same).
# The head is the same for every delta of an output item: the sink makes it when the item opens.
_TEXT_HEAD = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
              b'"item_id":%b,"output_index":%d,"content_index":0,"delta":')
_TEXT_END = b',"logprobs":[],"sequence_number":%d}\n\n'

# Request parameters a Response repeats back, with their value when the request left them out.
_ECHO = {
    "instructions": None, "max_output_tokens": None, "metadata": {}, "parallel_tool_calls": True,
    "previous_response_id": None, "reasoning": None, "store": True, "temperature": None,
    "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": None,
    "truncation": "disabled", "user": None,
}


class _Ids:
    """Unique ids without a system call each: 16 random hex digits per process (drawn again
    in every forked child) and a counter."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.base = os.urandom(8).hex()
        self.count = itertools.count(int.from_bytes(os.urandom(4), "big"))


_IDS = _Ids()


def new_id(prefix: str) -> str:
    """``prefix`` + 32 hex digits, unique across processes and instances."""
    return f"{prefix}{_IDS.base}{next(_IDS.count) & 0xFFFFFFFFFFFFFFFF:016x}"


def usage_json(usage: Usage | None) -> dict | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input,
        "input_tokens_details": {"cached_tokens": usage.cache_read},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": usage.tokens,
    }


def response_skeleton(rid: str, created: float, model: str, request: dict) -> dict:
    out: dict[str, Any] = {"id": rid, "object": "response", "created_at": int(created),
                           "status": "in_progress", "error": None, "incomplete_details": None,
                           "model": model, "output": [], "usage": None}
    for key, default in _ECHO.items():
        value = request.get(key, default)
        out[key] = default if value is None and default is not None else value
    return out


def _finish(response: dict, finish: str | None) -> None:
    if finish == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}
    else:
        response["status"] = "completed"


def build_response(doc: dict, skeleton: dict, usage: Usage | None) -> dict:
    """A ``chat.completion`` document (its first choice) as a finished Response."""
    out = dict(skeleton)
    choices = doc.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    items: list[dict] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    blocks = msg.get("thinking_blocks")
    if (isinstance(reasoning, str) and reasoning) or blocks:
        item = {"id": new_id("rs_"), "type": "reasoning", "summary": [], "content": []}
        if isinstance(reasoning, str) and reasoning:
            item["content"] = [{"type": "reasoning_text", "text": reasoning}]
        if blocks:  # Claude's signed thinking, for the client to send back
            item["encrypted_content"] = pack_thinking(blocks)
        items.append(item)
    text = msg.get("content")
    parts = []
    if isinstance(text, str) and text:
        parts.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if msg.get("refusal"):
        parts.append({"type": "refusal", "refusal": msg["refusal"]})
    if parts:
        items.append({"id": new_id("msg_"), "type": "message", "status": "completed",
                      "role": "assistant", "content": parts})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        items.append({"id": new_id("fc_"), "type": "function_call", "status": "completed",
                      "call_id": call.get("id") or new_id("call_"), "name": fn.get("name", ""),
                      "arguments": fn.get("arguments") or "{}"})
    out["output"] = items
    out["usage"] = usage_json(usage)
    _finish(out, choice.get("finish_reason"))
    out["completed_at"] = int(time.time()) if out["status"] == "completed" else None
    return out


_NONE, _MESSAGE, _CALL, _REASONING = 0, 1, 2, 3


class ResponsesSink:
    """Canonical stream calls -> the Responses API event stream (one per request).

    ``final`` is the finished Response once :meth:`end` ran (the store keeps it).
    """

    __slots__ = ("_calls", "_finish", "_item", "_kind", "_response", "_seq", "_text",
                 "_text_head", "_thinking", "_usage", "final", "on_end")
    passthrough = False

    def __init__(self, skeleton: dict) -> None:
        self._response = dict(skeleton)
        self._seq = 0
        self._kind = _NONE
        self._item: dict | None = None  # the open output item
        self._text: list[str] = []  # the open item's text / arguments so far
        self._text_head = b""  # the open message's text delta event up to the delta
        self._calls: dict[int, dict] = {}  # tool call index -> its item
        self._thinking: list[dict] = []  # signed thinking blocks of the open reasoning item
        self._finish: str | None = None
        self._usage: Usage | None = None
        self.final: dict | None = None
        self.on_end = None  # called with the finished Response

    def _event(self, etype: str, doc: dict) -> bytes:
        doc = {"type": etype, **doc, "sequence_number": self._seq}
        self._seq += 1
        return b"event: " + etype.encode() + b"\ndata: " + _encode(doc) + b"\n\n"

    def _index(self) -> int:
        return len(self._response["output"]) - 1

    def start(self, id: str, model: str, created: int, backend: str | None = None) -> bytes:
        r = self._response
        return (self._event("response.created", {"response": r})
                + self._event("response.in_progress", {"response": r}))

    # -- items --------------------------------------------------------------------
    def _open(self, kind: int, item: dict, out: list[bytes]) -> None:
        self._close(out)
        self._kind = kind
        self._item = item
        self._text = []
        self._response["output"].append(item)
        if kind == _MESSAGE:
            self._text_head = _TEXT_HEAD % (_encode(item["id"]), self._index())
        out.append(self._event("response.output_item.added",
                               {"output_index": self._index(), "item": item}))

    def _close(self, out: list[bytes]) -> None:
        kind, item = self._kind, self._item
        if kind == _NONE or item is None:
            return
        where = {"item_id": item["id"], "output_index": self._index()}
        text = "".join(self._text)
        if kind == _MESSAGE:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out.append(self._event("response.output_text.done",
                                   {**where, "content_index": 0, "text": text, "logprobs": []}))
            out.append(self._event("response.content_part.done",
                                   {**where, "content_index": 0, "part": part}))
            done = {**item, "status": "completed", "content": [part]}
        elif kind == _REASONING:
            part = {"type": "reasoning_text", "text": text}
            out.append(self._event("response.reasoning_text.done",
                                   {**where, "content_index": 0, "text": text}))
            out.append(self._event("response.content_part.done",
                                   {**where, "content_index": 0, "part": part}))
            done = {**item, "content": [part] if text else []}
            if self._thinking:
                done["encrypted_content"] = pack_thinking(self._thinking)
                self._thinking = []
        else:
            out.append(self._event("response.function_call_arguments.done",
                                   {**where, "arguments": text}))
            done = {**item, "status": "completed", "arguments": text}
        self._response["output"][-1] = done
        out.append(self._event("response.output_item.done",
                               {"output_index": self._index(), "item": done}))
        self._kind = _NONE
        self._item = None

    def delta(self, choice: int = 0, *, role: bool = False, content=ABSENT,
              reasoning: str | None = None, tools: list | None = None,
              thinking: list | None = None) -> bytes:
        if choice != 0:
            return b""  # one output per response
        if (type(content) is str and content and self._kind == _MESSAGE and not reasoning
                and not thinking and not tools):  # more text for the open message
            return self._text_delta(content)
        out: list[bytes] = []
        if reasoning or thinking:
            if self._kind != _REASONING:
                item = {"id": new_id("rs_"), "type": "reasoning", "summary": [], "content": []}
                self._open(_REASONING, item, out)
                out.append(self._event("response.content_part.added", {
                    "item_id": item["id"], "output_index": self._index(), "content_index": 0,
                    "part": {"type": "reasoning_text", "text": ""}}))
            self._thinking.extend(thinking or ())
        if reasoning:
            self._text.append(reasoning)
            out.append(self._event("response.reasoning_text.delta", {
                "item_id": self._item["id"], "output_index": self._index(),
                "content_index": 0, "delta": reasoning}))
        if isinstance(content, str) and content:
            if self._kind != _MESSAGE:
                item = {"id": new_id("msg_"), "type": "message", "status": "in_progress",
                        "role": "assistant", "content": []}
                self._open(_MESSAGE, item, out)
                out.append(self._event("response.content_part.added", {
                    "item_id": item["id"], "output_index": self._index(), "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": [],
                             "logprobs": []}}))
            out.append(self._text_delta(content))
        for call in tools or ():
            self._tool(call, out)
        return b"".join(out)

    def text(self, choice: int, text: str) -> bytes:
        if choice == 0 and self._kind == _MESSAGE:  # more text for the open message
            return self._text_delta(text)
        return self.delta(choice, content=text)

    def _text_delta(self, content: str) -> bytes:
        """More text for the open message: its delta event, from the template."""
        self._text.append(content)
        seq = self._seq
        self._seq = seq + 1
        return self._text_head + _encode(content) + _TEXT_END % seq

    def _tool(self, call: dict, out: list[bytes]) -> None:
        from helix.errors import ErrorKind, HelixError

        index, call_id, name, args = tool_delta(call)
        if call_id is not None:
            item = {"id": new_id("fc_"), "type": "function_call", "status": "in_progress",
                    "arguments": "", "call_id": call_id, "name": name}
            self._open(_CALL, item, out)
            self._calls[index] = item
        elif self._kind != _CALL or self._calls.get(index) is not self._item:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL,
                "the provider streamed arguments for a tool call that is not the current one",
            )
        if args:
            self._text.append(args)
            out.append(self._event("response.function_call_arguments.delta", {
                "item_id": self._item["id"], "output_index": self._index(), "delta": args}))

    # -- the end ----------------------------------------------------------------------
    def finish(self, choice: int, reason: str) -> bytes:
        if choice != 0:
            return b""
        self._finish = reason
        out: list[bytes] = []
        self._close(out)
        return b"".join(out)

    def usage(self, usage: Usage) -> bytes:
        self._usage = usage
        return b""

    def end(self) -> bytes:
        out: list[bytes] = []
        self._close(out)
        r = self._response
        r["usage"] = usage_json(self._usage)
        _finish(r, self._finish)
        r["completed_at"] = int(time.time()) if r["status"] == "completed" else None
        self.final = r
        if self.on_end is not None:
            self.on_end(r)
        etype = "response.completed" if r["status"] == "completed" else "response.incomplete"
        out.append(self._event(etype, {"response": r}))
        return b"".join(out)

    def error(self, err) -> bytes:
        r = self._response
        r["status"] = "failed"
        r["error"] = {"code": "server_error", "message": err.message}
        r["usage"] = usage_json(self._usage)
        return (self._event("error", {"code": err.code if isinstance(err.code, str) else None,
                                      "message": err.message, "param": err.param})
                + self._event("response.failed", {"response": r}))
