"""A stored Responses answer the way the client asks for it, whichever way it was stored.

* JSON stored, SSE asked: the Response replayed as the event sequence (each output
  item added, its whole text or arguments in one delta, done; then
  ``response.completed`` / ``response.incomplete``), sequence numbers from 0.
* SSE stored, JSON asked: the Response of the final ``response.completed`` /
  ``response.incomplete`` event.
"""

from __future__ import annotations

import msgspec

from helix._fast import SSEParser

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_FINAL = ("response.completed", "response.incomplete", "response.failed")


class _Events:
    def __init__(self) -> None:
        self.seq = 0
        self.out: list[bytes] = []

    def add(self, etype: str, doc: dict) -> None:
        doc = {"type": etype, **doc, "sequence_number": self.seq}
        self.seq += 1
        self.out.append(b"event: " + etype.encode() + b"\ndata: " + _encode(doc) + b"\n\n")


def json_to_sse(body: bytes) -> bytes:
    r = _decode(body)
    head = {**r, "status": "in_progress", "output": [], "usage": None}
    ev = _Events()
    ev.add("response.created", {"response": head})
    ev.add("response.in_progress", {"response": head})
    for i, item in enumerate(r.get("output") or ()):
        itype = item.get("type")
        where = {"item_id": item.get("id"), "output_index": i}
        if itype == "message":
            ev.add("response.output_item.added", {"output_index": i, "item": {
                **item, "status": "in_progress", "content": []}})
            for j, part in enumerate(item.get("content") or ()):
                empty = {**part, "text": ""} if part.get("type") == "output_text" else part
                ev.add("response.content_part.added",
                       {**where, "content_index": j, "part": empty})
                if part.get("type") == "output_text":
                    ev.add("response.output_text.delta", {**where, "content_index": j,
                                                          "delta": part.get("text", ""),
                                                          "logprobs": []})
                    ev.add("response.output_text.done", {**where, "content_index": j,
                                                         "text": part.get("text", ""),
                                                         "logprobs": []})
                ev.add("response.content_part.done", {**where, "content_index": j, "part": part})
        elif itype == "function_call":
            ev.add("response.output_item.added", {"output_index": i, "item": {
                **item, "status": "in_progress", "arguments": ""}})
            ev.add("response.function_call_arguments.delta",
                   {**where, "delta": item.get("arguments", "")})
            ev.add("response.function_call_arguments.done",
                   {**where, "arguments": item.get("arguments", "")})
        else:
            ev.add("response.output_item.added", {"output_index": i, "item": item})
        ev.add("response.output_item.done", {"output_index": i, "item": item})
    final = "response.completed" if r.get("status") == "completed" else "response.incomplete"
    ev.add(final, {"response": r})
    return b"".join(ev.out)


def sse_to_json(body: bytes) -> bytes:
    parser = SSEParser()
    events = parser.feed(body if body.endswith(b"\n\n") else body + b"\n\n")
    for _name, data in reversed(events):
        try:
            doc = _decode(data)
        except msgspec.DecodeError:
            continue
        if isinstance(doc, dict) and doc.get("type") in _FINAL:
            return _encode(doc.get("response") or {})
    return b"{}"
