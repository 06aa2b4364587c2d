"""Anthropic Messages request -> OpenAI chat request: how an Anthropic client reaches a
provider that does not speak Messages (the OpenAI family, Azure, Gemini, Cohere, Bedrock
models other than Claude).

Translated: ``system`` (a string or text blocks) -> a system message;
``messages`` -- text, images (base64 and URL sources), PDF and plain-text
documents, ``tool_use`` -> ``tool_calls``, ``tool_result`` -> ``tool`` messages
(images in a result follow in a user message: tool messages carry text only);
``max_tokens``; ``stop_sequences`` -> ``stop``; ``temperature``, ``top_p``;
``tools`` (custom tools) and ``tool_choice`` (auto / any -> required / tool /
none, ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``);
``metadata.user_id`` -> ``user``; ``output_config.format`` (structured outputs) ->
``response_format`` (``json_schema``, strict, as Anthropic enforces it); ``stream`` (with
usage asked for).

Dropped, because the answer stays a valid answer without them: ``top_k``
(OpenAI has no equivalent; a sampling detail), ``thinking`` and ``output_config.effort``
(the model's own reasoning switch: providers that reason do so unasked, and one that does
not would refuse a reasoning effort), ``cache_control``
(a caching hint), ``service_tier``, ``context_management``, thinking and
redacted-thinking blocks of earlier turns (signed by Anthropic: no other
provider reads them).

Refused with a 400 naming the field, because the client would silently get
something else: server tools (``web_search_*``, ``code_execution_*``, ``bash_*``,
``text_editor_*``, ``computer_*``, ``web_fetch_*``, ``memory_*``...),
``mcp_servers``, ``container``, and content blocks that only Claude understands
(``server_tool_use``, ``*_tool_result`` of server tools, ``search_result``,
``container_upload``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from helix.errors import ErrorKind, HelixError

_encode = msgspec.json.Encoder().encode

__all__ = ["to_chat"]

_REFUSED = {
    "mcp_servers": "MCP connectors run on Anthropic's servers",
    "container": "code execution containers run on Anthropic's servers",
}


def _bad(message: str, param: str | None = None) -> HelixError:
    return HelixError(ErrorKind.INVALID_REQUEST, message, param=param)


def _claude_only(what: str, where: str) -> HelixError:
    return HelixError(
        ErrorKind.INVALID_REQUEST,
        f"{where}: {what} is only available on Claude models, and this model is served by "
        "a provider that does not speak Anthropic's Messages API.",
        param=where, code="unsupported_parameter",
    )


def _text_of(blocks: Any, where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise _bad(f"{where}: expected a string or an array of text blocks", where)
    texts = []
    for i, b in enumerate(blocks):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise _bad(f"{where}.{i}: expected a text block", f"{where}.{i}")
        texts.append(b["text"])
    return "\n\n".join(texts)


def _image(block: dict, where: str) -> dict:
    src = block.get("source")
    if not isinstance(src, dict):
        raise _bad(f"{where}.source: Field required", f"{where}.source")
    if src.get("type") == "base64":
        url = f"data:{src.get('media_type')};base64,{src.get('data')}"
    elif src.get("type") == "url" and isinstance(src.get("url"), str):
        url = src["url"]
    else:
        raise _claude_only(f"an image source of type {src.get('type')!r}", f"{where}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: dict, where: str) -> dict:
    src = block.get("source")
    if not isinstance(src, dict):
        raise _bad(f"{where}.source: Field required", f"{where}.source")
    stype = src.get("type")
    if stype == "base64":
        data = f"data:{src.get('media_type') or 'application/pdf'};base64,{src.get('data')}"
        name = block.get("title") or "document.pdf"
        return {"type": "file", "file": {"filename": name, "file_data": data}}
    if stype == "text" and isinstance(src.get("data"), str):
        return {"type": "text", "text": src["data"]}
    raise _claude_only(f"a document source of type {stype!r}", f"{where}.source")


def _user_parts(blocks: list, where: str) -> tuple[list[dict], list[dict]]:
    """(tool messages, user content parts) of one user turn's blocks."""
    tools: list[dict] = []
    parts: list[dict] = []
    for i, b in enumerate(blocks):
        bw = f"{where}.{i}"
        btype = b.get("type") if isinstance(b, dict) else None
        if btype == "text":
            parts.append({"type": "text", "text": b.get("text", "")})
        elif btype == "image":
            parts.append(_image(b, bw))
        elif btype == "document":
            parts.append(_document(b, bw))
        elif btype == "tool_result":
            text, images = _tool_result(b.get("content"), bw)
            call_id = b.get("tool_use_id")
            if not isinstance(call_id, str):
                raise _bad(f"{bw}.tool_use_id: Field required", f"{bw}.tool_use_id")
            tools.append({"role": "tool", "tool_call_id": call_id, "content": text})
            parts.extend(images)
        elif btype in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _claude_only(f"a content block of type {btype!r}", f"{bw}.type")
    return tools, parts


