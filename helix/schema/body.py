"""Rewriting a client's JSON body without re-encoding it.

A native pass-through sends the client's body upstream as it was sent, with
only ``model`` resolved to the deployment's id.  :func:`replace_model` swaps
the value of the top-level ``"model"`` member in place, so every other byte
(whitespace, key order, number spelling, escapes) reaches the provider
unchanged and a large body is not decoded and encoded again.  When the member
cannot be found unambiguously by a byte search (it is written with escapes, or
the same ``"model": "<value>"`` pair also appears nested), the body is decoded,
rewritten and encoded instead.
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["replace_model", "set_members"]

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode


def replace_model(body: bytes, old: str, new: str) -> bytes:
    """``body`` with its top-level ``model`` (whose value is ``old``) set to ``new``."""
    value = _encode(old)
    for sep in (b'"model":', b'"model": '):  # compact JSON, and Python's json.dumps
        needle = sep + value
        i = body.find(needle)
        if i >= 0:
            if body.find(needle, i + 1) >= 0:
                break  # ambiguous: decide below
            j = i + len(sep)
            return body[:j] + _encode(new) + body[j + len(value):]
    pattern = re.compile(rb'"model"\s*:\s*' + re.escape(_encode(old)))
    found = pattern.findall(body, 0)
    if len(found) == 1:
        m = pattern.search(body)
        start = m.end() - len(_encode(old))
        return body[:start] + _encode(new) + body[m.end():]
    return set_members(body, {"model": new})


def set_members(body: bytes, members: dict, drop: tuple[str, ...] = ()) -> bytes:
    """``body`` decoded, top-level ``members`` set (a value of None removes it), ``drop``
    removed, and encoded again (key order kept)."""
    doc = _decode(body)
    for key in drop:
        doc.pop(key, None)
    for key, value in members.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return _encode(doc)
