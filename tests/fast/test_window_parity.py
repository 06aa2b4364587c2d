"""The health table's attempt window (``RequestWindow``): compiled and pure twins count the
same, and both match the reference below (the counting ``HealthTable`` did in Python)."""

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from helix._fast import RequestWindowC, RequestWindowPy, ewma_py
from helix.routing import health as h

ROWS, NDEPS = 3, 4


def test_compiled_twin_is_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert RequestWindowC is not None


def test_layout_constants_match_the_health_table():
    assert (ewma_py.H_COLS, ewma_py.W_COLS) == (h.H_COLS, h.W_COLS)
    assert (ewma_py.B_BUCKET, ewma_py.B_REQ, ewma_py.B_ERR, ewma_py.B_PREV_REQ,
            ewma_py.B_PREV_ERR) == (h.B_BUCKET, h.B_REQ, h.B_ERR, h.B_PREV_REQ, h.B_PREV_ERR)


def reference_count(w, row, dep, now, error, half):
    bucket = float(int(now / half)) if half > 0 else 0.0
    b = (row * NDEPS + dep) * h.W_COLS
    if w[b + h.B_BUCKET] != bucket:
        if w[b + h.B_BUCKET] == bucket - 1.0:
            w[b + h.B_PREV_REQ] = w[b + h.B_REQ]
            w[b + h.B_PREV_ERR] = w[b + h.B_ERR]
        else:
            w[b + h.B_PREV_REQ] = 0.0
            w[b + h.B_PREV_ERR] = 0.0
        w[b + h.B_REQ] = 0.0
        w[b + h.B_ERR] = 0.0
        w[b + h.B_BUCKET] = bucket
    w[b + h.B_REQ] += 1.0
    if error:
        w[b + h.B_ERR] += 1.0


def views():
    return (memoryview(bytearray(8 * NDEPS * h.H_COLS)).cast("d"),
            memoryview(bytearray(8 * ROWS * NDEPS * h.W_COLS)).cast("d"))


ops = st.lists(
    st.tuples(
        st.integers(0, NDEPS - 1),
        st.floats(0.0, 7.0, allow_nan=False),  # time step: same bucket, next, or skipped
        st.booleans(),  # success
        st.sampled_from([0.0, 1.0, 2.0]),  # the shared row's state col
        st.sampled_from([0.0, 3.0]),  # its failures col
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, ROWS - 1), st.sampled_from([0.0, 0.5, 2.5, 15.0]), ops)
def test_parity_and_reference_on_random_sequences(row, half, seq):
    classes = [RequestWindowPy] + ([RequestWindowC] if RequestWindowC else [])
    impls = []
    for cls in classes:
        hv, wv = views()
        impls.append((cls(wv, hv, row, NDEPS, half), hv, wv))
    ref = views()[1]
    now = 100.0
    for dep, dt, success, state, fails in seq:
        now += dt
        answers = set()
        for win, hv, _wv in impls:
            hv[dep * h.H_COLS] = state
            hv[dep * h.H_COLS + 2] = fails
            answers.add(win.settled(dep, now, success))
        reference_count(ref, row, dep, now, not success, half)
        assert answers == {success and state == 0.0 and fails == 0.0}
        for _, _, wv in impls:
            assert wv.tolist() == ref.tolist()
