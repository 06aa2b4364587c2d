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
