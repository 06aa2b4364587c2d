"""Serve a stored answer the way the client asked, whichever way it was stored.

* JSON stored, JSON asked: the bytes as stored.
* SSE stored, SSE asked: the events as stored (minus the usage-only chunk when
  this client did not ask for ``stream_options.include_usage``).
* JSON stored, SSE asked: ``chat.completion`` -> chunks: per choice one delta
  with role, content/refusal, reasoning (``reasoning_content``, ``thinking_blocks``)
  and tool calls, then one with its ``finish_reason``; the usage chunk when asked
  for; ``data: [DONE]``.
* SSE stored, JSON asked: the chunks folded back into one ``chat.completion``
  (content, refusal, reasoning and tool-call arguments concatenated, thinking
  blocks and logprobs joined).

Pure functions over bytes.
"""

from __future__ import annotations

import msgspec

from helix._fast import SSEParser

_decode = msgspec.json.decode
_encode = msgspec.json.encode
_DONE = b"data: [DONE]\n\n"


def _events(body: bytes) -> list[bytes]:
    parser = SSEParser()
    events = parser.feed(body)
    if not body.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")):
        events += parser.feed(b"\n\n")
    return [data for _, data in events]


def _event(obj: dict) -> bytes:
    return b"data: " + _encode(obj) + b"\n\n"


def _usage_only(chunk: dict) -> bool:
    return not chunk.get("choices") and chunk.get("usage") is not None


def sse_for_client(body: bytes, include_usage: bool) -> bytes:
    """A stored stream for a stream request: as stored, minus a usage chunk not asked for."""
    if include_usage or b'"usage"' not in body:
        return body
    out = []
    for data in _events(body):
        if data != b"[DONE]":
            try:
                chunk = _decode(data)
            except msgspec.DecodeError:
                chunk = None
            if isinstance(chunk, dict):
                if _usage_only(chunk):
                    continue
                if "usage" in chunk:
                    chunk = {k: v for k, v in chunk.items() if k != "usage"}
                    data = _encode(chunk)
        out.append(b"data: " + data + b"\n\n")
    return b"".join(out)


_CHUNK_KEYS = ("id", "created", "model", "service_tier", "system_fingerprint")


def json_to_sse(body: bytes, include_usage: bool) -> bytes:
    """A stored ``chat.completion`` replayed as OpenAI ``chat.completion.chunk`` events."""
    doc = _decode(body)
    head = {k: doc[k] for k in _CHUNK_KEYS if k in doc}
    head["object"] = "chat.completion.chunk"

    def chunk(choices: list) -> bytes:
        obj = {**head, "choices": choices}
        if include_usage:
            obj["usage"] = None
        return _event(obj)

    out = []
    for choice in doc.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        delta: dict = {"role": message.get("role", "assistant")}
        content = message.get("content")
        delta["content"] = content
        if message.get("refusal") is not None:
            delta["refusal"] = message["refusal"]
        for field in ("reasoning_content", "thinking_blocks"):
            if message.get(field) is not None:
                delta[field] = message[field]
        calls = message.get("tool_calls")
        if calls:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
        if message.get("function_call") is not None:
            delta["function_call"] = message["function_call"]
        first = {"index": index, "delta": delta, "logprobs": choice.get("logprobs"),
                 "finish_reason": None}
        out.append(chunk([first]))
        last = {"index": index, "delta": {}, "logprobs": None,
                "finish_reason": choice.get("finish_reason")}
        out.append(chunk([last]))
    if include_usage and doc.get("usage") is not None:
        out.append(_event({**head, "choices": [], "usage": doc["usage"]}))
    out.append(_DONE)
    return b"".join(out)


def _join(parts: list[str] | None) -> str | None:
    return None if parts is None else "".join(parts)


def sse_to_json(body: bytes) -> bytes:
    """A stored stream folded back into the ``chat.completion`` a non-stream request gets."""
    head: dict = {}
    usage = None
    choices: dict[int, dict] = {}
    for data in _events(body):
        if data == b"[DONE]":
            continue
        try:
            chunk = _decode(data)
        except msgspec.DecodeError:
            continue
        if not isinstance(chunk, dict):
            continue
        for k in _CHUNK_KEYS:
            if k in chunk and k not in head:
                head[k] = chunk[k]
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        for c in chunk.get("choices") or []:
            st = choices.setdefault(
                c.get("index", 0),
                {"role": None, "content": None, "refusal": None, "reasoning_content": None,
                 "thinking_blocks": None, "calls": {}, "finish": None, "logprobs": None},
            )
            delta = c.get("delta") or {}
            if delta.get("role"):
                st["role"] = delta["role"]
            for field in ("content", "refusal", "reasoning_content"):
                if delta.get(field) is not None:
                    if st[field] is None:
                        st[field] = []
                    st[field].append(delta[field])
            if isinstance(delta.get("thinking_blocks"), list):
                st["thinking_blocks"] = (st["thinking_blocks"] or []) + delta["thinking_blocks"]
            for call in delta.get("tool_calls") or []:
                slot = st["calls"].setdefault(
                    call.get("index", 0), {"id": None, "type": "function", "name": "", "args": []}
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                if call.get("type"):
                    slot["type"] = call["type"]
                fn = call.get("function") or {}
                if fn.get("name"):
                    slot["name"] += fn["name"]
                if fn.get("arguments"):
                    slot["args"].append(fn["arguments"])
            lp = c.get("logprobs")
            if lp:
                if st["logprobs"] is None:
                    st["logprobs"] = {k: list(v) if isinstance(v, list) else v
                                      for k, v in lp.items()}
                else:
                    for k, v in lp.items():
                        if isinstance(v, list) and isinstance(st["logprobs"].get(k), list):
                            st["logprobs"][k].extend(v)
            if c.get("finish_reason") is not None:
                st["finish"] = c["finish_reason"]
    out_choices = []
    for index in sorted(choices):
        st = choices[index]
        message: dict = {
            "role": st["role"] or "assistant",
            "content": _join(st["content"]),
            "refusal": _join(st["refusal"]),
        }
        if st["reasoning_content"] is not None:
            message["reasoning_content"] = _join(st["reasoning_content"])
        if st["thinking_blocks"] is not None:
            message["thinking_blocks"] = st["thinking_blocks"]
        if st["calls"]:
            message["tool_calls"] = [
                {"id": s["id"], "type": s["type"],
                 "function": {"name": s["name"], "arguments": "".join(s["args"])}}
                for _, s in sorted(st["calls"].items())
            ]
        out_choices.append(
            {"index": index, "message": message, "logprobs": st["logprobs"],
             "finish_reason": st["finish"]}
        )
    doc = {
        "id": head.get("id"),
        "object": "chat.completion",
        "created": head.get("created"),
        "model": head.get("model"),
        "choices": out_choices,
    }
    if usage is not None:
        doc["usage"] = usage
    for k in ("service_tier", "system_fingerprint"):
        if k in head:
            doc[k] = head[k]
    return _encode(doc)
