"""OpenAI chat request -> Anthropic Messages request (the chat translation's request half).

Translated: ``messages`` (system/developer -> top-level ``system``; consecutive
same-role turns merged; ``tool`` messages -> ``tool_result`` blocks in a user
turn; assistant ``tool_calls`` -> ``tool_use`` blocks, after the turn's signed
``thinking_blocks`` (or OpenRouter's ``reasoning_details``) when it carries them back;
``image_url`` data URLs -> base64 image sources, http(s) URLs -> url sources; ``file``
parts carrying a data URL -> base64 ``document`` blocks), ``max_completion_tokens``/
``max_tokens`` (filled with the model's default when absent: Anthropic requires it),
``stop``, ``temperature``, ``top_p``, ``tools``, ``tool_choice``,
``parallel_tool_calls: false`` (-> ``disable_parallel_tool_use``),
``response_format`` (structured output: ``output_config.format`` with the schema made
strict on models that have it, else the forced output tool; see
:mod:`helix.providers.features`), ``reasoning_effort`` (extended thinking: a
``budget_tokens`` from the effort, or adaptive thinking with ``output_config.effort``,
per the model registry), ``user`` (-> ``metadata.user_id``), ``stream``.
``cache_control`` on text/image parts is kept (Anthropic prompt caching).

Thinking asked for by ``reasoning_effort`` is left off for a request whose last assistant
turn used tools without its signed thinking block (a client that does not send
``thinking_blocks`` back): Anthropic refuses such a turn while thinking is on.

Dropped, because the answer stays a valid answer without them:
:data:`DROPPED_PARAMS` (``seed``, ``presence_penalty``, ``frequency_penalty``,
``store``, ``metadata``, ``service_tier``, ``prediction``,
``verbosity``, ``prompt_cache_key``, ``safety_identifier``, ``stream_options``
-- the latter is honoured by the relay).

Rejected with a 400 ``invalid_request_error`` naming the parameter, because
the client would silently get something other than what it asked for:
:data:`REJECTED_PARAMS` -- ``n`` > 1, ``logprobs: true``, ``top_logprobs``,
non-empty ``logit_bias``, ``audio``, non-text ``modalities``, the legacy
``functions``/``function_call``, ``web_search_options``.

Any other key is passed through verbatim, like vendor extensions on the
OpenAI route: Anthropic-native parameters (``top_k``, ``thinking``, ``output_config``,
...) sent via the SDK's ``extra_body`` work (a client's ``thinking`` wins over
``reasoning_effort``; its ``output_config`` is merged over Helix's), and a truly unknown
key gets Anthropic's own 400.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from helix.errors import ErrorKind, HelixError
from helix.providers.features import (
    OUTPUT_TOOL,
    Capabilities,
    anthropic_thinking,
    capabilities,
    check_tool_names,
    effort_of,
    json_instruction,
    output_format,
    strict_schema,
    thinking_blocks_of,
)
from helix.routing.models import lookup
from helix.schema.anthropic import json_decode

DEFAULT_MAX_TOKENS = 4096


def default_max_tokens(model_id: str) -> int:
    """``max_tokens`` to send when the client gave none (Anthropic requires one): the model
    registry's ``max_output`` when it knows the model, :data:`DEFAULT_MAX_TOKENS` otherwise."""
    try:
        info = lookup(model_id)
    except (LookupError, ValueError, TypeError):
        info = None
    value = getattr(info, "max_output", None)
    if isinstance(value, int) and value > 0:
        return value
    return DEFAULT_MAX_TOKENS


DROPPED_PARAMS = frozenset(
    {
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "store",
        "metadata",
        "service_tier",
        "prediction",
        "verbosity",
        "prompt_cache_key",
        "safety_identifier",
        "stream_options",
    }
)


def _used(value: Any) -> bool:
    return value is not None and value is not False


REJECTED_PARAMS: dict[str, Callable[[Any], bool]] = {
    # param -> "the client really uses it" (a default value is accepted and dropped)
    "n": lambda v: v is not None and v != 1,
    "logprobs": lambda v: bool(v),
    "top_logprobs": _used,
    "logit_bias": lambda v: bool(v),
    "audio": _used,
    "modalities": lambda v: isinstance(v, list) and any(m != "text" for m in v),
    "functions": lambda v: bool(v),
    "function_call": _used,
    "web_search_options": _used,
}

_HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "user",
        "stream",
        "thinking",
        "output_config",
    }
)


def _bad(message: str, param: str | None, code: str | None = None) -> HelixError:
    return HelixError(ErrorKind.INVALID_REQUEST, message, param=param, code=code)


def _unsupported(param: str, why: str) -> HelixError:
    return _bad(
        f"'{param}' is not supported by Anthropic models ({why}).",
        param,
        "unsupported_parameter",
    )


_REJECT_WHY = {
    "n": "Anthropic returns one choice per request",
    "logprobs": "Anthropic does not return log probabilities",
    "top_logprobs": "Anthropic does not return log probabilities",
    "logit_bias": "Anthropic has no logit bias",
    "audio": "Anthropic has no audio output",
    "modalities": "Anthropic outputs text only",
    "functions": "use 'tools' instead of the deprecated 'functions'",
    "function_call": "use 'tool_choice' instead of the deprecated 'function_call'",
    "web_search_options": "use Anthropic's web search tool via 'tools' in extra_body",
}


def _copy_cache_control(part: dict, block: dict) -> dict:
    cc = part.get("cache_control")
    if cc is not None:
        block["cache_control"] = cc
    return block


def _text_block(part: dict, where: str) -> dict | None:
    text = part.get("text")
    if not isinstance(text, str):
        raise _bad(f"Invalid value for '{where}.text': expected a string.", f"{where}.text")
    if not text:
        return None  # Anthropic refuses empty text blocks
    return _copy_cache_control(part, {"type": "text", "text": text})


def _data_url(url: str, where: str) -> tuple[str, str]:
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise _bad(
            f"Invalid value for '{where}': only base64 data URLs "
            "('data:<media type>;base64,<data>') are supported.",
            where,
        )
    return head[5:-7], data


def _image_block(part: dict, where: str) -> dict:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise _bad(f"Missing required parameter: '{where}.image_url.url'.", f"{where}.image_url")
    if url.startswith("data:"):
        media_type, data = _data_url(url, f"{where}.image_url.url")
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise _bad(
            f"Invalid value for '{where}.image_url.url': expected an http(s) URL or a data URL.",
            f"{where}.image_url.url",
        )
    return _copy_cache_control(part, {"type": "image", "source": source})


def _file_block(part: dict, where: str) -> dict:
    spec = part.get("file") if isinstance(part.get("file"), dict) else {}
    data = spec.get("file_data")
    if not isinstance(data, str) or not data.startswith("data:"):
        raise _bad(
            f"Invalid value for '{where}.file': Anthropic needs the file inline as 'file_data' "
            "(a base64 data URL); uploaded 'file_id's cannot be used.",
            f"{where}.file",
        )
    media_type, payload = _data_url(data, f"{where}.file.file_data")
    block = {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": payload},
    }
    return _copy_cache_control(part, block)


