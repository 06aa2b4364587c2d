"""The compiled request ids (helix/_fast/access_c.pyx RequestIds, the ``request_id`` phase)
and their pure-Python twin (access_py.py) must give the same ids, the same header bytes and
the same choice between the client's id and a new one, for any header value."""

from __future__ import annotations

import os
from types import SimpleNamespace as NS

from hypothesis import example, given, settings
from hypothesis import strategies as st

from helix._fast import RequestIdsC, RequestIdsPy
from helix.pipeline.runner import Pipeline

KINDS = [RequestIdsPy] + ([RequestIdsC] if RequestIdsC is not None else [])

# Header values near the rules' edges: printable ASCII 0x21-0x7E, 1-128 characters.
EDGE = st.text(alphabet=st.characters(min_codepoint=0x1F, max_codepoint=0x80), max_size=130)
VALUE = st.one_of(st.none(), st.text(max_size=140), EDGE,
                  st.text(alphabet="abc-_.:/", min_size=126, max_size=130))


def test_compiled_twin_is_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert RequestIdsC is not None


def _ctx(headers: dict) -> NS:
    return NS(exchange=NS(request=NS(headers=headers)), response_headers=[("a", "b")],
              request_id=None)


def _run(kind, prefix, values):
    ids = kind(prefix)
    out = []
    for v in values:
        headers = {} if v is None else {"x-request-id": v}
        ctx = _ctx(headers)
        ids(ctx)
        out.append((ctx.request_id, ctx.response_headers, ids.pick(headers)))
    out.append(ids.new())
    return out


@settings(max_examples=300, deadline=None)
# The prefix is Helix's own (hex and a dash); longer ones take the compiled class's
# formatted path, which must agree too.
@given(prefix=st.one_of(st.just("0badcafe-"),
                        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                                max_size=80)),
       values=st.lists(VALUE, max_size=6))
@example(prefix="0badcafe-", values=[None, "mine-1", "has space", "x" * 128, "x" * 129, "",
                                     "caf\u00e9", "\x7f", "~!"])
def test_same_ids_and_choices(prefix, values):
    results = [_run(kind, prefix, values) for kind in KINDS]
    for other in results[1:]:
        assert other == results[0]


def test_a_client_id_is_kept_only_when_sane():
    for kind in KINDS:
        ids = kind("p-")
        assert ids.pick({"x-request-id": "mine-1"}) == "mine-1"
        assert ids.pick({"x-request-id": "x" * 128}) == "x" * 128
        assert ids.pick({"x-request-id": "x" * 129}) == "p-1"
        assert ids.pick({"x-request-id": "has space"}) == "p-2"
        assert ids.pick({}) == "p-3"
        ctx = _ctx({"x-request-id": "abc"})
        ids(ctx)
        assert ctx.request_id == "abc"
        assert ctx.response_headers[-1] == (b"x-request-id", b"abc")


def test_a_new_id_is_a_random_prefix_and_a_hex_counter():
    for kind in KINDS:
        ids = kind()
        head, sep, tail = ids.new().rpartition("-")
        assert sep == "-" and len(head) == 8 and int(head, 16) >= 0 and tail == "1"
        for _ in range(14):
            ids.new()
        assert ids.new() == f"{head}-10"
        assert kind().prefix != ids.prefix or kind().prefix != ids.prefix  # random per worker


def test_the_phase_is_named_request_id_in_the_pipeline():
    for kind in KINDS:
        assert Pipeline(NS(name="chat"), [kind()], []).names == ["request_id"]
