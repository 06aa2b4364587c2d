"""Responses request -> OpenAI chat request: how a Responses client (the Agents SDK, Codex)
reaches a provider without a Responses API.

Translated: ``instructions`` -> a system message; ``input`` -- a string, or items:
messages (``input_text``, ``input_image`` with an image URL or data URL,
``input_file`` with ``file_data``, ``output_text`` / ``refusal`` of earlier
assistant turns), ``function_call`` -> assistant ``tool_calls``,
``function_call_output`` -> ``tool`` messages; earlier turns of a stored
conversation come first (``previous_response_id``, resolved by Helix);
``tools`` (function tools) and ``tool_choice``; ``text.format``
(``json_schema`` / ``json_object``) -> ``response_format``;
``max_output_tokens``; ``temperature``, ``top_p``, ``parallel_tool_calls``;
``reasoning.effort`` -> ``reasoning_effort``; ``user`` / ``safety_identifier``;
``stream`` (with usage asked for).

Dropped, harmless: ``metadata``, ``include``, ``truncation``, ``store`` (Helix
stores), ``prompt_cache_key``, ``service_tier``, ``reasoning.summary``,
``reasoning`` items of earlier turns (encrypted for OpenAI only), except those whose
``encrypted_content`` is Claude's signed thinking as Helix packed it: those go back as the
next assistant turn's ``thinking_blocks``.

Refused with a 400 naming the field: built-in tools (``web_search``,
``file_search``, ``code_interpreter``, ``computer_use_preview``,
``image_generation``, ``mcp``, ``local_shell``, ...), items only OpenAI runs
(``web_search_call``, ``computer_call`` ...), ``item_reference``, uploaded
``file_id`` images and files, ``background``, ``conversation`` and ``prompt``
(OpenAI-hosted objects).
"""

from __future__ import annotations

from typing import Any

from helix.api.responses.response import new_id
from helix.errors import ErrorKind, HelixError
from helix.providers.features import unpack_thinking

__all__ = ["input_items", "to_chat"]

_OPENAI_ONLY = {
    "background": "background responses run on OpenAI's servers",
    "conversation": "conversations are OpenAI-hosted objects",
    "prompt": "prompt templates are OpenAI-hosted objects",
}


def _bad(message: str, param: str | None = None, code: str | None = None) -> HelixError:
    return HelixError(ErrorKind.INVALID_REQUEST, message, param=param, code=code)


def _openai_only(what: str, param: str) -> HelixError:
    return _bad(
        f"{what} is only available on OpenAI models, and this model is served by a provider "
        f"without OpenAI's Responses API.",
        param, "unsupported_parameter",
    )


_ID_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}


