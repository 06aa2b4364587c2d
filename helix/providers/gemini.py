"""Google Gemini: OpenAI chat/embeddings <-> ``generateContent`` / ``embedContent``.

The Gemini API (``type: gemini``, key in ``x-goog-api-key``) and Gemini models
on Vertex AI (``helix.providers.vertex``) share this translation; only the URL
and the auth differ.  The module-level functions are pure (ids and ``created``
are arguments) so they are tested byte for byte; the adapter methods supply
the clock and the random ids.

Request: OpenAI ``messages`` -> ``contents`` (roles ``user``/``model``,
consecutive turns of one role merged), system/developer -> ``systemInstruction``,
sampling knobs -> ``generationConfig``, tools -> ``functionDeclarations``,
``response_format`` -> ``responseMimeType`` with ``responseJsonSchema`` (the schema as
sent) or, for models the registry marks ``openapi``, ``responseSchema`` (the schema
cleaned to Gemini's OpenAPI subset), ``reasoning_effort`` -> ``thinkingConfig``
(``thinkingBudget`` for Gemini 2.5, ``thinkingLevel`` for Gemini 3, with
``includeThoughts``); see :mod:`helix.providers.features`.
Response: each candidate's text parts -> ``content``, thought parts ->
``reasoning_content``, ``functionCall`` parts -> ``tool_calls``, ``usageMetadata`` ->
``usage``.  A function call's ``thoughtSignature`` (Gemini 3 refuses a tool turn sent
back without it) rides in its tool call id, after :data:`SIGNATURE_SEP`, and goes back
on the ``functionCall`` part when the client sends the turn back; a Gemini 3 call that
comes back without one gets Google's documented stand-in (:data:`UNSIGNED`).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import secrets
import struct
import time
from urllib.parse import urlsplit

import msgspec

from helix._fast import SSEParser
from helix.errors import ErrorKind, HelixError
from helix.providers.base import Deployment, TranslatingAdapter, UpstreamRequest
from helix.providers.catalog import ProviderSpec
from helix.providers.features import (
    GEMINI_BUDGETS,
    GEMINI_LEVELS,
    Capabilities,
    capabilities,
    effort_of,
    output_format,
)
from helix.providers.openai import base_headers, upstream_error
from helix.schema.gemini import (
    GenerateContentResponse,
    UsageMetadata,
    embed_decoder,
    error_decoder,
    error_list_decoder,
    response_decoder,
)
from helix.schema.openai import SERVICE_TIER, system_fingerprint
from helix.schema.stream import ABSENT
from helix.schema.usage import CACHED, REASONING, Usage

__all__ = [
    "SPECS",
    "GeminiAdapter",
    "GeminiStreamRelay",
    "clean_schema",
    "gemini_error",
    "gemini_to_openai_embeddings",
    "gemini_to_openai_response",
    "openai_to_gemini_embeddings",
    "openai_to_gemini_request",
]

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"

# --------------------------------------------------------------------------- request


def _bad(message: str, param: str | None = None) -> HelixError:
    return HelixError(ErrorKind.INVALID_REQUEST, message, param=param)


# JSON-schema keywords Gemini's Schema (an OpenAPI 3.0 subset) accepts; anything
# else ($schema, additionalProperties, strict, $id, examples ...) is dropped.
_SCHEMA_KEYS = frozenset(
    {
        "description",
        "title",
        "nullable",
        "maxItems",
        "minItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "propertyOrdering",
    }
)
_STRING_FORMATS = frozenset({"enum", "date-time"})
_NUMBER_FORMATS = frozenset({"int32", "int64", "float", "double"})
_MAX_SCHEMA_DEPTH = 64


def clean_schema(schema, defs: dict | None = None, _depth: int = 0, _refs: tuple = ()) -> dict:
    """An OpenAI/JSON schema as Gemini's ``Schema``: local ``$ref`` inlined,
    ``type: [x, "null"]`` -> ``nullable``, ``const`` -> ``enum``, types upper-cased,
    unsupported keys (``additionalProperties``, ``$schema`` ...) dropped."""
    if not isinstance(schema, dict):
        return {}
    if _depth > _MAX_SCHEMA_DEPTH:
        raise _bad("The JSON schema is nested too deeply for Gemini.")
    if defs is None:
        defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in _refs:
            raise _bad(f"Gemini does not support recursive schemas ($ref {ref!r}).")
        target = defs.get(name)
        if not isinstance(target, dict):
            raise _bad(f"Unresolvable $ref {ref!r} in the JSON schema.")
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return clean_schema(merged, defs, _depth + 1, (*_refs, name))
    out: dict = {}
    nullable = False
    t = schema.get("type")
    if isinstance(t, list):
        kinds = [x for x in t if x != "null"]
        nullable = len(kinds) < len(t)
        if len(kinds) == 1:
            t = kinds[0]
        elif kinds:
            out["anyOf"] = [{"type": k.upper()} for k in kinds if isinstance(k, str)]
            t = None
        else:
            t = None
    if isinstance(t, str) and t != "null":
        out["type"] = t.upper()
    elif t == "null":
        nullable = True
    for key, value in schema.items():
        if key in _SCHEMA_KEYS:
            out[key] = value
    fmt = schema.get("format")
    if (t == "string" and fmt in _STRING_FORMATS) or (
        t in ("number", "integer") and fmt in _NUMBER_FORMATS
    ):
        out["format"] = fmt
    if "const" in schema:
        out["enum"] = [schema["const"]]
    elif isinstance(schema.get("enum"), list):
        out["enum"] = schema["enum"]
    if "enum" in out and "type" not in out:
        out["type"] = "STRING"
    props = schema.get("properties")
    if isinstance(props, dict):
        out["properties"] = {
            k: clean_schema(v, defs, _depth + 1, _refs) for k, v in props.items()
        }
        if "type" not in out:
            out["type"] = "OBJECT"
        req = schema.get("required")
        if isinstance(req, list):
            kept = [r for r in req if r in props]
            if kept:
                out["required"] = kept
    items = schema.get("items")
    if isinstance(items, dict):
        out["items"] = clean_schema(items, defs, _depth + 1, _refs)
    alts = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(alts, list):
        cleaned = []
        for alt in alts:
            if isinstance(alt, dict) and alt.get("type") == "null" and len(alt) == 1:
                nullable = True
            else:
                cleaned.append(clean_schema(alt, defs, _depth + 1, _refs))
        if len(cleaned) == 1 and "type" not in out:
            for k, v in cleaned[0].items():
                out.setdefault(k, v)
        elif cleaned:
            out["anyOf"] = cleaned
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        for sub in all_of:
            for k, v in clean_schema(sub, defs, _depth + 1, _refs).items():
                if k == "properties" and isinstance(out.get("properties"), dict):
                    out["properties"] = {**out["properties"], **v}
                elif k == "required" and isinstance(out.get("required"), list):
                    out["required"] = out["required"] + [r for r in v if r not in out["required"]]
                else:
                    out.setdefault(k, v)
    if nullable:
        out["nullable"] = True
    return out


def _text_of(content, param: str) -> str:
    """A system/tool message's content as plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
            else:
                raise _bad(f"Only text parts are supported in {param}.", f"{param}[{i}]")
        return "\n".join(texts)
    raise _bad(f"Invalid content in {param}.", param)


