"""Anthropic's Messages event stream: translated into a sink, or relayed as it is.

* :class:`AnthropicStreamRelay` -- for a client that does not speak Messages:
  the events drive the request's :class:`~helix.schema.stream.StreamSink`.
* :class:`AnthropicPassthroughRelay` -- for an Anthropic client in front of a
  Claude deployment: the bytes go on unchanged, as they arrive, and only the
  usage is read from ``message_start`` / ``message_delta`` on the way.
"""

from __future__ import annotations

import msgspec

from helix._fast import ScanRelay, SSEParser, event_text
from helix.errors import ErrorKind, HelixError
from helix.providers.anthropic.response import (
    _arguments,
    anthropic_error,
    finish_reason,
    usage_of,
)
from helix.providers.features import OUTPUT_TOOL
from helix.schema.anthropic import (
    ContentBlock,
    ErrorDetail,
    StreamEvent,
    Usage,
    event_decoder,
)
from helix.schema.stream import StreamSink


def _protocol_error(message: str) -> HelixError:
    return HelixError(ErrorKind.UPSTREAM_PROTOCOL, f"anthropic stream: {message}")


def merge_usage(into: Usage, usage: Usage | None) -> None:
    """Anthropic's usage objects are cumulative: later non-null fields win."""
    if usage is None:
        return
    for name in Usage.__struct_fields__:
        value = getattr(usage, name)
        if value is not None:
            setattr(into, name, value)


class AnthropicStreamRelay:
    """Anthropic's Messages event stream -> the calls of a :class:`StreamSink`.

    One per request.  ``message_start`` starts the sink's message
    (``chatcmpl-<message id>``) with the assistant role; each ``tool_use``
    block becomes a tool call whose first delta has its id and name and whose
    later deltas carry argument fragments, indexed in order of appearance; the
    structured-output tool's input fragments are content instead.  Thinking text
    is reasoning as it comes; each thinking block, once its signature is in
    (``content_block_stop``), goes out whole as ``thinking`` (the client's
    ``thinking_blocks``), a ``redacted_thinking`` block at its start.
    ``message_delta`` finishes the choice; ``message_stop`` adds the usage and
    ends the stream.  An ``error`` event raises HelixError from :meth:`feed`
    (after what the same read completed before it has been returned: then from
    the next ``feed``/``close``); a stream ending before ``message_stop`` raises
    HelixError(UPSTREAM_PROTOCOL) from :meth:`close`.
    """

    __slots__ = (
        "_created",
        "_done",
        "_error",
        "_finish_sent",
        "_model",
        "_output",
        "_parser",
        "_sink",
        "_started",
        "_thinking",
        "_tools",
        "_usage",
        "usage",
    )
    passthrough = False

    def __init__(self, model: str, created: int, sink: StreamSink) -> None:
        self._model = model
        self._created = created
        self._sink = sink
        self._parser = SSEParser()
        self._started = False
        self._tools: dict[int, int] = {}  # content block index -> tool_call index
        self._output: int | None = None  # content block index of the structured-output tool
        self._thinking: dict[int, list] = {}  # block index -> [text pieces, signature]
        self._usage = Usage()
        self._finish_sent = False
        self._done = False
        self._error: HelixError | None = None
        self.usage = None  # helix.schema.usage.Usage once known

    def _sink_started(self) -> StreamSink:
        if not self._started:
            raise _protocol_error("content before message_start")
        return self._sink

    def _finish(self, reason: str) -> bytes:
        if self._finish_sent:
            return b""
        sink = self._sink_started()
        self._finish_sent = True
        return sink.finish(0, reason)

    def _merge_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        merge_usage(self._usage, usage)
        self.usage = usage_of(self._usage)

    # -- input -------------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        events = self._parser.feed(data)
        if not events:
            return b""
        out = []
        for _name, payload in events:
            if self._done:
                break
            if self._started and event_text is not None:
                text = event_text(payload)  # most events: more text, read without a decode
                if text is not None:
                    out.append(self._sink.text(0, text))
                    continue
            try:
                try:
                    ev = event_decoder.decode(payload)
                except msgspec.DecodeError as exc:
                    raise _protocol_error(f"unreadable event ({exc})") from None
                piece = self._event(ev)
            except HelixError as err:
                if not out:
                    raise
                # What this read completed before the error still goes out first;
                # the error is raised by the next feed() or close().
                self._error = err
                break
            if piece:
                out.append(piece)
        return b"".join(out)

    def _event(self, ev: StreamEvent) -> bytes:
        etype = ev.type
        if etype == "content_block_delta":
            return self._delta(ev)
        if etype == "content_block_start":
            return self._block_start(ev)
        if etype == "message_start":
            msg = ev.message
            if msg is None:
                raise _protocol_error("message_start without a message")
            sink = self._sink
            self._started = True
            self._merge_usage(msg.usage)
            return sink.start(f"chatcmpl-{msg.id}", self._model, self._created,
                              backend=msg.model or self._model) + sink.delta(
                0, role=True, content=""
            )
        if etype == "content_block_stop":
            return self._block_stop(ev)
        if etype == "message_delta":
            self._merge_usage(ev.usage)
            reason = finish_reason(ev.delta.stop_reason if ev.delta is not None else None)
            if reason == "tool_calls" and self._output is not None and not self._tools:
                reason = "stop"  # the structured-output tool answered
            return self._finish(reason)
        if etype == "message_stop":
            out = [self._finish("stop")]
            self._done = True
            if self.usage is None:
                self.usage = usage_of(self._usage)
            sink = self._sink_started()
            out.append(sink.usage(self.usage))
            out.append(sink.end())
            return b"".join(out)
        if etype == "error":
            raise anthropic_error(ev.error or ErrorDetail())
        return b""  # ping and event types added later

    def _block_start(self, ev: StreamEvent) -> bytes:
        block = ev.content_block or ContentBlock(type="")
        if block.type == "text":
            return self._sink_started().delta(0, content=block.text) if block.text else b""
        if block.type == "tool_use" and block.name == OUTPUT_TOOL:
            self._output = ev.index if ev.index is not None else -1
            args = _arguments(block.input) if block.input else ""
            return self._sink_started().delta(0, content=args) if args else b""
        if block.type == "tool_use":
            index = len(self._tools)
            self._tools[ev.index if ev.index is not None else -1] = index
            args = _arguments(block.input) if block.input else ""
            call = {
                "index": index,
                "id": block.id,
                "type": "function",
                "function": {"name": block.name, "arguments": args},
            }
            return self._sink_started().delta(0, tools=[call])
        if block.type == "thinking":
            self._thinking[ev.index if ev.index is not None else -1] = [
                [block.thinking] if block.thinking else [], block.signature]
            if block.thinking:
                return self._sink_started().delta(0, reasoning=block.thinking)
            return b""
        if block.type == "redacted_thinking" and block.data:
            signed = {"type": "redacted_thinking", "data": block.data}
            return self._sink_started().delta(0, thinking=[signed])
        return b""

    def _block_stop(self, ev: StreamEvent) -> bytes:
        state = self._thinking.pop(ev.index if ev.index is not None else -1, None)
        if state is None or not state[1]:
            return b""
        signed = {"type": "thinking", "thinking": "".join(state[0]), "signature": state[1]}
        return self._sink_started().delta(0, thinking=[signed])

    def _delta(self, ev: StreamEvent) -> bytes:
        d = ev.delta
        if d is None:
            return b""
        if d.type == "text_delta":
            return self._sink_started().text(0, d.text) if d.text else b""
        if d.type == "input_json_delta":
            where = ev.index if ev.index is not None else -1
            if where == self._output:
                return self._sink_started().text(0, d.partial_json) if d.partial_json else b""
            index = self._tools.get(where)
            if index is None or not d.partial_json:
                return b""  # a server tool's input, or the empty opening fragment
            call = {"index": index, "function": {"arguments": d.partial_json}}
            return self._sink_started().delta(0, tools=[call])
        if d.type == "thinking_delta" and d.thinking:
            state = self._thinking.get(ev.index if ev.index is not None else -1)
            if state is not None:
                state[0].append(d.thinking)
            return self._sink_started().delta(0, reasoning=d.thinking)
        if d.type == "signature_delta" and d.signature:
            state = self._thinking.get(ev.index if ev.index is not None else -1)
            if state is not None:
                state[1] = d.signature
        return b""  # citations_delta, ...

    def close(self) -> bytes:
        self._parser.close()
        if self._error is not None:
            raise self._error
        if not self._done:
            raise _protocol_error("the stream ended before message_stop")
        return b""


