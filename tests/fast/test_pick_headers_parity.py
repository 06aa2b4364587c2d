"""The compiled provider-header filter and its pure-Python twin must give the same headers,
or the same error, and leave the same names remembered (helix/_fast/head_c.pyx,
head_py.py; the classifier is the forward phase's own)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from helix._fast import pick_headers_c, pick_headers_py
from helix.phases import forward

IMPLS = [pick_headers_py] + ([pick_headers_c] if pick_headers_c is not None else [])
RID = b"x-upstream-request-id"

NAME = st.one_of(
    st.sampled_from([b"content-type", b"x-request-id", b"request-id", b"x-amzn-requestid",
                     b"openai-version", b"retry-after", b"x-ratelimit-remaining-requests",
                     b"anthropic-ratelimit-tokens-limit", b"server", b"set-cookie", b""]),
    st.binary(max_size=12),
)
PAIR = st.tuples(NAME, st.binary(max_size=8))
ODD_ITEM = st.one_of(st.tuples(NAME), st.tuples(NAME, st.binary(), st.binary()),
                     st.lists(st.binary(), min_size=2, max_size=2), st.just((["unhashable"], b"v")))
UPSTREAM = st.one_of(
    st.lists(PAIR, max_size=12),
    st.lists(st.one_of(PAIR, ODD_ITEM), max_size=6),
    st.lists(PAIR, max_size=6).map(tuple),
)
OWN = st.sampled_from([frozenset(), frozenset({b"request-id"}), frozenset({b"x-request-id"})])


def test_compiled_twin_is_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert pick_headers_c is not None


def run(fn, upstream, route, own):
    kinds: dict = {}

    def classify(name):
        # forward._kind, remembering in this run's own table
        kind = forward._kind(name)
        kinds[name] = kind
        return kind

    try:
        out = ("ok", fn(kinds, classify, RID, upstream, route, own))
    except Exception as exc:
        out = type(exc)
    return out, kinds


@settings(max_examples=500, deadline=None)
@given(UPSTREAM, st.lists(PAIR, max_size=3), OWN)
def test_same_headers_errors_and_table(upstream, route, own):
    results = [run(fn, upstream, route, own) for fn in IMPLS]
    assert all(r == results[0] for r in results), results


def test_forward_relays_what_the_client_may_see():
    got = forward.response_headers(
        [(b"content-type", b"application/json"), (b"x-request-id", b"req_1"),
         (b"set-cookie", b"a=b"), (b"x-ratelimit-remaining-tokens", b"9")],
        [(b"x-helix-provider", b"p")], frozenset({b"x-request-id"}))
    assert got == [(b"content-type", b"application/json"), (RID, b"req_1"),
                   (b"x-request-id", b"req_1"), (b"x-ratelimit-remaining-tokens", b"9"),
                   (b"x-helix-provider", b"p")]