def input_items(doc: dict) -> list[dict]:
    """The request's ``input`` as a list of items, each with an ``id`` (as ``input_items``
    lists them)."""
    raw = doc.get("input")
    if isinstance(raw, str):
        return [{"id": new_id("msg_"), "type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list):
        raise _bad("Invalid value for 'input': expected a string or an array of items.", "input")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _bad(f"Invalid value for 'input[{i}]': expected an object.", f"input[{i}]")
        item = dict(item)
        if "type" not in item and "role" in item:
            item["type"] = "message"
        if item["type"] == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        if not item.get("id"):
            item["id"] = new_id(_ID_PREFIX.get(item.get("type"), "item_"))
        out.append(item)
    return out


def _parts(content: list, where: str, role: str) -> tuple[list[dict], bool]:
    """(chat content parts, only text)."""
    parts = []
    only_text = True
    for j, part in enumerate(content):
        pw = f"{where}.content[{j}]"
        ptype = part.get("type") if isinstance(part, dict) else None
        if ptype in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif ptype == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        elif ptype == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise _openai_only("An uploaded image ('file_id')", f"{pw}.file_id")
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
            only_text = False
        elif ptype == "input_file":
            if not isinstance(part.get("file_data"), str):
                raise _openai_only("An uploaded file ('file_id' or 'file_url')", pw)
            data = part["file_data"]
            if not data.startswith("data:"):
                data = f"data:application/pdf;base64,{data}"
            parts.append({"type": "file", "file": {"filename": part.get("filename") or "file",
                                                   "file_data": data}})
            only_text = False
        else:
            raise _bad(f"Invalid value for '{pw}.type': {ptype!r} content parts are not "
                       f"supported in {role} messages.", f"{pw}.type")
    return parts, only_text


def _messages(items: list[dict]) -> list[dict]:
    out: list[dict] = []
    pending: list[dict] = []  # signed thinking of a reasoning item, for the next assistant turn

    def attach(msg: dict) -> None:
        if pending:
            msg.setdefault("thinking_blocks", []).extend(pending)
            pending.clear()

    for i, item in enumerate(items):
        where = f"input[{i}]"
        itype = item.get("type")
        if itype == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"Invalid value for '{where}.role': {role!r}.", f"{where}.role")
            parts, only_text = _parts(item.get("content") or [], where, role)
            if role == "assistant" or only_text:
                content: Any = "".join(p["text"] for p in parts)
            else:
                content = parts
            out.append({"role": "system" if role == "developer" else role, "content": content})
            if role == "assistant":
                attach(out[-1])
        elif itype == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"),
                                 "arguments": item.get("arguments") or "{}"}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and (
                    last.get("tool_calls") or not last.get("content")):
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
            attach(out[-1])
        elif itype == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
            out.append({"role": "tool", "tool_call_id": item.get("call_id"),
                        "content": output if isinstance(output, str) else ""})
        elif itype == "reasoning":  # Claude's signed thinking comes back packed in it
            pending.extend(unpack_thinking(item.get("encrypted_content")))
        elif itype == "item_reference":
            raise _openai_only("'item_reference'", f"{where}.type")
        else:
            raise _openai_only(f"An input item of type {itype!r}", f"{where}.type")
    return out


def _tools(tools: Any) -> list[dict]:
    out = []
    for j, tool in enumerate(tools or ()):
        ttype = tool.get("type") if isinstance(tool, dict) else None
        if ttype != "function":
            raise _openai_only(f"The built-in tool {ttype!r}", f"tools[{j}].type")
        fn: dict[str, Any] = {"name": tool.get("name")}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        if tool.get("strict") is not None:
            fn["strict"] = tool["strict"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    kind = choice.get("type") if isinstance(choice, dict) else choice
    raise _openai_only(f"tool_choice {kind!r}", "tool_choice")


def _format(text: Any) -> dict | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        spec = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
        if fmt.get("strict") is not None:
            spec["strict"] = fmt["strict"]
        if fmt.get("description"):
            spec["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": spec}
    raise _bad(f"Invalid value for 'text.format.type': {fmt['type']!r}.", "text.format.type")


def to_chat(doc: dict, history: list[dict], items: list[dict]) -> dict:
    """A Responses request as a chat request: ``history`` (earlier turns' input and output
    items) then ``items`` (this request's input)."""
    for key, why in _OPENAI_ONLY.items():
        if doc.get(key):
            raise _openai_only(f"'{key}' ({why})", key)
    messages = []
    if isinstance(doc.get("instructions"), str) and doc["instructions"]:
        messages.append({"role": "system", "content": doc["instructions"]})
    messages.extend(_messages([*history, *items]))
    out: dict[str, Any] = {"model": doc.get("model"), "messages": messages}
    if doc.get("tools"):
        out["tools"] = _tools(doc["tools"])
    if doc.get("tool_choice") is not None and out.get("tools"):
        out["tool_choice"] = _tool_choice(doc["tool_choice"])
    if doc.get("parallel_tool_calls") is False and out.get("tools"):
        out["parallel_tool_calls"] = False
    fmt = _format(doc.get("text"))
    if fmt is not None:
        out["response_format"] = fmt
    if doc.get("max_output_tokens") is not None:
        out["max_tokens"] = doc["max_output_tokens"]
    for key in ("temperature", "top_p"):
        if doc.get(key) is not None:
            out[key] = doc[key]
    effort = (doc.get("reasoning") or {}).get("effort") if isinstance(doc.get("reasoning"),
                                                                        dict) else None
    if effort:
        out["reasoning_effort"] = effort
    user = doc.get("user") or doc.get("safety_identifier")
    if isinstance(user, str) and user:
        out["user"] = user
    if doc.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out
