"""A stored Messages answer the way the client asks for it, whichever way it was stored.

* JSON stored, JSON asked / SSE stored, SSE asked: the bytes as stored.
* JSON stored, SSE asked: the Message as Anthropic's event sequence (one
  ``content_block_start`` / delta / ``content_block_stop`` per block: the whole
  text, thinking (and its signature) or tool input in one delta).
* SSE stored, JSON asked: the events folded back into the Message, as the
  Anthropic SDKs accumulate them (text, thinking, signatures, citations and
  tool inputs; the final stop reason and usage).

Pure functions over bytes.
"""

from __future__ import annotations

import msgspec

from helix._fast import SSEParser
from helix.api.messages.response import event

_decode = msgspec.json.decode
_encode = msgspec.json.encode


def _events(body: bytes) -> list[dict]:
    parser = SSEParser()
    found = parser.feed(body)
    if not body.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")):
        found += parser.feed(b"\n\n")
    out = []
    for _name, data in found:
        try:
            doc = _decode(data)
        except msgspec.DecodeError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def _empty(block: dict) -> tuple[dict, list[dict]]:
    """The block as content_block_start carries it, and the deltas that fill it."""
    btype = block.get("type")
    if btype == "text":
        deltas = [{"type": "text_delta", "text": block.get("text", "")}]
        for c in block.get("citations") or ():
            deltas.append({"type": "citations_delta", "citation": c})
        return {"type": "text", "text": ""}, deltas
    if btype == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")}]
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        return {"type": "thinking", "thinking": "", "signature": ""}, deltas
    if btype in ("tool_use", "server_tool_use"):
        start = {k: v for k, v in block.items() if k != "input"}
        start["input"] = {}
        return start, [{"type": "input_json_delta",
                        "partial_json": _encode(block.get("input") or {}).decode()}]
    return block, []  # redacted thinking, server tool results: whole at the start


def json_to_sse(body: bytes) -> bytes:
    msg = _decode(body)
    head = {k: v for k, v in msg.items() if k not in ("content", "stop_reason", "stop_sequence")}
    usage = dict(msg.get("usage") or {})
    head.update({"content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**usage, "output_tokens": 0}})
    out = [event(b"message_start", {"type": "message_start", "message": head})]
    for i, block in enumerate(msg.get("content") or ()):
        start, deltas = _empty(block)
        out.append(event(b"content_block_start",
                         {"type": "content_block_start", "index": i, "content_block": start}))
        for d in deltas:
            out.append(event(b"content_block_delta",
                             {"type": "content_block_delta", "index": i, "delta": d}))
        out.append(event(b"content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(event(b"message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": msg.get("stop_reason"), "stop_sequence": msg.get("stop_sequence")},
        "usage": usage,
    }))
    out.append(event(b"message_stop", {"type": "message_stop"}))
    return b"".join(out)


def sse_to_json(body: bytes) -> bytes:
    msg: dict = {}
    blocks: dict[int, dict] = {}
    partial: dict[int, list[str]] = {}
    for ev in _events(body):
        etype = ev.get("type")
        if etype == "message_start":
            msg = dict(ev.get("message") or {})
        elif etype == "content_block_start":
            blocks[ev.get("index", len(blocks))] = dict(ev.get("content_block") or {})
        elif etype == "content_block_delta":
            i = ev.get("index", 0)
            block = blocks.setdefault(i, {})
            d = ev.get("delta") or {}
            dtype = d.get("type")
            if dtype == "text_delta":
                block["text"] = block.get("text", "") + d.get("text", "")
            elif dtype == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + d.get("thinking", "")
            elif dtype == "signature_delta":
                block["signature"] = d.get("signature", "")
            elif dtype == "citations_delta":
                block.setdefault("citations", []).append(d.get("citation"))
            elif dtype == "input_json_delta":
                partial.setdefault(i, []).append(d.get("partial_json", ""))
        elif etype == "message_delta":
            d = ev.get("delta") or {}
            for k in ("stop_reason", "stop_sequence"):
                if k in d:
                    msg[k] = d[k]
            usage = dict(msg.get("usage") or {})
            usage.update({k: v for k, v in (ev.get("usage") or {}).items() if v is not None})
            msg["usage"] = usage
    for i, parts in partial.items():
        text = "".join(parts)
        try:
            blocks[i]["input"] = _decode(text) if text else {}
        except msgspec.DecodeError:
            blocks[i]["input"] = {}
    msg["content"] = [blocks[i] for i in sorted(blocks)]
    return _encode(msg)
