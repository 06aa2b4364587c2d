"""The compiled access-line formatter and its pure-Python twin must give the same text, or
the same error, for any request context (helix/_fast/access_c.pyx, access_py.py)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace as NS

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix._fast import AccessLineC, AccessLinePy, text_line_c, text_line_py

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


def test_recorder_writes_one_line():
    import os

    from helix.observe import access

    lines = []
    rec = access.make_access_recorder("text", NS(write=lines.append), wall=lambda: 1.5,
                                      monotonic=lambda: 100.003)
    rec(_ctx())
    head = f" INFO    [{os.getpid()}] helix.access: "
    stamp = access._clock(*access.ASCTIME)(1.5)
    assert lines == [text_line_py(stamp, head, _ctx(), 100.003)]
    assert rec.__name__ == "log_access"


RECORDERS = [AccessLinePy] + ([AccessLineC] if AccessLineC is not None else [])
CLOCKS = [("%Y-%m-%d %H:%M:%S,", time.localtime, ""), ("%Y-%m-%dT%H:%M:%S.", time.gmtime, "Z"),
          ("%H:%M:%S.", time.gmtime, "")]
WALLS = st.one_of(
    st.floats(min_value=0, max_value=4e9),  # now and the next century, ms boundaries too
    st.integers(0, 4 * 10**12).map(lambda ms: ms / 1000.0),
    st.floats(min_value=-1.0, max_value=0.0),  # the cache's start (-1 ms) and negatives
    st.floats(allow_nan=True, allow_infinity=True),  # what the twin raises, the same
    st.integers(-(10**12), 10**12),  # an int clock: the twin's path
)


@pytest.mark.skipif(AccessLineC is None, reason="extensions not built")
@settings(max_examples=300, deadline=None)
@given(walls=st.lists(WALLS, min_size=1, max_size=12), clock=st.sampled_from(CLOCKS),
       ctx=contexts())
def test_recorder_same_lines_as_the_twin(walls, clock, ctx):
    """The compiled recorder's stamps (and its per-ms, per-second cache) and lines are the
    twin's, for the same sequence of clock readings, errors included."""
    out = {}
    for impl in RECORDERS:
        got = []
        rec = impl(" INFO    [7] helix.access: ", NS(write=got.append), *clock,
                   wall=iter(walls).__next__, monotonic=lambda: 123.25)
        results = [outcome(rec, ctx) for _ in walls]
        out[impl] = (results, got)
    assert out[AccessLineC] == out[AccessLinePy]


@pytest.mark.parametrize("impl", RECORDERS, ids=lambda c: c.__module__)
def test_recorder_through_a_line_writer(impl):
    """Through a LineWriter on a loop, the recorder's lines are held, written together when
    the timer fires, and at once when the limit is reached, as write() does (the compiled
    one appends to the writer's list itself while its timer is armed)."""
    import asyncio
    import io

    from helix.observe.access import LineWriter

    out = io.StringIO()
    w = LineWriter(out, delay=0.05, limit=3)
    rec = impl("|", w, "%S.", time.gmtime, "", wall=lambda: 0.0, monotonic=lambda: 100.5)

    def line(status):
        return f'00.000|127.0.0.1 "POST /v1/chat/completions" {status} 500.0ms'

    async def main():
        rec(_ctx(status=201))
        rec(_ctx(status=202))
        assert out.getvalue() == "" and w._timer is not None  # held
        await asyncio.sleep(0.2)
        assert [x[:len(line(200))] for x in out.getvalue().splitlines()] == \
            [line(201), line(202)]
        assert w.lines == [] and w._timer is None
        for status in (203, 204, 205):  # the third fills the buffer: written at once
            rec(_ctx(status=status))
        assert [x[:len(line(200))] for x in out.getvalue().splitlines()][2:] == \
            [line(203), line(204), line(205)]
        assert w._timer is None and w.lines == []
        rec(_ctx(status=206))
        w.flush()
        assert out.getvalue().splitlines()[-1].startswith(line(206)) and w._timer is None

    asyncio.run(asyncio.wait_for(main(), 10))


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