def _content_blocks(content: Any, where: str, allowed: tuple[str, ...]) -> list[dict]:
    """OpenAI message content (string or parts) -> Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(
            f"Invalid value for '{where}': expected a string or an array of content parts.",
            where,
        )
    blocks = []
    for k, part in enumerate(content):
        pw = f"{where}[{k}]"
        ptype = part.get("type") if isinstance(part, dict) else None
        if ptype not in allowed:
            raise _bad(
                f"Invalid value for '{pw}.type': {ptype!r} content parts are not supported here "
                f"for Anthropic models (supported: {', '.join(allowed)}).",
                f"{pw}.type",
            )
        if ptype == "text":
            block = _text_block(part, pw)
        elif ptype == "refusal":
            refusal = part.get("refusal")
            block = (
                {"type": "text", "text": refusal} if isinstance(refusal, str) and refusal else None
            )
        elif ptype == "image_url":
            block = _image_block(part, pw)
        else:
            block = _file_block(part, pw)
        if block is not None:
            blocks.append(block)
    return blocks


def _tool_use_blocks(calls: Any, where: str) -> list[dict]:
    if not isinstance(calls, list):
        raise _bad(f"Invalid value for '{where}': expected an array.", where)
    blocks = []
    for j, call in enumerate(calls):
        cw = f"{where}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"Missing required parameter: '{cw}.function.name'.", f"{cw}.function")
        args = fn.get("arguments") or "{}"
        try:
            parsed = json_decode(args) if isinstance(args, str) else args
        except msgspec.DecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise _bad(
                f"Invalid value for '{cw}.function.arguments': expected a JSON object "
                "(Anthropic tool inputs are objects).",
                f"{cw}.function.arguments",
            )
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise _bad(f"Missing required parameter: '{cw}.id'.", f"{cw}.id")
        blocks.append({"type": "tool_use", "id": call_id, "name": fn["name"], "input": parsed})
    return blocks


def _tool_result_block(msg: dict, where: str) -> dict:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"Missing required parameter: '{where}.tool_call_id'.", f"{where}.tool_call_id")
    content = msg.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    else:
        blocks = _content_blocks(content, f"{where}.content", ("text", "image_url"))
        if blocks:
            block["content"] = blocks
    return block


def _system_text(content: Any, where: str) -> list[dict]:
    return _content_blocks(content, where, ("text",))


def _translate_messages(messages: Any) -> tuple[list[dict], list[dict]]:
    if not isinstance(messages, list):
        raise _bad("Invalid value for 'messages': expected an array.", "messages")
    system: list[dict] = []
    out: list[dict] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"Invalid value for '{where}': expected an object.", where)
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            system.extend(_system_text(content, f"{where}.content"))
            continue
        if role == "user":
            blocks = _content_blocks(content, f"{where}.content", ("text", "image_url", "file"))
        elif role == "assistant":
            blocks = _content_blocks(content, f"{where}.content", ("text", "refusal"))
            if msg.get("tool_calls"):
                blocks.extend(_tool_use_blocks(msg["tool_calls"], f"{where}.tool_calls"))
            if blocks:  # signed thinking goes back first, as Anthropic answered it
                blocks[:0] = thinking_blocks_of(msg, where)
        elif role == "tool":
            role = "user"
            blocks = [_tool_result_block(msg, where)]
        else:
            raise _bad(
                f"Invalid value for '{where}.role': {role!r} (expected system, developer, user, "
                "assistant or tool).",
                f"{where}.role",
            )
        if not blocks:
            continue  # an empty turn: Anthropic refuses empty content
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)  # Anthropic wants alternating turns
        else:
            out.append({"role": role, "content": blocks})
    for m in out:  # a lone plain text block is sent as a string, the compact form
        c = m["content"]
        if len(c) == 1 and c[0]["type"] == "text" and len(c[0]) == 2:
            m["content"] = c[0]["text"]
    return system, out


def _translate_tools(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        raise _bad("Invalid value for 'tools': expected an array.", "tools")
    out = []
    for j, tool in enumerate(tools):
        where = f"tools[{j}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _bad(
                f"Invalid value for '{where}.type': only 'function' tools can be translated "
                "for Anthropic models.",
                f"{where}.type",
            )
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"Missing required parameter: '{where}.function.name'.", f"{where}.function")
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        entry: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            entry["description"] = fn["description"]
        entry["input_schema"] = schema
        _copy_cache_control(tool, entry)
        out.append(entry)
    return out


def _translate_tool_choice(choice: Any, parallel: Any) -> dict | None:
    if choice is None:
        out: dict[str, Any] | None = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _bad(
            "Invalid value for 'tool_choice': expected 'auto', 'none', 'required' or "
            "{'type': 'function', 'function': {'name': ...}}.",
            "tool_choice",
        )
    if parallel is False:
        out = out or {"type": "auto"}
        out["disable_parallel_tool_use"] = True
    return out


def _needs_thinking_block(messages: list[dict]) -> bool:
    """Whether the last assistant turn used tools without its signed thinking block in
    front (Anthropic refuses such a turn while thinking is on)."""
    for m in reversed(messages):
        if m["role"] != "assistant":
            continue
        content = m["content"]
        if not isinstance(content, list):
            return False
        if not any(b.get("type") == "tool_use" for b in content):
            return False
        return content[0].get("type") not in ("thinking", "redacted_thinking")
    return False


def _thinking_on(thinking: Any) -> bool:
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _structured_output(doc: dict, caps: Capabilities, out: dict, system: list[dict],
                       thinking: bool) -> None:
    """``response_format`` as Anthropic structured output, the output tool or a system
    instruction (``out``'s tools, tool choice and output config; ``system`` for the text)."""
    fmt = output_format(doc)
    if fmt is None:
        return
    mode = caps.structured_output
    if mode == "native" and fmt.schema is not None:
        out.setdefault("output_config", {})["format"] = {
            "type": "json_schema", "schema": strict_schema(fmt.schema)}
        return
    if mode == "prompt":
        system.append({"type": "text", "text": json_instruction(fmt)})
        return
    # The output tool (json_object on a native model too: native outputs need a closed
    # schema, and any JSON object has none).
    name, description, schema = fmt.tool()
    tools = out.setdefault("tools", [])
    tools.append({"name": name, "description": description, "input_schema": schema})
    choice = out.get("tool_choice")
    ctype = choice.get("type") if choice else None
    if thinking:
        # Anthropic refuses a forced tool while thinking: the tool is offered and asked for.
        if ctype == "none":
            out["tool_choice"] = {**choice, "type": "auto"}
    elif ctype in (None, "auto", "any", "none"):
        forced = {"type": "any"} if len(tools) > 1 and ctype != "none" else {
            "type": "tool", "name": name}
        if choice and choice.get("disable_parallel_tool_use"):
            forced["disable_parallel_tool_use"] = True
        out["tool_choice"] = forced
        if forced["type"] == "tool":
            return
    else:
        return  # the client forces one of its own tools: its answer is that call
    system.append({"type": "text", "text": (
        f"When you have the final answer, give it by calling the `{OUTPUT_TOOL}` tool (its "
        "input is the answer) instead of answering in text.")})


def openai_to_anthropic_request(doc: dict, model_id: str | None, default_max_tokens: int,
                                caps: Capabilities | None = None) -> dict:
    """An OpenAI chat-completions request dict -> an Anthropic Messages request dict.

    ``model_id`` None leaves ``model`` out (Vertex AI names it in the URL); ``caps`` is
    the model's structured-output and reasoning techniques (from ``model_id`` when None).
    Raises HelixError(INVALID_REQUEST) naming the parameter it cannot translate.
    """
    for param, used in REJECTED_PARAMS.items():
        if param in doc and used(doc[param]):
            raise _unsupported(param, _REJECT_WHY[param])
    if caps is None:
        caps = capabilities(model_id or "", "anthropic")
    system, messages = _translate_messages(doc.get("messages"))
    out: dict[str, Any] = {}
    if model_id is not None:
        out["model"] = model_id
    max_tokens = doc.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = doc.get("max_tokens")
    out["max_tokens"] = default_max_tokens if max_tokens is None else max_tokens
    tools = doc.get("tools")
    check_tool_names(tools)
    if tools:
        out["tools"] = _translate_tools(tools)
        choice = _translate_tool_choice(doc.get("tool_choice"), doc.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    # Reasoning: the client's own `thinking` wins; reasoning_effort otherwise.
    thinking = doc.get("thinking")
    effort = effort_of(doc, caps)
    if thinking is None and effort is not None:
        sent = out["max_tokens"] if isinstance(out["max_tokens"], int) else default_max_tokens
        thinking, level = anthropic_thinking(effort, caps, sent, doc)
        if thinking is not None and _needs_thinking_block(messages):
            thinking = None  # the client did not send the turn's thinking back: no thinking
        if level is not None:
            out["output_config"] = {"effort": level}
    if thinking is not None:
        out["thinking"] = thinking
    _structured_output(doc, caps, out, system, _thinking_on(thinking))
    client_config = doc.get("output_config")
    if isinstance(client_config, dict):
        out["output_config"] = {**out.get("output_config", {}), **client_config}
    elif client_config is not None:
        out["output_config"] = client_config  # Anthropic says what is wrong with it
    if system:
        if any(len(b) > 2 for b in system):  # cache_control: keep the blocks
            out["system"] = system
        else:
            out["system"] = "\n\n".join(b["text"] for b in system)
    out["messages"] = messages
    stop = doc.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = stop
    elif stop is not None and not isinstance(stop, list):
        raise _bad("Invalid value for 'stop': expected a string or an array of strings.", "stop")
    for key in ("temperature", "top_p"):
        if doc.get(key) is not None:
            out[key] = doc[key]
    user = doc.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if doc.get("stream"):
        out["stream"] = True
    for key, value in doc.items():  # Anthropic-native extensions (top_k, ...)
        if key not in _HANDLED and key not in DROPPED_PARAMS and key not in REJECTED_PARAMS:
            out[key] = value
    return out
