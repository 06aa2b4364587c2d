"""The compiled server-timing and cost header values and their pure-Python twins must give
the same bytes, or the same error, for any request context (helix/_fast/access_c.pyx,
access_py.py)."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace as NS

from hypothesis import example, given, settings
from hypothesis import strategies as st

from helix._fast import cost_value_c, cost_value_py, timing_value_c, timing_value_py

TIMING = [timing_value_py] + ([timing_value_c] if timing_value_c is not None else [])
COST = [cost_value_py] + ([cost_value_c] if cost_value_c is not None else [])

# Monotonic stamps as they come (seconds since boot), durations near rounding ties, and the
# odd ones: zero, negative zero, NaN of either sign, infinities, ints, None.
STAMP = st.one_of(st.floats(min_value=0, max_value=1e7), st.just(0.0))
ODD = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(-0.0),
                st.just(-math.nan), st.integers(-5, 5), st.none())


def test_compiled_twins_are_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert timing_value_c is not None and cost_value_c is not None


def outcome(fn, *args):
    """The bytes, or the error's type (its text names the operand types, and the compiled
    twin hands the pure one ``now`` already made a float)."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return type(exc)


@st.composite
def contexts(draw):
    started = draw(STAMP)
    fields = {}
    for name in ("waited", "queued"):
        fields[name] = draw(st.one_of(st.just(0.0), st.floats(0, 100), ODD))
    sent = draw(st.one_of(st.just(0.0), st.floats(started, started + 100), ODD))
    fields["upstream_started"] = sent
    for name in ("head_at", "first_chunk_at"):
        fields[name] = draw(st.one_of(st.just(0.0), st.floats(0, started + 200), ODD))
    return NS(started=draw(st.one_of(st.just(started), ODD)), **fields)


@settings(max_examples=500, deadline=None)
@given(contexts(), st.one_of(st.floats(0, 1e7), ODD.filter(lambda v: v is not None)))
@example(NS(started=1.0, waited=0.25, queued=0.0005, upstream_started=1.1, head_at=1.2,
            first_chunk_at=1.3), 2.0)
@example(NS(started=0.0, waited=0.0, queued=0.0, upstream_started=0.0, head_at=0.0,
            first_chunk_at=0.0), 0.0)
def test_timing_value_same_bytes(ctx, now):
    # ``now`` is a number (timing.header reads the clock when it is None).
    results = {outcome(fn, ctx, now) for fn in TIMING}
    assert len(results) == 1, results


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.floats(0, 0.1), st.floats(0, 1e-6), st.floats(0, 1e6),
                 st.integers(0, 10**12).map(lambda n: n / 1e10), ODD))
@example(0.00000000005)  # a tie at the tenth decimal, as binary makes it
@example(2.55e-06)
def test_cost_value_same_bytes(usd):
    results = {outcome(fn, usd) for fn in COST}
    assert len(results) == 1, results


def test_known_values():
    ctx = NS(started=1.0, waited=0.25, queued=0.0, upstream_started=1.1, head_at=1.2,
             first_chunk_at=1.3)
    for fn in TIMING:
        assert fn(ctx, 2.0) == b"helix;dur=750.000, upstream;dur=100.000, ttft;dur=200.000"
    for fn in COST:
        assert fn(2.55e-06) == b"0.0000025500"
        assert fn(-0.0) == b"-0.0000000000"
