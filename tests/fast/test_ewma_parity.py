"""The compiled PeakEWMA table and its pure-Python twin must compute the same numbers."""

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from helix._fast import LatencyTableC, LatencyTablePy
from helix._fast.ewma_py import stride_for

ROWS, NDEPS = 3, 4


def make(cls):
    view = memoryview(bytearray(8 * ROWS * stride_for(NDEPS))).cast("d")
    return cls(view, ROWS, NDEPS, 2.5, 0.001), view


def test_compiled_twin_is_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert LatencyTableC is not None


ops = st.lists(
    st.tuples(
        st.sampled_from(["observe", "add", "cost", "choose", "estimate", "inflight", "clear"]),
        st.integers(0, ROWS - 1),
        st.integers(0, NDEPS - 1),
        st.integers(0, NDEPS - 1),
        st.floats(0.0, 5.0, allow_nan=False),
        st.floats(0.0, 2.0, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_parity_random_operation_sequences(seq):
    impls = [make(LatencyTablePy)] + ([make(LatencyTableC)] if LatencyTableC else [])
    now = 1.0
    for op, row, dep, other, dt, sample in seq:
        now += dt
        results = []
        for t, _ in impls:
            if op == "observe":
                results.append(t.observe(row, dep, now, sample))
            elif op == "add":
                t.add(row, dep, 1.0 if sample < 1.0 else -1.0)
                results.append(None)
            elif op == "cost":
                results.append(t.cost(dep, now))
            elif op == "choose":
                results.append(t.choose(dep, other, now))
            elif op == "estimate":
                results.append(t.estimate(dep, now))
            elif op == "inflight":
                results.append(t.inflight(dep))
            else:
                t.clear_row(row)
                results.append(None)
        assert all(r == results[0] for r in results), (op, results)
    if len(impls) == 2:
        assert impls[0][1].tobytes() == impls[1][1].tobytes()  # bit-identical tables