def _data_url(url: str, param: str) -> dict:
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise _bad("Data URLs must be base64-encoded ('data:<mime>;base64,...').", param)
    mime = head[5:-7] or "application/octet-stream"
    return {"inlineData": {"mimeType": mime, "data": data}}


def _file_url(url: str) -> dict:
    path = urlsplit(url).path
    mime = mimetypes.guess_type(path)[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3", "flac": "audio/flac", "ogg": "audio/ogg"}


def _user_parts(content, param: str) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        raise _bad(f"Invalid content in {param}.", param)
    parts: list[dict] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        if isinstance(part, str):
            parts.append({"text": part})
            continue
        if not isinstance(part, dict):
            raise _bad("Each content part must be an object.", where)
        kind = part.get("type")
        if kind == "text" or (kind is None and "text" in part):
            parts.append({"text": part.get("text") or ""})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise _bad("image_url.url is required.", f"{where}.image_url.url")
            parts.append(_data_url(url, where) if url.startswith("data:") else _file_url(url))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            fmt = audio.get("format") or "wav"
            parts.append(
                {
                    "inlineData": {
                        "mimeType": _AUDIO_MIME.get(fmt, f"audio/{fmt}"),
                        "data": audio.get("data") or "",
                    }
                }
            )
        elif kind == "file":
            f = part.get("file") or {}
            data = f.get("file_data")
            if isinstance(data, str) and data.startswith("data:"):
                parts.append(_data_url(data, where))
            elif isinstance(data, str) and data:
                mime = mimetypes.guess_type(f.get("filename") or "")[0] or "application/pdf"
                parts.append({"inlineData": {"mimeType": mime, "data": data}})
            elif isinstance(f.get("file_id"), str):
                parts.append({"fileData": {"mimeType": "application/pdf", "fileUri": f["file_id"]}})
            else:
                raise _bad("file parts need file_data or file_id.", where)
        else:
            raise _bad(f"Content part type {kind!r} is not supported by Gemini.", where)
    return parts


def _tool_call_args(arguments, param: str) -> dict:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        args = _decode(arguments)
    except (msgspec.DecodeError, TypeError):
        raise _bad("Tool call arguments must be a JSON object.", param) from None
    if not isinstance(args, dict):
        raise _bad("Tool call arguments must be a JSON object.", param)
    return args


def _function_response(content, param: str) -> dict:
    text = _text_of(content, param)
    try:
        value = _decode(text) if text else ""
    except msgspec.DecodeError:
        value = text
    # Gemini wants an object; anything else is wrapped as {"output": ...} (its convention).
    return value if isinstance(value, dict) else {"output": value}


# Google's documented stand-in for a function call Gemini 3 did not sign (a turn from another
# model, or a client that rewrote the tool call id): Gemini 3 refuses an unsigned one.
UNSIGNED = "skip_thought_signature_validator"


def _contents(messages, system: list[str], sign: bool = False) -> list[dict]:
    contents: list[dict] = []
    names: dict[str, str] = {}  # tool_call id -> function name, from assistant turns

    def add(role: str, parts: list[dict]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, msg in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad("Each message must be an object.", param)
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            text = _text_of(content, f"{param}.content")
            if text:
                system.append(text)
        elif role == "user":
            add("user", _user_parts(content, f"{param}.content"))
        elif role == "assistant":
            parts: list[dict] = []
            if isinstance(content, str):
                if content:
                    parts.append({"text": content})
            elif isinstance(content, list):
                for j, part in enumerate(content):
                    if isinstance(part, dict):
                        text = part.get("text") if "text" in part else part.get("refusal")
                        if isinstance(text, str) and text:
                            parts.append({"text": text})
                    elif isinstance(part, str):
                        parts.append({"text": part})
                    else:
                        raise _bad("Invalid assistant content part.", f"{param}.content[{j}]")
            calls = msg.get("tool_calls") or []
            for j, call in enumerate(calls):
                where = f"{param}.tool_calls[{j}]"
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise _bad("Each tool call needs function.name.", where)
                if isinstance(call.get("id"), str):
                    names[call["id"]] = fn["name"]
                part: dict = {
                    "functionCall": {
                        "name": fn["name"],
                        "args": _tool_call_args(fn.get("arguments"), f"{where}.function"),
                    }
                }
                signature = _signature_of(call.get("id"))
                if signature:
                    part["thoughtSignature"] = signature
                elif sign and j == 0:
                    part["thoughtSignature"] = UNSIGNED
                parts.append(part)
            add("model", parts)
        elif role in ("tool", "function"):
            call_id = msg.get("tool_call_id")
            name = names.get(call_id) if isinstance(call_id, str) else None
            if name is None:
                name = msg.get("name")
            if not isinstance(name, str) or not name:
                raise _bad(
                    f"No assistant tool call with id {call_id!r} precedes this tool message.",
                    f"{param}.tool_call_id",
                )
            resp = _function_response(content, f"{param}.content")
            add("user", [{"functionResponse": {"name": name, "response": resp}}])
        else:
            raise _bad(f"Unsupported message role {role!r}.", f"{param}.role")
    return contents


def _tools(doc: dict) -> list[dict] | None:
    tools = doc.get("tools")
    if not tools:
        return None
    decls = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad("Each tool needs type 'function' and function.name.", f"tools[{i}]")
        decl: dict = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, dict):
            cleaned = clean_schema(params)
            # Gemini refuses an OBJECT without properties: a no-argument function has none.
            if cleaned.get("properties") or cleaned.get("type") not in (None, "OBJECT"):
                decl["parameters"] = cleaned
        decls.append(decl)
    return [{"functionDeclarations": decls}]


def _tool_config(choice) -> dict | None:
    if choice is None:
        return None
    if choice == "auto":
        mode: dict = {"mode": "AUTO"}
    elif choice == "none":
        mode = {"mode": "NONE"}
    elif choice == "required":
        mode = {"mode": "ANY"}
    elif isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise _bad("tool_choice.function.name is required.", "tool_choice")
        mode = {"mode": "ANY", "allowedFunctionNames": [name]}
    else:
        raise _bad(f"Invalid tool_choice {choice!r}.", "tool_choice")
    return {"functionCallingConfig": mode}


# A function call's thought signature travels in its tool call id: "<id>" + SEP + the
# signature in URL-safe base64 without padding, so the id stays [A-Za-z0-9_-] (what
# Anthropic accepts, should the conversation move to Claude).
SIGNATURE_SEP = "__ts__"


def _signature_of(call_id) -> str | None:
    if isinstance(call_id, str):
        _, sep, packed = call_id.partition(SIGNATURE_SEP)
        if sep and packed:
            try:
                raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
            except (binascii.Error, ValueError):
                return None
            return base64.b64encode(raw).decode("ascii")
    return None


def _with_signature(call_id: str, signature: str) -> str:
    try:
        raw = base64.b64decode(signature)
    except (binascii.Error, ValueError):
        return call_id  # not base64: Google's signatures always are
    packed = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    return f"{call_id}{SIGNATURE_SEP}{packed}"


def _json_schema(schema: dict) -> dict:
    """A client's JSON Schema as ``responseJsonSchema`` takes it (meta keys dropped)."""
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id", "strict")}


def _generation_config(doc: dict, caps: Capabilities) -> dict:
    cfg: dict = {}
    max_tokens = doc.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = doc.get("max_tokens")
    if max_tokens is not None:
        cfg["maxOutputTokens"] = max_tokens
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ):
        if doc.get(src) is not None:
            cfg[dst] = doc[src]
    stop = doc.get("stop")
    if isinstance(stop, str):
        cfg["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        cfg["stopSequences"] = stop
    if doc.get("n") is not None:
        cfg["candidateCount"] = doc["n"]
    fmt = output_format(doc)
    if fmt is not None:
        cfg["responseMimeType"] = "application/json"
        if fmt.schema is not None and caps.structured_output == "openapi":
            cfg["responseSchema"] = clean_schema(fmt.schema)
        elif fmt.schema is not None:
            cfg["responseJsonSchema"] = _json_schema(fmt.schema)
    effort = effort_of(doc, caps)
    if effort is not None:
        thoughts = effort != "none"
        if caps.reasoning == "budget":
            cfg["thinkingConfig"] = {"thinkingBudget": GEMINI_BUDGETS[effort],
                                     "includeThoughts": thoughts}
        else:
            cfg["thinkingConfig"] = {"thinkingLevel": GEMINI_LEVELS[effort],
                                     "includeThoughts": thoughts}
    return cfg


def openai_to_gemini_request(doc: dict, caps: Capabilities | None = None) -> dict:
    """An OpenAI chat request (decoded JSON) as a Gemini ``GenerateContentRequest`` body;
    ``caps`` the model's structured-output and reasoning techniques (the newest Gemini's
    when None)."""
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array.", "messages")
    caps = caps or capabilities("", "gemini")
    system: list[str] = []
    out: dict = {"contents": _contents(messages, system, caps.reasoning == "level")}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    tools = _tools(doc)
    if tools:
        out["tools"] = tools
    tool_config = _tool_config(doc.get("tool_choice")) if tools else None
    if tool_config:
        out["toolConfig"] = tool_config
    gen = _generation_config(doc, caps)
    if gen:
        out["generationConfig"] = gen
    return out


# -------------------------------------------------------------------------- response

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "MODEL_ARMOR": "content_filter",
}


