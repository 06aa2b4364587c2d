"""Prompt-prefix keys for prompt-cache affinity (``Api.prefix_key``; routing/affinity.py).

A key names the part of a request that a provider's prompt cache can reuse across
requests, computed from the client's own bytes (``msgspec.Raw`` slices, never re-encoded):

1. the client's ``prompt_cache_key`` (OpenAI chat and Responses) when it sent one;
2. else, with Anthropic-style ``cache_control`` breakpoints, everything up to and
   including the *first* element carrying one (in the provider's order: tools, system,
   messages) -- the first breakpoint is the stable one (a system prompt, tool list); later
   ones move with the conversation;
3. else the tools and the system prompt (chat: the leading system/developer messages;
   Messages: ``system``; Responses: ``instructions``);
4. else the first message / input item, so the turns of one conversation stay together.

0 means "no key" (an empty request); the balancer then uses its strategy.
"""

from __future__ import annotations

import msgspec

from helix.routing.affinity import prefix_hash

__all__ = ["chat_key", "messages_key", "responses_key"]

_CC = b'"cache_control"'
_LEAD_ROLES = frozenset({"system", "developer"})


class _Role(msgspec.Struct):
    role: str = ""


class _ChatExtra(msgspec.Struct):
    tools: msgspec.Raw = msgspec.Raw(b"")
    prompt_cache_key: str | None = None


class _CacheKey(msgspec.Struct):
    prompt_cache_key: str | None = None


_role = msgspec.json.Decoder(_Role).decode
_chat_extra = msgspec.json.Decoder(_ChatExtra).decode
_cache_key = msgspec.json.Decoder(_CacheKey).decode


def _explicit(key: str) -> int:
    return prefix_hash((b"k", key.encode("utf-8", "surrogatepass")))


def _through_breakpoint(parts: list) -> list | None:
    for i, p in enumerate(parts):
        if _CC in bytes(p):
            return parts[: i + 1]
    return None


def chat_key(body: bytes, messages: list) -> int:
    try:
        extra = _chat_extra(body)
    except msgspec.DecodeError:
        return 0
    if extra.prompt_cache_key:
        return _explicit(extra.prompt_cache_key)
    tools = [extra.tools] if len(extra.tools) else []
    cut = _through_breakpoint([*tools, *messages])
    if cut is not None:
        return prefix_hash((b"c", *cut))
    lead = 0
    for m in messages:
        try:
            if _role(m).role not in _LEAD_ROLES:
                break
        except msgspec.DecodeError:
            break
        lead += 1
    parts = [*tools, *messages[:lead]] or messages[:1]
    return prefix_hash((b"c", *parts)) if parts else 0


def messages_key(view) -> int:
    tools = list(view.tools or ())
    system = [view.system] if len(view.system) else []
    messages = view.messages
    cut = _through_breakpoint([*tools, *system, *messages])
    if cut is not None:
        return prefix_hash((b"m", *cut))
    parts = [*tools, *system] or messages[:1]
    return prefix_hash((b"m", *parts)) if parts else 0


def responses_key(body: bytes, view) -> int:
    try:
        explicit = _cache_key(body).prompt_cache_key
    except msgspec.DecodeError:
        return 0
    if explicit:
        return _explicit(explicit)
    tools = list(view.tools or ())
    instructions = [view.instructions] if len(view.instructions) else []
    parts = [*tools, *instructions]
    if not parts and len(view.input):
        raw = bytes(view.input)
        if raw.startswith(b"["):
            items = msgspec.json.decode(raw, type=list[msgspec.Raw])
            parts = items[:1]
        else:
            parts = [raw]
    return prefix_hash((b"r", *parts)) if parts else 0
