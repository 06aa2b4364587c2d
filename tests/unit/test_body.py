"""replace_model: only the top-level model changes, every other byte stays as sent."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from helix.schema.body import replace_model, set_members


def test_compact_and_spaced_bodies_keep_every_other_byte():
    body = b'{"max_tokens": 5, "messages": [{"content": "caf\\u00e9 1.50"}], "model": "a"}'
    assert replace_model(body, "a", "b") == body.replace(b'"model": "a"', b'"model": "b"')
    body = b'{"model":"a","temperature":1.0}'
    assert replace_model(body, "a", "bb") == b'{"model":"bb","temperature":1.0}'


def test_ambiguous_or_escaped_falls_back_to_decoding():
    body = b'{"model":"a","tools":[{"input":{"model":"a"}}]}'
    out = json.loads(replace_model(body, "a", "b"))
    assert out["model"] == "b" and out["tools"][0]["input"]["model"] == "a"
    body = b'{"mod\\u0065l":"a"}'
    assert json.loads(replace_model(body, "a", "b")) == {"model": "b"}


def test_set_members_sets_drops_and_keeps_order():
    out = set_members(b'{"model":"m","stream":true,"x":1}', {"v": 2, "x": None},
                      drop=("model",))
    assert out == b'{"stream":true,"v":2}'


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8), max_size=5),
       st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=10),
       st.booleans())
@settings(max_examples=200, deadline=None)
def test_the_result_is_the_body_with_only_model_changed(extra, old, new, spaced):
    doc = {**{k: v for k, v in extra.items() if k != "model"}, "model": old}
    body = json.dumps(doc, separators=None if spaced else (",", ":")).encode()
    assert json.loads(replace_model(body, old, new)) == {**doc, "model": new}