class _UsageEvent(msgspec.Struct):
    """The only members of a ``message_start`` / ``message_delta`` Helix reads."""

    type: str = ""
    message: _UsageHolder | None = None
    usage: Usage | None = None
    error: ErrorDetail | None = None


class _UsageHolder(msgspec.Struct):
    usage: Usage | None = None


_usage_event_decoder = msgspec.json.Decoder(_UsageEvent)
_USAGE = b'"usage"'
_ERROR = b'"error"'


class AnthropicPassthroughRelay(ScanRelay):
    """Anthropic SSE bytes out exactly as they came in; the usage read on the way.

    Only events that mention ``"usage"`` (``message_start``, ``message_delta``)
    or ``"error"`` are decoded, and then only their usage / error members.  An
    ``error`` event is relayed like any other (the Anthropic SDKs raise it);
    it is also kept as ``error`` so the request is recorded as failed.
    """

    __slots__ = ("_usage", "done", "error", "usage")
    passthrough = True

    def __init__(self) -> None:
        # see() acts only on events that hold one of these or are named message_stop.
        super().__init__((_USAGE, b'{"type":"message_stop"', _ERROR), ("message_stop",))
        self._usage = Usage()
        self.usage = None
        self.error: HelixError | None = None
        self.done = False

    def see(self, name: str | None, payload: bytes) -> None:
        if payload.find(_USAGE) >= 0:  # find, not `in`: see helix/providers/openai.py
            try:
                ev = _usage_event_decoder.decode(payload)
            except msgspec.DecodeError:
                return
            merge_usage(self._usage, ev.message.usage if ev.message is not None else ev.usage)
            self.usage = usage_of(self._usage)
        elif name == "message_stop" or payload.startswith(b'{"type":"message_stop"'):
            self.done = True
        elif payload.find(_ERROR) >= 0:
            try:
                ev = _usage_event_decoder.decode(payload)
            except msgspec.DecodeError:
                return
            if ev.type == "error":
                self.error = anthropic_error(ev.error or ErrorDetail())
