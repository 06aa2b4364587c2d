"""The compiled access-line formatter and its pure-Python twin must give the same text, or
the same error, for any request context (helix/_fast/access_c.pyx, access_py.py)."""

from __future__ import annotations

import os
from types import SimpleNamespace as NS

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix._fast import text_line_c, text_line_py

IMPLS = [text_line_py] + ([text_line_c] if text_line_c is not None else [])

TEXT = st.one_of(
    st.sampled_from(["", "-", "gpt-4o-mini", "POST", "/v1/chat/completions", "m", "hit",
                     "f91452bd-1", "127.0.0.1", "x" * 3000]),
    st.text(max_size=30),  # non-ASCII too: the compiled one hands those to the twin
)
INTS = st.one_of(st.integers(min_value=-10, max_value=10**6), st.integers(), st.booleans(),
                 st.none())
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0),
                   st.floats(min_value=0, max_value=1e-6), st.floats(min_value=0, max_value=10))


@st.composite
def contexts(draw):
    started = draw(st.one_of(st.floats(min_value=0, max_value=1e6), st.integers(0, 10**6)))
    req = NS(client=draw(st.one_of(st.none(), st.tuples(TEXT, st.integers(0, 65535)))),
             method=draw(TEXT), path=draw(TEXT))
    dep = draw(st.one_of(st.none(), st.builds(NS, model_id=TEXT, provider=TEXT)))
    usage = draw(st.one_of(st.none(), st.builds(NS, input=INTS, output=INTS)))
    return NS(
        exchange=NS(request=req), started=started, deployment=dep, usage=usage,
        first_chunk_at=draw(st.one_of(st.none(), st.just(0.0), FLOATS)),
        cost=draw(st.one_of(st.none(), FLOATS, st.integers(0, 10))),
        status=draw(st.one_of(st.sampled_from([200, 429, 502]), INTS)),
        cache=draw(st.one_of(st.none(), TEXT)), attempts=draw(INTS),
        request_id=draw(st.one_of(st.none(), TEXT)),
    )


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return (type(exc), str(exc))


def test_compiled_twin_is_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert text_line_c is not None


@pytest.mark.skipif(text_line_c is None, reason="extensions not built")
@settings(max_examples=600, deadline=None)
@given(ctx=contexts(), now=st.floats(min_value=0, max_value=2e6), stamp=TEXT)
def test_same_text_as_the_twin(ctx, now, stamp):
    head = " INFO    [42] helix.access: "
    assert outcome(text_line_c, stamp, head, ctx, now) == \
        outcome(text_line_py, stamp, head, ctx, now)


def _ctx(**kw):
    req = NS(client=("127.0.0.1", 5555), method="POST", path="/v1/chat/completions")
    base = dict(exchange=NS(request=req), started=100.0, first_chunk_at=None,
                usage=NS(input=1, output=4), cost=0.00000255,
                deployment=NS(model_id="gpt-4o-mini", provider="m"), status=200, cache=None,
                attempts=1, request_id="f91452bd-1")
    base.update(kw)
    return NS(**base)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__module__)
def test_the_documented_line(impl):
    line = impl("2026-12-06 05:13:36,582", " INFO    [3735] helix.access: ", _ctx(), 100.003)
    assert line == ('2026-12-06 05:13:36,582 INFO    [3735] helix.access: 127.0.0.1 '
                    '"POST /v1/chat/completions" 200 3.0ms model=gpt-4o-mini provider=m '
                    'tokens=1/4 cost=0.00000255 ttft=- cache=- attempts=1 rid=f91452bd-1')
    line = impl("t", " h ", _ctx(first_chunk_at=100.0125, cache="hit", deployment=None,
                                 usage=None, cost=None, request_id=None, attempts=2), 100.5)
    assert line == ('t h 127.0.0.1 "POST /v1/chat/completions" 200 500.0ms model=- '
                    'provider=- tokens=- cost=- ttft=12.5ms cache=hit attempts=2 rid=-')


def test_recorder_writes_one_line(monkeypatch):
    import os

    from helix.observe import access

    lines = []
    monkeypatch.setattr(access, "_asctime", lambda now: "T")
    monkeypatch.setattr(access.time, "monotonic", lambda: 100.003)
    rec = access.make_access_recorder("text", NS(write=lines.append))
    rec(_ctx())
    head = f" INFO    [{os.getpid()}] helix.access: "
    assert lines == [text_line_py("T", head, _ctx(), 100.003)]
    assert rec.__name__ == "log_access"


@pytest.mark.skipif(text_line_c is None, reason="extensions not built")
def test_durations_and_costs_round_like_python():
    """The compiled line rounds in integers away from ties: every kind of value, ties and
    near-ties included, must print as Python's ``:.1f`` / ``:.8f`` does."""
    import random

    rng = random.Random(5)
    values = [k * 0.05 for k in range(2000)] + [k * 0.25 for k in range(400)]
    values += [k * 5e-9 for k in range(2000)] + [k / 3 for k in range(500)]
    values += [rng.uniform(0, 10 ** rng.randint(-9, 9)) for _ in range(20000)]
    values += [0.0, 1e-300, 0.04999999999999999, 0.05000000000000001, 999999999.95, 1e9,
               2.5e-9, 0.000000025, 1.234567895]
    for v in values:
        ctx = _ctx(started=0.0, first_chunk_at=v / 1000.0 if v else None, cost=v)
        now = v / 1000.0
        assert text_line_c("t", " h ", ctx, now) == text_line_py("t", " h ", ctx, now), v
