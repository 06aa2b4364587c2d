"""Usage: the one token count; OpenAI's usage read straight into it equals the dict route."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from helix.schema.usage import CACHED, REASONING, Usage, read_openai_usage

counts = st.integers(min_value=0, max_value=10**7)


@given(prompt=counts, completion=counts, total=st.none() | counts,
       cached=st.none() | counts, reasoning=st.none() | counts,
       prompt_details=st.booleans(), completion_details=st.booleans())
@settings(max_examples=300, deadline=None)
def test_read_openai_usage_equals_from_openai(prompt, completion, total, cached, reasoning,
                                              prompt_details, completion_details):
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    if total is not None:
        usage["total_tokens"] = total
    if prompt_details:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if completion_details:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    body = json.dumps({"id": "x", "choices": [], "usage": usage}).encode()
    assert read_openai_usage(body) == Usage.from_openai(usage)


def test_absent_or_malformed_usage_is_none():
    assert read_openai_usage(b'{"id":"x"}') is None
    assert read_openai_usage(b'{"usage":null}') is None
    assert read_openai_usage(b'{"usage":[1]}') is None
    assert read_openai_usage(b"not json") is None


def test_renderings():
    u = Usage(input=10, output=4, cache_read=3, cache_write=2, reasoning=1,
              reported=CACHED | REASONING)
    assert u.to_openai() == {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                             "prompt_tokens_details": {"cached_tokens": 3,
                                                       "cache_write_tokens": 2},
                             "completion_tokens_details": {"reasoning_tokens": 1}}
    assert u.to_anthropic() == {"input_tokens": 5, "cache_creation_input_tokens": 2,
                                "cache_read_input_tokens": 3, "output_tokens": 4}
    assert Usage.from_responses({"input_tokens": 7, "output_tokens": 2, "total_tokens": 9,
                                 "input_tokens_details": {"cached_tokens": 1}}).cache_read == 1


# -- checked_openai_usage: the pool's JSON check and the usage read in one decode ----------

from helix.errors import HelixError  # noqa: E402
from helix.schema.jsonsafe import MAX_DEPTH, check_json_object  # noqa: E402
from helix.schema.usage import checked_openai_usage  # noqa: E402


def _two_passes(body: bytes):
    """What forward did before: the pool's check, then the usage read."""
    try:
        check_json_object(body, "m", "upstream ")
    except HelixError as err:
        return ("error", err.status, err.message, err.code)
    return ("ok", read_openai_usage(body))


def _one_pass(body: bytes):
    try:
        usage = checked_openai_usage(body, "m", "upstream ")
    except HelixError as err:
        return ("error", err.status, err.message, err.code)
    return ("ok", usage)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=12,
)
_usages = st.none() | _json_values | st.fixed_dictionaries(
    {"prompt_tokens": counts | st.text(max_size=2), "completion_tokens": counts},
    optional={"total_tokens": counts, "prompt_tokens_details": st.none() | st.fixed_dictionaries(
        {"cached_tokens": st.none() | counts})})


@st.composite
def _bodies(draw):
    kind = draw(st.integers(0, 4))
    if kind == 0:  # an answer, its usage of any shape
        doc = {"id": "x", "choices": draw(_json_values), "usage": draw(_usages)}
        return json.dumps(doc).encode()
    if kind == 1:  # any JSON (arrays, scalars, objects without usage)
        return json.dumps(draw(_json_values)).encode()
    if kind == 2:  # nested past the limit, inside or outside usage
        depth = draw(st.integers(MAX_DEPTH - 2, MAX_DEPTH + 3))
        inner = "[" * depth + "]" * depth
        where = draw(st.sampled_from(['{"a": %s}', '{"usage": %s}', '{"usage": {"x": %s}}']))
        return (where % inner).encode()
    if kind == 3:  # cut short, or with something after
        body = json.dumps({"usage": {"prompt_tokens": 1, "completion_tokens": 2}}).encode()
        cut = draw(st.integers(0, len(body)))
        return body[:cut] + draw(st.sampled_from([b"", b" x", b"}", b"\x00"]))
    return draw(st.binary(max_size=40))  # anything at all


@given(body=_bodies())
@settings(max_examples=600, deadline=None)
def test_checked_usage_is_the_check_then_the_read(body):
    assert _one_pass(body) == _two_passes(body)


def test_checked_usage_examples():
    ok = b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4}}'
    assert _one_pass(ok) == ("ok", read_openai_usage(ok)) and _one_pass(ok)[1].input == 3
    assert _one_pass(b'{"usage": 5}') == ("ok", None)  # a usage of another shape: no usage
    assert _one_pass(b"[1]")[0] == "error" and "not a JSON object" in _one_pass(b"[1]")[2]
    assert _one_pass(b"{") == _two_passes(b"{") and _one_pass(b"{")[1] == 502
    deep = b'{"a": ' + b"[" * 200 + b"]" * 200 + b"}"
    assert _one_pass(deep) == _two_passes(deep) and "nests JSON" in _one_pass(deep)[2]