def finish_reason(reason: str | None, has_calls: bool) -> str:
    if has_calls and reason in (None, "STOP"):
        return "tool_calls"
    return _FINISH.get(reason or "STOP", "stop")


def usage_of(u: UsageMetadata) -> Usage:
    """Gemini counts thoughts apart from candidates and tool-use prompts apart from the
    prompt; Usage has them all in output / input."""
    completion = u.candidates_token_count + u.thoughts_token_count
    prompt = u.prompt_token_count + u.tool_use_prompt_token_count
    return Usage(input=prompt, output=completion, cache_read=u.cached_content_token_count,
                 reasoning=u.thoughts_token_count, total=u.total_token_count,
                 reported=CACHED | REASONING)


def openai_usage(u: UsageMetadata) -> dict:
    return usage_of(u).to_openai()


def _tool_call(fc, call_id: str, signature: str | None = None) -> dict:
    call_id = fc.id or call_id
    if signature:
        call_id = _with_signature(call_id, signature)
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": fc.name, "arguments": _encode(fc.args or {}).decode()},
    }


def gemini_to_openai_response(
    resp: GenerateContentResponse, model: str, created: int, id_base: str
) -> tuple[dict, Usage | None]:
    """A decoded ``GenerateContentResponse`` as an OpenAI ``chat.completion`` dict (and
    its usage).

    ``id_base`` makes the completion id (``chatcmpl-<id_base>``) and tool-call
    ids (``call_<id_base>_<n>``) when Google gives none.
    """
    choices = []
    n = 0
    for cand in sorted(resp.candidates, key=lambda c: c.index):
        texts = []
        thoughts = []
        calls = []
        if cand.content is not None:
            for part in cand.content.parts:
                if part.function_call is not None:
                    calls.append(_tool_call(part.function_call, f"call_{id_base}_{n}",
                                            part.thought_signature))
                    n += 1
                elif part.text is not None and part.thought:
                    thoughts.append(part.text)
                elif part.text is not None:
                    texts.append(part.text)
        message: dict = {
            "role": "assistant", "content": "".join(texts) if texts else None, "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        elif message["content"] is None:
            message["content"] = ""
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        choices.append(
            {
                "index": cand.index,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(cand.finish_reason, bool(calls)),
            }
        )
    if not choices:  # the prompt itself was blocked
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None,
                "finish_reason": "content_filter",
            }
        )
    out = {
        "id": f"chatcmpl-{resp.response_id or id_base}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    usage = None
    if resp.usage_metadata is not None:
        usage = usage_of(resp.usage_metadata)
        out["usage"] = usage.to_openai()
    out["service_tier"] = SERVICE_TIER
    out["system_fingerprint"] = system_fingerprint(resp.model_version or model)
    return out, usage


def _decode_response(provider: str, body: bytes) -> GenerateContentResponse:
    try:
        resp = response_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise HelixError(
            ErrorKind.UPSTREAM_PROTOCOL,
            f"{provider} returned a response Helix could not read ({exc}).",
        ) from None
    if resp.error is not None:
        raise _error_from(provider, resp.error.code or 500, resp.error, [])
    return resp


# ------------------------------------------------------------------------- streaming


class GeminiStreamRelay:
    """``streamGenerateContent?alt=sse`` events -> the calls of a stream sink.

    Gemini sends whole parts: text pieces and complete function calls.  Each
    event becomes one delta per candidate (the role on a candidate's first;
    tool calls complete, with their running index); a finish follows a
    candidate's ``finishReason``; ``close`` finishes what is left, adds the
    usage and ends the stream.
    """

    __slots__ = (
        "_calls",
        "_created",
        "_finished",
        "_id_base",
        "_model",
        "_parser",
        "_provider",
        "_seen",
        "_sink",
        "_started",
        "usage",
    )
    passthrough = False

    def __init__(self, provider: str, model: str, created: int, id_base: str, sink) -> None:
        self._provider = provider
        self._id_base = id_base
        self._model = model
        self._created = created
        self._sink = sink
        self._parser = SSEParser()
        self._started: set[int] = set()
        self._finished: dict[int, str] = {}
        self._calls: dict[int, int] = {}  # candidate index -> tool calls sent
        self._seen = False
        self.usage: Usage | None = None

    def _event(self, resp: GenerateContentResponse, out: list[bytes]) -> None:
        sink = self._sink
        if not self._seen:
            self._seen = True
            out.append(sink.start(f"chatcmpl-{self._id_base}", self._model, self._created,
                                  backend=resp.model_version or self._model))
        if resp.usage_metadata is not None:
            self.usage = usage_of(resp.usage_metadata)
        for cand in resp.candidates:
            idx = cand.index
            role = idx not in self._started
            if role:
                self._started.add(idx)
            texts = []
            thoughts = []
            calls = []
            if cand.content is not None:
                for part in cand.content.parts:
                    if part.function_call is not None:
                        n = self._calls.get(idx, 0)
                        self._calls[idx] = n + 1
                        call = _tool_call(part.function_call, f"call_{self._id_base}_{idx}_{n}",
                                          part.thought_signature)
                        call["index"] = n
                        calls.append(call)
                    elif part.text and part.thought:
                        thoughts.append(part.text)
                    elif part.text:
                        texts.append(part.text)
            if role or texts or calls or thoughts:
                if texts:
                    content = "".join(texts)
                elif role:
                    content = None if calls else ""
                else:
                    content = ABSENT
                out.append(sink.delta(idx, role=role, content=content, tools=calls or None,
                                      reasoning="".join(thoughts) or None))
            if cand.finish_reason and idx not in self._finished:
                self._finish(idx, finish_reason(cand.finish_reason, idx in self._calls), out)
        feedback = resp.prompt_feedback
        blocked = feedback is not None and feedback.block_reason
        if blocked and not resp.candidates and 0 not in self._finished:
            # The prompt was blocked: nothing else will come.
            if 0 not in self._started:
                self._started.add(0)
                out.append(sink.delta(0, role=True, content=""))
            self._finish(0, "content_filter", out)

    def _finish(self, idx: int, reason: str, out: list[bytes]) -> None:
        self._finished[idx] = reason
        out.append(self._sink.finish(idx, reason))

    def _events(self, events) -> bytes:
        out: list[bytes] = []
        for _name, data in events:
            if not data or data == b"[DONE]":
                continue
            if data.startswith(b"["):  # a JSON-array error body sent as an event
                raise gemini_error(self._provider, 500, [], data)
            self._event(_decode_response(self._provider, data), out)
        return b"".join(out)

    def feed(self, data: bytes) -> bytes:
        events = self._parser.feed(data)
        return self._events(events) if events else b""

    def close(self) -> bytes:
        out = [self._events(self._parser.feed(b"\n\n"))]
        if not self._seen:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL,
                f"{self._provider} ended the stream without sending a response.",
            )
        tail: list[bytes] = []
        for idx in sorted(self._started):
            if idx not in self._finished:
                self._finish(idx, "tool_calls" if idx in self._calls else "stop", tail)
        out.extend(tail)
        if self.usage is not None:
            out.append(self._sink.usage(self.usage))
        out.append(self._sink.end())
        return b"".join(out)


