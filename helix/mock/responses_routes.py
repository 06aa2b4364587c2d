"""OpenAI's Responses API for the mock provider: ``POST /v1/responses`` (JSON and SSE),
``GET`` / ``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``.

Like OpenAI, the mock keeps stored responses (``store`` defaults to true) so that
``previous_response_id`` continues a conversation: the reply names the last user text of
the whole conversation.  ``call tool`` in the last user text (with function tools)
answers with a ``function_call``; a ``function_call_output`` as the last input item gets
text; ``max_output_tokens`` smaller than the reply cuts it (``status: incomplete``,
``incomplete_details.reason: max_output_tokens``).  Built-in tools are accepted and
ignored.  Streams are the real event sequence with increasing ``sequence_number``.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import orjson

from . import openai_routes
from .base import BadRequest, Controls, MockRequest, Reply, StreamReply, count_tokens, split_text

NAME = "openai-responses"
error_reply = openai_routes.error_reply
check_auth = openai_routes.check_auth

_ids = itertools.count(1)
_id_prefix = os.urandom(3).hex()
_stored: dict[str, dict[str, Any]] = {}  # id -> {"response", "input", "history"}
_MAX_STORED = 10_000


def _new_id(prefix: str) -> str:
    return f"{prefix}{_id_prefix}{next(_ids):08d}"


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"id": _new_id("msg_"), "type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list):
        raise BadRequest("Invalid value for 'input': expected a string or an array.", "input")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise BadRequest(f"Invalid value for 'input[{i}]'.", f"input[{i}]")
        item = dict(item)
        itype = item.setdefault("type", "message")
        if itype not in ("message", "function_call", "function_call_output", "reasoning",
                         "item_reference"):
            raise BadRequest(f"Invalid value for 'input[{i}].type': {itype!r}.",
                             f"input[{i}].type")
        if itype == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        item.setdefault("id", _new_id("msg_" if itype == "message" else "fc_"))
        out.append(item)
    return out


def _last_user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("type") == "message" and item.get("role") == "user":
            texts = [p.get("text", "") for p in item.get("content") or ()
                     if isinstance(p, dict) and p.get("type") == "input_text"]
            if any(texts):
                return " ".join(t for t in texts if t)
    return ""


def _tool_call(body: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)
             and t.get("type") == "function"]
    if not tools or body.get("tool_choice") == "none":
        return None
    if items and items[-1].get("type") == "function_call_output":
        return None
    choice = body.get("tool_choice")
    if not (choice == "required" or isinstance(choice, dict)
            or "call tool" in _last_user_text(items).lower()):
        return None
    tool = tools[0]
    if isinstance(choice, dict) and choice.get("name"):
        tool = next((t for t in tools if t.get("name") == choice["name"]), tool)
    args = openai_routes.tool_arguments({"function": {"parameters": tool.get("parameters")}})
    return {"id": _new_id("fc_"), "type": "function_call", "status": "completed",
            "call_id": _new_id("call_"), "name": tool.get("name"), "arguments": args}


def _response(body: dict[str, Any], rid: str, items: list, history: list) -> dict[str, Any]:
    everything = [*history, *items]
    call = _tool_call(body, items)
    status, incomplete = "completed", None
    if call is not None:
        output = [call]
        out_tokens = count_tokens(call["arguments"]) + 1
    else:
        text = f"mock reply to: {_last_user_text(everything)[:40]}"
        limit = body.get("max_output_tokens")
        words = text.split()
        if isinstance(limit, int) and len(words) > limit:
            text = " ".join(words[:limit])
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        output = [{"id": _new_id("msg_"), "type": "message", "status": status, "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": [],
                                "logprobs": []}]}]
        out_tokens = count_tokens(text)
    in_tokens = max(1, sum(count_tokens(orjson.dumps(i.get("content") or i.get("output") or "")
                                        .decode()) for i in everything))
    now = int(time.time())
    return {
        "id": rid, "object": "response", "created_at": now, "status": status,
        "completed_at": now if status == "completed" else None, "error": None,
        "incomplete_details": incomplete, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": body.get("model"),
        "output": output, "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation", "disabled"),
        "usage": {"input_tokens": in_tokens, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": in_tokens + out_tokens},
        "user": body.get("user"), "metadata": body.get("metadata") or {},
    }


class _Events:
    def __init__(self) -> None:
        self.n = 0
        self.out: list[bytes] = []

    def add(self, etype: str, doc: dict[str, Any]) -> None:
        doc = {"type": etype, **doc, "sequence_number": self.n}
        self.n += 1
        self.out.append(b"event: " + etype.encode() + b"\ndata: " + orjson.dumps(doc) + b"\n\n")


def _stream(r: dict[str, Any], chunks: int) -> list[bytes]:
    ev = _Events()
    head = {**r, "status": "in_progress", "output": [], "usage": None, "completed_at": None}
    ev.add("response.created", {"response": head})
    ev.add("response.in_progress", {"response": head})
    for i, item in enumerate(r["output"]):
        where = {"item_id": item["id"], "output_index": i}
        if item["type"] == "function_call":
            ev.add("response.output_item.added", {"output_index": i, "item": {
                **item, "status": "in_progress", "arguments": ""}})
            for frag in split_text(item["arguments"], chunks):
                ev.add("response.function_call_arguments.delta", {**where, "delta": frag})
            ev.add("response.function_call_arguments.done",
                   {**where, "arguments": item["arguments"]})
        else:
            part = item["content"][0]
            ev.add("response.output_item.added", {"output_index": i, "item": {
                **item, "status": "in_progress", "content": []}})
            ev.add("response.content_part.added", {**where, "content_index": 0,
                                                   "part": {**part, "text": ""}})
            for piece in split_text(part["text"], chunks):
                ev.add("response.output_text.delta", {**where, "content_index": 0,
                                                      "delta": piece, "logprobs": []})
            ev.add("response.output_text.done", {**where, "content_index": 0,
                                                 "text": part["text"], "logprobs": []})
            ev.add("response.content_part.done", {**where, "content_index": 0, "part": part})
        ev.add("response.output_item.done", {"output_index": i, "item": item})
    final = "response.completed" if r["status"] == "completed" else "response.incomplete"
    ev.add(final, {"response": r})
    return ev.out


def create(req: MockRequest, ctl: Controls) -> Reply | StreamReply:
    body = req.json
    if not isinstance(body, dict):
        raise BadRequest("We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("Missing required parameter: 'model'.", "model")
    items = _items(body)
    history: list[dict[str, Any]] = []
    prev = body.get("previous_response_id")
    if prev is not None:
        stored = _stored.get(prev)
        if stored is None:
            return error_reply(404, f"Previous response with id '{prev}' not found.",
                               "previous_response_not_found", "previous_response_id")
        history = [*stored["history"], *stored["input"], *stored["response"]["output"]]
    rid = _new_id("resp_")
    r = _response(body, rid, items, history)
    if body.get("store", True):
        if len(_stored) >= _MAX_STORED:
            _stored.pop(next(iter(_stored)))
        _stored[rid] = {"response": r, "input": items, "history": history}
    if body.get("stream"):
        return StreamReply(200, _stream(r, ctl.chunks))
    return Reply(200, orjson.dumps(r))


def resource(req: MockRequest, ctl: Controls) -> Reply:
    rest = req.path[len("/v1/responses/"):]
    rid, _, sub = rest.partition("/")
    stored = _stored.get(rid)
    if stored is None:
        return error_reply(404, f"Response with id '{rid}' not found.", None, None)
    if req.method == "DELETE" and not sub:
        del _stored[rid]
        return Reply(200, orjson.dumps({"id": rid, "object": "response", "deleted": True}))
    if sub == "input_items":
        data = list(reversed(stored["input"]))
        return Reply(200, orjson.dumps({"object": "list", "data": data, "has_more": False,
                                        "first_id": data[0]["id"] if data else None,
                                        "last_id": data[-1]["id"] if data else None}))
    if sub:
        return error_reply(404, f"Unknown path {req.path}")
    return Reply(200, orjson.dumps(stored["response"]))


ROUTES = {("POST", "/v1/responses"): create}
PREFIX_ROUTES = [("GET", "/v1/responses/", resource), ("DELETE", "/v1/responses/", resource)]
