"""Extra mock knobs for tail latency and prompt caching, kept apart from the wire formats.

The route modules build replies from requests (pure); these functions adjust the controls
before a reply is built and the reply after it, so no provider module changes:

* :func:`slow_sometimes` -- ``x-mock-slow-p: P`` with ``x-mock-slow-ms: MS`` (CLI:
  ``--slow-p``, ``--slow-ms``): a fraction P of requests wait MS milliseconds before the
  response head (for a stream that is also its first chunk) instead of
  ``x-mock-latency-ms``.  The draw uses the mock's seeded generator (``--seed``).
* :class:`PromptCache` -- ``--prompt-cache N``: the mock remembers the last N prompt
  prefixes it served on OpenAI chat (LRU, per mock process, like a provider's per-machine
  cache) and reports ``usage.prompt_tokens_details.cached_tokens`` for a prefix it has seen
  (the prefix: ``tools`` and the leading system/developer messages, at least
  :data:`MIN_PREFIX_TOKENS` tokens; tokens are the mock's whitespace words).  The Anthropic
  wire format caches ``cache_control`` prefixes on its own (``anthropic_routes``).
* :func:`note_closed` -- the request record of a connection the client closed before the
  reply was complete gets ``"closed_early": <time>`` (a cancelled hedge, an abandoned
  stream); a completed reply gets ``"completed": <time>``.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any

import orjson

from .base import Controls, MockRequest, Reply, StreamReply, count_tokens

__all__ = ["MIN_PREFIX_TOKENS", "PromptCache", "note_closed", "note_completed", "slow_sometimes"]

MIN_PREFIX_TOKENS = 1


def slow_sometimes(ctl: Controls, headers: dict[str, str], defaults: tuple[float, float],
                   rnd) -> None:
    """Apply the probabilistic slow-head knob to ``ctl`` (raises ValueError on a bad value)."""
    p, ms = defaults
    v = headers.get("x-mock-slow-p")
    if v is not None:
        p = float(v)
    v = headers.get("x-mock-slow-ms")
    if v is not None:
        ms = float(v)
    if p > 0 and ms > 0 and rnd() < p:
        ctl.latency_ms = ms


def note_closed(record: dict[str, Any] | None) -> None:
    if record is not None and "completed" not in record:
        record["closed_early"] = time.time()


def note_completed(record: dict[str, Any] | None) -> None:
    if record is not None:
        record["completed"] = time.time()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content
                        if isinstance(p, dict | str))
    return ""


def _key(parts: list[Any]) -> bytes:
    return hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS),
                           digest_size=16).digest()


class PromptCache:
    """Prefixes this mock process has served (LRU of ``capacity``); see the module doc."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.seen: OrderedDict[bytes, None] = OrderedDict()

    def _hit(self, key: bytes) -> bool:
        if key in self.seen:
            self.seen.move_to_end(key)
            return True
        return False

    def _store(self, key: bytes) -> None:
        self.seen[key] = None
        self.seen.move_to_end(key)
        while len(self.seen) > self.capacity:
            self.seen.popitem(last=False)

    # -- OpenAI chat ---------------------------------------------------------------------
    def openai_cached(self, body: dict[str, Any]) -> int:
        msgs = body.get("messages") or []
        lead = []
        for m in msgs:
            if isinstance(m, dict) and m.get("role") in ("system", "developer"):
                lead.append(m)
            else:
                break
        tools = body.get("tools") or []
        if not lead and not tools:
            return 0
        tokens = sum(count_tokens(_text(m.get("content"))) for m in lead)
        if tokens < MIN_PREFIX_TOKENS:
            return 0
        key = _key(["openai", tools, lead])
        if self._hit(key):
            return tokens
        self._store(key)
        return 0

    # -- applying it to a reply ---------------------------------------------------------------
    def apply(self, req: MockRequest, reply: Reply | StreamReply) -> Reply | StreamReply:
        body = req.json
        if not isinstance(body, dict) or reply.status != 200:
            return reply
        if req.path.endswith("/chat/completions"):
            cached = self.openai_cached(body)
            if cached:
                _rewrite(reply, _openai_usage(cached))
        return reply


def _openai_usage(cached: int):
    def fix(doc: dict[str, Any]) -> bool:
        usage = doc.get("usage")
        if not isinstance(usage, dict):
            return False
        details = usage.setdefault("prompt_tokens_details", {})
        details["cached_tokens"] = min(cached, usage.get("prompt_tokens", cached))
        return True

    return fix


def _rewrite(reply: Reply | StreamReply, fix) -> None:
    if isinstance(reply, Reply):
        doc = orjson.loads(reply.body)
        if fix(doc):
            reply.body = orjson.dumps(doc)
        return
    for i, event in enumerate(reply.events):
        head, sep, data = event.partition(b"data: ")
        if not sep or not data.startswith(b"{") or b'"usage"' not in data:
            continue
        doc = orjson.loads(data)
        if fix(doc):
            reply.events[i] = head + sep + orjson.dumps(doc) + b"\n\n"
            return