def _tool_result(content: Any, where: str) -> tuple[str, list[dict]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise _bad(f"{where}.content: expected a string or an array of blocks", f"{where}.content")
    texts, images = [], []
    for i, b in enumerate(content):
        btype = b.get("type") if isinstance(b, dict) else None
        if btype == "text":
            texts.append(b.get("text", ""))
        elif btype == "image":
            images.append(_image(b, f"{where}.content.{i}"))
        elif btype == "document":
            part = _document(b, f"{where}.content.{i}")
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
        else:
            raise _claude_only(f"a tool result block of type {btype!r}", f"{where}.content.{i}")
    return "\n".join(texts), images


def _assistant(blocks: list, where: str) -> dict:
    texts: list[str] = []
    calls: list[dict] = []
    for i, b in enumerate(blocks):
        btype = b.get("type") if isinstance(b, dict) else None
        if btype == "text":
            texts.append(b.get("text", ""))
        elif btype == "tool_use":
            calls.append({
                "id": b.get("id"), "type": "function",
                "function": {"name": b.get("name"),
                             "arguments": _encode(b.get("input") or {}).decode()},
            })
        elif btype in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _claude_only(f"a content block of type {btype!r}", f"{where}.{i}.type")
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _messages(doc: dict) -> list[dict]:
    out: list[dict] = []
    system = doc.get("system")
    if system:
        out.append({"role": "system", "content": _text_of(system, "system")})
    messages = doc.get("messages")
    if not isinstance(messages, list):
        raise _bad("messages: Input should be a valid list", "messages")
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(m, dict):
            raise _bad(f"{where}: Input should be a valid dictionary", where)
        role, content = m.get("role"), m.get("content")
        if role not in ("user", "assistant"):
            raise _bad(f"{where}.role: Input should be 'user' or 'assistant'", f"{where}.role")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise _bad(f"{where}.content: Input should be a valid list", f"{where}.content")
        if role == "assistant":
            out.append(_assistant(content, f"{where}.content"))
            continue
        tools, parts = _user_parts(content, f"{where}.content")
        out.extend(tools)  # results answer the calls of the turn before: they come first
        if parts:
            if all(p["type"] == "text" for p in parts) and len(parts) == 1:
                out.append({"role": "user", "content": parts[0]["text"]})
            else:
                out.append({"role": "user", "content": parts})
    return out


def _tools(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        raise _bad("tools: Input should be a valid list", "tools")
    out = []
    for i, t in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(t, dict):
            raise _bad(f"{where}: Input should be a valid dictionary", where)
        ttype = t.get("type")
        if ttype not in (None, "custom"):
            raise _claude_only(f"the server tool {ttype!r}", f"{where}.type")
        if not isinstance(t.get("name"), str):
            raise _bad(f"{where}.name: Field required", f"{where}.name")
        fn: dict[str, Any] = {"name": t["name"]}
        if t.get("description"):
            fn["description"] = t["description"]
        fn["parameters"] = t.get("input_schema") or {"type": "object", "properties": {}}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> tuple[Any, bool]:
    """(OpenAI tool_choice or None, parallel tool calls allowed)."""
    if not isinstance(choice, dict):
        raise _bad("tool_choice: Input should be a valid dictionary", "tool_choice")
    ctype = choice.get("type")
    parallel = not choice.get("disable_parallel_tool_use", False)
    if ctype == "auto":
        return "auto", parallel
    if ctype == "any":
        return "required", parallel
    if ctype == "none":
        return "none", parallel
    if ctype == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise _bad("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
               "tool_choice.type")


def _output_format(doc: dict) -> dict | None:
    """``output_config.format`` (or the beta ``output_format``) as ``response_format``."""
    config = doc.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        fmt = doc.get("output_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise _bad("output_config.format.type: Input should be 'json_schema'",
                   "output_config.format.type")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise _bad("output_config.format.schema: Field required", "output_config.format.schema")
    return {"type": "json_schema",
            "json_schema": {"name": "response", "schema": schema, "strict": True}}


def to_chat(doc: dict) -> dict:
    """An Anthropic Messages request (decoded) as an OpenAI chat-completions request."""
    for key, why in _REFUSED.items():
        if doc.get(key):
            raise _claude_only(f"'{key}' ({why})", key)
    out: dict[str, Any] = {"model": doc.get("model"), "messages": _messages(doc)}
    if doc.get("max_tokens") is not None:
        out["max_tokens"] = doc["max_tokens"]
    stop = doc.get("stop_sequences")
    if stop:
        out["stop"] = stop
    for key in ("temperature", "top_p"):
        if doc.get(key) is not None:
            out[key] = doc[key]
    if doc.get("tools"):
        out["tools"] = _tools(doc["tools"])
        if doc.get("tool_choice") is not None:
            choice, parallel = _tool_choice(doc["tool_choice"])
            out["tool_choice"] = choice
            if not parallel:
                out["parallel_tool_calls"] = False
    elif doc.get("tool_choice") is not None and doc["tool_choice"].get("type") != "none":
        raise _bad("tool_choice: requires tools", "tool_choice")
    meta = doc.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
        out["user"] = meta["user_id"]
    fmt = _output_format(doc)
    if fmt is not None:
        out["response_format"] = fmt
    if doc.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out
