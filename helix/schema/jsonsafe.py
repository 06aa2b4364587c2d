"""JSON from outside, decoded safely: bounded nesting, every failure a HelixError.

msgspec decodes with the C stack and raises ``RecursionError`` (not a
``DecodeError``) somewhere below the interpreter's recursion limit, and the
Python code that walks decoded documents (cache keys, translators, schema
conversion) recurses too.  So nesting is bounded explicitly, well below both:
:data:`MAX_DEPTH` levels, checked once where a body enters Helix.  A body
within the bound can be decoded, walked and re-encoded anywhere downstream
without a ``RecursionError``.

The check (``helix._fast.depth_exceeds``) costs one bracket count (a C loop, or two
``bytes.count`` calls in the twin) for ordinary bodies (a body with
fewer opening brackets than the bound cannot be deeper than it); only bodies
with more brackets get the exact scan, which runs in C-implemented
primitives (a regex that blanks strings, ``bytes.translate``,
``itertools.accumulate``) at tens of nanoseconds per bracket.

Client bodies that fail are 400s (:func:`decode_client`, used by
``schema.openai.decode_request``); provider bodies are 502s
(:func:`decode_upstream`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from helix._fast import depth_exceeds
from helix._fast.scan_py import MAX_DEPTH
from helix.errors import ErrorKind, HelixError

__all__ = [
    "MAX_DEPTH",
    "check_json_object",
    "decode_client",
    "decode_upstream",
    "depth_exceeds",
    "too_deep_client",
    "too_deep_upstream",
    "upstream_error",
]

# MAX_DEPTH (128) and depth_exceeds(body, limit=MAX_DEPTH) live with the bracket count they
# start from (helix/_fast/scan_py.py; compiled in scan_c: the usual body is one C call).


def too_deep_client(limit: int = MAX_DEPTH) -> HelixError:
    return HelixError(
        ErrorKind.INVALID_REQUEST,
        f"The request body nests JSON more than {limit} levels deep.",
        code="json_too_deep",
    )


def too_deep_upstream(label: str = "the provider", limit: int = MAX_DEPTH) -> HelixError:
    return HelixError(
        ErrorKind.UPSTREAM_PROTOCOL,
        f"The answer from {label} nests JSON more than {limit} levels deep.",
        code="upstream_invalid_response",
    )


def decode_client(body: bytes, decoder: msgspec.json.Decoder | None = None) -> Any:
    """Decode a client body (``decoder``'s type, or any JSON); 400 on any failure.

    ``msgspec.ValidationError`` is re-raised as is (it is a ``DecodeError``):
    callers that turn it into a 400 naming the parameter catch it first.
    """
    try:
        doc = decoder.decode(body) if decoder is not None else msgspec.json.decode(body)
    except RecursionError:
        raise too_deep_client() from None
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError as exc:
        raise HelixError(
            ErrorKind.INVALID_REQUEST,
            f"We could not parse the JSON body of your request ({exc}).",
        ) from None
    if depth_exceeds(body):
        raise too_deep_client()
    return doc


def decode_upstream(
    body: bytes, decoder: msgspec.json.Decoder | None = None, label: str = "the provider"
) -> Any:
    """Decode a provider body; 502 (``upstream_invalid_response``) on any failure."""
    try:
        doc = decoder.decode(body) if decoder is not None else msgspec.json.decode(body)
    except RecursionError:
        raise too_deep_upstream(label) from None
    except msgspec.DecodeError as exc:
        raise HelixError(
            ErrorKind.UPSTREAM_PROTOCOL,
            f"The answer from {label} is not valid JSON ({exc}).",
            code="upstream_invalid_response",
        ) from None
    if depth_exceeds(body):
        raise too_deep_upstream(label)
    return doc


class _AnyObject(msgspec.Struct):
    """Any JSON object: every member is skipped, so checking allocates nothing."""


_object_checker = msgspec.json.Decoder(_AnyObject)


def check_json_object(body: bytes, label: str = "the provider", prefix: str = "") -> None:
    """A provider's answer must be one JSON object, sanely nested; else a 502 naming
    ``prefix + label`` (two arguments: no string is built for an answer that is fine)."""
    try:
        _object_checker.decode(body)
    except RecursionError:
        raise too_deep_upstream(prefix + label) from None
    except msgspec.DecodeError as exc:
        what = "a JSON object" if isinstance(exc, msgspec.ValidationError) else "valid JSON"
        raise HelixError(
            ErrorKind.UPSTREAM_PROTOCOL,
            f"The answer from {prefix}{label} is not {what}.",
            code="upstream_invalid_response",
        ) from None
    if depth_exceeds(body):
        raise too_deep_upstream(prefix + label)


def upstream_error(error, dep, status: int, headers, body: bytes) -> HelixError:
    """``error(dep, status, headers, body)`` (an adapter's ``error``) for a provider's
    error answer, safe from nesting bombs.

    The adapters decode the error body to find the provider's message; a body
    nested too deep would raise ``RecursionError`` there, so it is answered
    with the provider's status and a message of Helix's own instead.
    """
    try:
        return error(dep, status, headers, body)
    except RecursionError:
        return HelixError.upstream(
            status, f"The provider answered {status} with a body nested too deep to read."
        )
