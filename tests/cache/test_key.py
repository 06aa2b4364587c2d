"""Cache key canonicalization: pure, order-insensitive, default-insensitive, tenant-separated."""

import msgspec
import pytest

from helix.cache.key import canonical, model_identity, namespace, storage_key


def key(body, model="mock/gpt-4o-mini", tenant="k:a", include=None, seed=None, endpoint="chat"):
    return storage_key(endpoint, msgspec.json.encode(body), model, tenant, include, seed)


MSG = [{"role": "user", "content": "hi"}]


def test_field_order_does_not_matter_at_any_depth():
    a = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2}'
    b = b'{"temperature":0.2,"messages":[{"content":"hi","role":"user"}],"model":"m"}'
    assert storage_key("chat", a, "p/m", "t") == storage_key("chat", b, "p/m", "t")


def test_list_order_matters():
    two = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert key({"messages": two}) != key({"messages": two[::-1]})


@pytest.mark.parametrize(
    "extra",
    [
        {"temperature": 1},
        {"temperature": 1.0},
        {"top_p": 1},
        {"n": 1},
        {"presence_penalty": 0},
        {"frequency_penalty": 0.0},
        {"logprobs": False},
        {"parallel_tool_calls": True},
        {"seed": None},
        {"stream": True},
        {"stream_options": {"include_usage": True}},
        {"user": "someone"},
        {"store": True},
        {"metadata": {"x": "y"}},
    ],
)
def test_defaults_nulls_and_answer_neutral_fields_are_dropped(extra):
    assert key({"model": "m", "messages": MSG}) == key({"model": "m", "messages": MSG, **extra})


@pytest.mark.parametrize(
    "extra",
    [{"temperature": 0}, {"temperature": 0.7}, {"n": 2}, {"logprobs": True}, {"seed": 1},
     {"max_tokens": 5}, {"tools": []}],
)
def test_fields_that_change_the_answer_change_the_key(extra):
    assert key({"model": "m", "messages": MSG}) != key({"model": "m", "messages": MSG, **extra})


def test_bool_default_is_not_matched_by_a_number():
    # logprobs: 0 is not the documented default False (the provider would reject or differ).
    assert key({"messages": MSG, "logprobs": 0}) != key({"messages": MSG})


def test_integral_floats_equal_ints():
    assert key({"messages": MSG, "max_tokens": 5}) == key({"messages": MSG, "max_tokens": 5.0})


def test_body_model_is_replaced_by_the_resolved_model():
    assert key({"model": "alias", "messages": MSG}) == key({"model": "target", "messages": MSG})
    assert key({"messages": MSG}, model="a/x") != key({"messages": MSG}, model="b/x")


def test_tenant_separation_and_sharing():
    body = {"model": "m", "messages": MSG}
    assert key(body, tenant="k:a") != key(body, tenant="k:b")
    assert key(body, tenant="") != key(body, tenant=None)  # anonymous is not "shared"
    assert key(body, tenant=None) == key(body, tenant=None)


def test_include_list_selects_fields():
    inc = ("model", "messages", "temperature")
    a = key({"model": "m", "messages": MSG, "temperature": 0.5, "max_tokens": 3}, include=inc)
    b = key({"model": "m", "messages": MSG, "temperature": 0.5, "max_tokens": 9}, include=inc)
    c = key({"model": "m", "messages": MSG, "temperature": 0.6}, include=inc)
    assert a == b != c
    # defaults still apply inside an include list
    assert key({"messages": MSG, "temperature": 1}, include=inc) == key(
        {"messages": MSG}, include=inc
    )


def test_endpoint_is_part_of_the_key():
    body = {"model": "m", "input": "hi"}
    assert key(body, endpoint="chat") != key(body, endpoint="embeddings")
    assert key({**body, "encoding_format": "float"}, endpoint="embeddings") == key(
        body, endpoint="embeddings"
    )


def test_seed_namespaces_the_key():
    body = {"messages": MSG}
    plain, s1, s2 = key(body), key(body, seed="one"), key(body, seed="two")
    assert plain.startswith("_/")
    assert s1.startswith(namespace("one") + "/") and s1 != s2
    assert plain.split("/")[1] == s1.split("/")[1]  # same request hash, other namespace
    assert len(plain.split("/")[1]) == 64


def test_canonical_document_is_deterministic_and_sorted():
    doc = canonical("chat", {"b": 1, "a": {"y": 1, "x": 2}}, "p/m", "t")
    assert doc == b'{"b":{"a":{"x":2,"y":1},"b":1},"e":"chat","m":"p/m","t":"t"}'


def test_canonical_rejects_non_objects():
    with pytest.raises(ValueError):
        canonical("chat", b"[1]", "p/m", "t")


class _Dep:
    def __init__(self, provider, model_id):
        self.provider, self.model_id = provider, model_id


def test_model_identity_ignores_candidate_order():
    a, b = _Dep("azure", "gpt-4o"), _Dep("openai", "gpt-4o")
    assert model_identity([a, b]) == model_identity([b, a]) == "azure/gpt-4o|openai/gpt-4o"
    assert model_identity([b]) == "openai/gpt-4o"