# ------------------------------------------------------------------------ embeddings


def _embedding_inputs(doc: dict) -> tuple[list[str], bool]:
    """The texts to embed and whether the client sent a single string."""
    raw = doc.get("input")
    if isinstance(raw, str):
        return [raw], True
    if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        return raw, False
    raise _bad(
        "Gemini embeddings take a string or an array of strings (not token arrays).", "input"
    )


def openai_to_gemini_embeddings(doc: dict, model_id: str) -> tuple[str, dict]:
    """``(method, body)``: ``embedContent`` for one string, ``batchEmbedContents`` for a list."""
    texts, single = _embedding_inputs(doc)
    dims = doc.get("dimensions")
    if single:
        body: dict = {"content": {"parts": [{"text": texts[0]}]}}
        if dims is not None:
            body["outputDimensionality"] = dims
        return "embedContent", body
    requests = []
    for text in texts:
        req: dict = {"model": f"models/{model_id}", "content": {"parts": [{"text": text}]}}
        if dims is not None:
            req["outputDimensionality"] = dims
        requests.append(req)
    return "batchEmbedContents", {"requests": requests}


def _embedding_value(values: list[float], b64: bool):
    if b64:
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
    return values


def openai_embeddings(
    vectors: list[list[float]], model: str, b64: bool, prompt_tokens: int = 0
) -> dict:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _embedding_value(v, b64)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def gemini_to_openai_embeddings(body: bytes, model: str, b64: bool, provider: str) -> dict:
    try:
        resp = embed_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise HelixError(
            ErrorKind.UPSTREAM_PROTOCOL,
            f"{provider} returned embeddings Helix could not read ({exc}).",
        ) from None
    if resp.embeddings is not None:
        vectors = [e.values for e in resp.embeddings]
    elif resp.embedding is not None:
        vectors = [resp.embedding.values]
    else:
        raise HelixError(ErrorKind.UPSTREAM_PROTOCOL, f"{provider} returned no embeddings.")
    return openai_embeddings(vectors, model, b64)




