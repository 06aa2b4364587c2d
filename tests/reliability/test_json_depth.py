"""Deeply nested JSON (issue 14.4): a 400 from the shared decode helper, never a 500."""

import json
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix.errors import HelixError
from helix.schema.jsonsafe import MAX_DEPTH, decode_client, decode_upstream, depth_exceeds
from helix.schema.openai import chat_request_decoder, decode_request, embeddings_request_decoder


def nested(n: int, kind: str = "list") -> str:
    if kind == "list":
        return "[" * n + "]" * n
    return '{"a":' * n + "1" + "}" * n


def chat(extra: str = "", content: str = '"hi"') -> bytes:
    return (
        '{"model":"gpt-4o","messages":[{"role":"user","content":' + content + "}]" + extra + "}"
    ).encode()


def reference_depth(doc) -> int:
    if isinstance(doc, list):
        return 1 + max((reference_depth(x) for x in doc), default=0)
    if isinstance(doc, dict):
        return 1 + max((reference_depth(x) for x in doc.values()), default=0)
    return 0


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000, 5000, 100_000])
@pytest.mark.parametrize("kind", ["list", "object"])
@pytest.mark.parametrize("where", ["unknown", "content", "message"])
def test_deep_json_anywhere_is_a_400(levels, kind, where):
    deep = nested(levels, kind)
    body = {
        "unknown": chat(',"x_vendor":' + deep),
        "content": chat(content=deep),
        "message": ('{"model":"m","messages":[' + deep + "]}").encode(),
    }[where]
    with pytest.raises(HelixError) as info:
        decode_request(chat_request_decoder, body)
    err = info.value
    assert err.status == 400 and err.type == "invalid_request_error", err
    assert err.code in ("json_too_deep", "invalid_type"), err


def test_embeddings_too():
    body = b'{"model":"e","input":' + nested(3000).encode() + b"}"
    with pytest.raises(HelixError) as info:
        decode_request(embeddings_request_decoder, body)
    assert info.value.status == 400 and info.value.code == "json_too_deep"


def test_depth_at_the_limit_passes():
    # The body's own object and the messages array add levels around the content.
    body = chat(',"x":' + nested(MAX_DEPTH - 1))
    assert decode_request(chat_request_decoder, body).model == "gpt-4o"
    assert not depth_exceeds(body)
    assert depth_exceeds(chat(',"x":' + nested(MAX_DEPTH)))


def test_brackets_inside_strings_do_not_count():
    text = json.dumps("[" * 5000 + '\\"{' * 300)
    body = chat(content=text)
    assert not depth_exceeds(body)
    decode_request(chat_request_decoder, body)


def test_upstream_deep_is_502():
    with pytest.raises(HelixError) as info:
        decode_upstream(nested(50_000).encode())
    assert info.value.status == 502
    with pytest.raises(HelixError) as info:
        decode_upstream(b"<html>oops</html>")
    assert info.value.status == 502
    with pytest.raises(HelixError) as info:
        decode_client(b'{"a":' * 300 + b"1" + b"}" * 300)
    assert info.value.status == 400


json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=4),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=12))
def test_depth_matches_a_reference(doc, limit):
    body = msgspec.json.encode(doc)
    assert depth_exceeds(body, limit) == (reference_depth(doc) > limit)


def test_wide_bodies_are_checked_quickly_enough():
    # Not a timing assertion: a sanity bound far above the expected few ms.
    body = ("[" + ",".join(["[[1],[2,{\"a\":[3]}]]"] * 50_000) + "]").encode()
    t = time.perf_counter()
    assert not depth_exceeds(body)
    assert time.perf_counter() - t < 5.0
