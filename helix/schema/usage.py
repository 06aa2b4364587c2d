"""Usage: the one token count every part of Helix reads, whatever the wire format.

Providers count differently (Anthropic keeps cache reads and writes apart from
``input_tokens``; OpenAI folds cached tokens into ``prompt_tokens``; Gemini
counts thoughts apart from candidates).  Each translator turns its provider's
count into a :class:`Usage` once; limits, cost, metrics, traces, the access
line, Helicone and the cache read fields from it, and each client dialect
renders it in its own shape (:meth:`Usage.to_openai`, the Anthropic and
Responses renderers in ``helix/api``).

Conventions: ``input`` is every prompt token (cache reads and cache writes
included), ``output`` every completion token (reasoning included).
``total`` is the provider's own total when it gave one.  ``reported`` says
which optional details the provider reported, so that an OpenAI client sees
``prompt_tokens_details`` / ``completion_tokens_details`` exactly when there
was something to say (a count of 0 that was reported is still reported).
"""

from __future__ import annotations

import msgspec

from helix.schema.jsonsafe import check_json_object, depth_exceeds, too_deep_upstream

__all__ = ["CACHED", "REASONING", "Usage", "checked_openai_usage", "read_openai_usage"]

CACHED = 1  # the provider reported cached prompt tokens (possibly 0)
REASONING = 2  # the provider reported reasoning tokens (possibly 0)


class Usage(msgspec.Struct, kw_only=True):
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    total: int | None = None
    reported: int = 0

    @property
    def tokens(self) -> int:
        """Every token of the request: the provider's total, else input + output."""
        return self.total if self.total is not None else self.input + self.output

    @property
    def uncached_input(self) -> int:
        """Prompt tokens neither read from nor written to a prompt cache."""
        return max(0, self.input - self.cache_read - self.cache_write)

    def to_openai(self) -> dict:
        """OpenAI's ``usage`` object."""
        out: dict = {
            "prompt_tokens": self.input,
            "completion_tokens": self.output,
            "total_tokens": self.tokens,
        }
        if self.reported & CACHED:
            details = {"cached_tokens": self.cache_read}
            if self.cache_write:  # OpenAI's field for prompt-cache writes (Anthropic, Bedrock)
                details["cache_write_tokens"] = self.cache_write
            out["prompt_tokens_details"] = details
        if self.reported & REASONING:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning}
        return out

    @classmethod
    def from_openai(cls, usage) -> Usage | None:
        """OpenAI's ``usage`` object (a dict from a body or chunk); None when unusable."""
        if not isinstance(usage, dict):
            return None
        try:
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            total = usage.get("total_tokens")
            total = int(total) if total is not None else None
            reported = 0
            cached = written = reasoning = 0
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict):
                reported |= CACHED
                cached = int(details.get("cached_tokens") or 0)
                written = int(details.get("cache_write_tokens") or 0)
            details = usage.get("completion_tokens_details")
            if isinstance(details, dict):
                reported |= REASONING
                reasoning = int(details.get("reasoning_tokens") or 0)
        except (TypeError, ValueError):
            return None
        cached = min(cached, prompt)
        return cls(input=prompt, output=completion, cache_read=cached,
                   cache_write=min(written, prompt - cached), reasoning=reasoning, total=total,
                   reported=reported)

    @classmethod
    def from_responses(cls, usage) -> Usage | None:
        """The Responses API's ``usage`` object; None when unusable."""
        if not isinstance(usage, dict):
            return None
        try:
            prompt = int(usage.get("input_tokens") or 0)
            completion = int(usage.get("output_tokens") or 0)
            total = usage.get("total_tokens")
            details = usage.get("input_tokens_details") or {}
            out_details = usage.get("output_tokens_details") or {}
            return cls(input=prompt, output=completion,
                       cache_read=min(int(details.get("cached_tokens") or 0), prompt),
                       reasoning=int(out_details.get("reasoning_tokens") or 0),
                       total=int(total) if total is not None else None,
                       reported=CACHED | REASONING)
        except (TypeError, ValueError, AttributeError):
            return None

    def to_anthropic(self) -> dict:
        """Anthropic's ``usage`` object (input tokens exclude cache reads and writes)."""
        return {
            "input_tokens": self.uncached_input,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": self.output,
        }


# --- reading OpenAI's usage straight into Usage (no dict in between) -----------------------


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class _OpenAIUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None


class _WithUsage(msgspec.Struct):
    usage: _OpenAIUsage | None = None


_openai_usage_decoder = msgspec.json.Decoder(_WithUsage)


def read_openai_usage(body: bytes) -> Usage | None:
    """The usage of an OpenAI JSON answer or chunk (only ``usage`` is decoded; every other
    member is skipped); None when absent or not OpenAI's shape."""
    try:
        u = _openai_usage_decoder.decode(body).usage
    except msgspec.DecodeError:  # ValidationError included: ``usage`` of the wrong type
        return None
    return _usage(u)


def checked_openai_usage(body: bytes, label: str = "the provider",
                         prefix: str = "") -> Usage | None:
    """:func:`helix.schema.jsonsafe.check_json_object` and :func:`read_openai_usage` in one
    decode: the same 502 for an answer that is not one sanely nested JSON object, else its
    usage.  The decode that reads ``usage`` parses (and so validates) every member it skips
    and fails on anything but an object; when it fails, the check runs alone to raise the
    right error, or to pass an answer whose only fault is a ``usage`` of another shape."""
    try:
        u = _openai_usage_decoder.decode(body).usage
    except (msgspec.DecodeError, RecursionError):
        check_json_object(body, label, prefix)
        return None
    if depth_exceeds(body):
        raise too_deep_upstream(prefix + label)
    return _usage(u)


def _usage(u: _OpenAIUsage | None) -> Usage | None:
    if u is None:
        return None
    reported = 0
    cached = reasoning = 0
    if u.prompt_tokens_details is not None:
        reported |= CACHED
        cached = u.prompt_tokens_details.cached_tokens or 0
    if u.completion_tokens_details is not None:
        reported |= REASONING
        reasoning = u.completion_tokens_details.reasoning_tokens or 0
    return Usage(input=u.prompt_tokens, output=u.completion_tokens,
                 cache_read=min(cached, u.prompt_tokens), reasoning=reasoning,
                 total=u.total_tokens, reported=reported)