# ----------------------------------------------------------------------------- errors

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def _error_from(provider: str, status: int, err, headers) -> HelixError:
    message = err.message or f"{provider} returned HTTP {status}"
    etype = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = err.status.lower() if err.status else None
    return HelixError.upstream(status, message, type=etype, code=code, headers=headers)


def google_error(body: bytes):
    """The ``error`` of Google's ``{"error": {"code", "message", "status"}}`` envelope (or
    the first of a list of them); None when the body is anything else."""
    try:
        if body[:1] == b"[":
            found = error_list_decoder.decode(body)
            env = found[0] if found else None
        elif body:
            env = error_decoder.decode(body)
        else:
            env = None
    except msgspec.DecodeError:
        return None
    err = env.error if env is not None else None
    # Google's always has a numeric code or a status name besides the message; Anthropic's
    # (relayed by Vertex for Claude) has a type instead.
    if err is not None and err.message and (err.code is not None or err.status):
        return err
    return None


def gemini_error(
    provider: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> HelixError:
    """Google's error envelope as a HelixError with the provider's status and message, in
    OpenAI's shape; any other body is passed on as the OpenAI family does."""
    err = google_error(body)
    if err is not None:
        extra = [(k, v) for k, v in headers if k == b"retry-after"]
        return _error_from(provider, status, err, extra)
    return upstream_error(provider, status, headers, body)


# --------------------------------------------------------------------------- adapter


def _new_id() -> str:
    return secrets.token_hex(12)


def _decode_body(body: bytes) -> dict:
    try:
        doc = _decode(body)
    except msgspec.DecodeError as exc:
        raise _bad(f"We could not parse the JSON body of your request ({exc}).") from None
    if not isinstance(doc, dict):
        raise _bad("The request body must be a JSON object.")
    return doc


def model_path(model_id: str) -> str:
    return model_id[7:] if model_id.startswith("models/") else model_id


class GeminiAdapter(TranslatingAdapter):
    """Adapter for the Gemini API (stateless: one instance per process)."""

    def _target(self, dep: Deployment, method: str, stream: bool = False) -> bytes:
        path = f"{dep.base_path}/v1beta/models/{model_path(dep.model_id)}:{method}"
        return (path + "?alt=sse" if stream else path).encode()

    def _headers(self, dep: Deployment) -> list[tuple[bytes, bytes]]:
        return dep.static_headers

    def chat_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        return self.chat_request_doc(dep, view, _decode_body(body))

    def chat_request_doc(self, dep: Deployment, view, doc: dict) -> UpstreamRequest:
        out = openai_to_gemini_request(doc, capabilities(dep.model_id, "gemini"))
        stream = bool(view.stream)
        method = "streamGenerateContent" if stream else "generateContent"
        return UpstreamRequest(
            b"POST", self._target(dep, method, stream), self._headers(dep), _encode(out)
        )

    def embeddings_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        doc = _decode_body(body)
        method, out = openai_to_gemini_embeddings(doc, model_path(dep.model_id))
        return UpstreamRequest(b"POST", self._target(dep, method), self._headers(dep), _encode(out))

    def chat_document(self, dep: Deployment, body: bytes) -> tuple[dict, Usage | None]:
        resp = _decode_response(dep.provider, body)
        return gemini_to_openai_response(resp, dep.model, int(time.time()), _new_id())

    def embeddings_response(self, dep: Deployment, body: bytes) -> bytes:
        # Floats; forward turns them into base64 when the client asked for that.
        out = gemini_to_openai_embeddings(body, dep.model, False, dep.provider)
        return _encode(out)

    def stream_relay(self, dep: Deployment, view, sink) -> GeminiStreamRelay:
        return GeminiStreamRelay(dep.provider, dep.model, int(time.time()), _new_id(), sink)

    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError:
        return gemini_error(dep.provider, status, headers, body)


def gemini_headers(cfg) -> list[tuple[bytes, bytes]]:
    headers = base_headers(cfg.headers)
    if cfg.api_key:
        headers.append((b"x-goog-api-key", cfg.api_key.encode("latin-1")))
    return headers


SPECS: dict[str, ProviderSpec] = {
    "gemini": ProviderSpec(
        type="gemini",
        adapter=GeminiAdapter(),
        headers=gemini_headers,
        default_base_url=GEMINI_BASE_URL,
        key_env="GEMINI_API_KEY",
        default_models=("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash",
                        "text-embedding-004"),
    )
}
