"""StreamSink: what a translating stream relay emits into, whatever the client speaks.

A relay (one per streamed request, ``providers/*``) reads the provider's
stream and says what happened in it -- a message started, a delta of text,
reasoning or tool calls arrived, a choice finished, usage is known, the
stream ended -- by calling its sink.  The sink belongs to the client's API
(``helix/api``) and returns the bytes that client gets for each call:
OpenAI ``chat.completion.chunk`` events, Anthropic's ``message_start`` /
``content_block_*`` / ``message_delta`` events, or Responses events.  So a
provider is translated once, for every client dialect, and no relay writes
a client's bytes itself.

The calls, in the order a relay may make them::

    start(id, model, created, backend=...)   once, before anything else
    delta(choice, role=..., content=..., reasoning=..., tools=[...], thinking=[...])
                                       any number
    text(choice, text)                 = delta(choice, content=text), text not empty:
                                       a stream's usual event, without the keywords
    finish(choice, reason)             once per choice; reason in OpenAI's words
                                       (stop, length, tool_calls, content_filter)
    usage(usage)                       at most once, a helix.schema.usage.Usage
    end()                              once, last
    error(err)                         instead of what is left, when the stream fails

``tools`` items have the shape of OpenAI's ``delta.tool_calls`` entries: the
first one of a call carries ``id`` and ``function.name`` (and possibly the
first ``function.arguments``), later ones carry ``index`` and argument
fragments.  ``content`` distinguishes "absent" (:data:`ABSENT`), ``None`` and
a string, because OpenAI clients see the difference.  ``thinking`` items are
whole signed thinking blocks (``{type: thinking, thinking, signature}`` or
``{type: redacted_thinking, data}``), sent once each after the block's
``reasoning`` text, for a client to send back with its turn.  ``backend`` is
the upstream model version the answer came from (the ``system_fingerprint``).

``passthrough`` is True only for the sink of a client that speaks the
provider's own format (OpenAI chat in front of an OpenAI-compatible
provider): the relay may then hand the provider's bytes on unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from helix.errors import HelixError
    from helix.schema.usage import Usage

__all__ = ["ABSENT", "StreamSink", "tool_delta"]


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


class StreamSink(Protocol):
    passthrough: bool

    def start(self, id: str, model: str, created: int,
              backend: str | None = None) -> bytes: ...
    def delta(self, choice: int = 0, *, role: bool = False, content=ABSENT,
              reasoning: str | None = None, tools: list | None = None,
              thinking: list | None = None) -> bytes: ...
    def text(self, choice: int, text: str) -> bytes: ...
    def finish(self, choice: int, reason: str) -> bytes: ...
    def usage(self, usage: Usage) -> bytes: ...
    def end(self) -> bytes: ...
    def error(self, err: HelixError) -> bytes: ...


def tool_delta(call: dict) -> tuple[int, str | None, str, str]:
    """``(index, id, name, argument fragment)`` of a ``tools`` item: ``id`` is not None
    only on the first delta of a call (which opens it)."""
    fn = call.get("function") or {}
    return call.get("index", 0), call.get("id"), fn.get("name") or "", fn.get("arguments") or ""
