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
    assert (ewma_py.H_COLS, ewma_py.W_COLS, ewma_py.SUCCESS) == (h.H_COLS, h.W_COLS, h.SUCCESS)
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


# --- AttemptBook: Balancer.begin/end ------------------------------------------------------


def book(pair):
    from helix._fast.ewma_py import stride_for

    table_cls, window_cls, book_cls = pair
    hv, wv = views()
    lv = memoryview(bytearray(8 * ROWS * stride_for(NDEPS))).cast("d")
    calls = []
    latency = table_cls(lv, ROWS, NDEPS, 2.5, 0.001)
    window = window_cls(wv, hv, 1, NDEPS, 2.5)
    return book_cls(latency, window, lambda *a: calls.append(a), 1, NDEPS), hv, wv, lv, calls


class Dep:
    def __init__(self, index):
        self.index = index


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(
    st.booleans(),  # begin or end
    st.integers(-1, NDEPS),  # untracked indexes too
    st.sampled_from([-1, 0, 1, 2, 3]),  # no verdict, success, failure, connect, rate limited
    st.floats(0.0, 3.0, allow_nan=False),
    st.one_of(st.none(), st.floats(0.0, 2.0, allow_nan=False)),
    st.sampled_from([0.0, 1.0]),  # the shared row's state
), max_size=40))
def test_attempt_book_twins_keep_the_same_tables(seq):
    from helix._fast import (
        AttemptBookC,
        AttemptBookPy,
        LatencyTableC,
        LatencyTablePy,
        RequestWindowC,
    )

    pairs = [(LatencyTablePy, RequestWindowPy, AttemptBookPy)]
    if AttemptBookC is not None:
        pairs.append((LatencyTableC, RequestWindowC, AttemptBookC))
    books = [book(p) for p in pairs]
    now = 10.0
    for is_begin, index, event, dt, sample, state in seq:
        now += dt
        dep = Dep(index)
        for b, hv, _, _, _ in books:
            if 0 <= index < NDEPS:
                hv[index * h.H_COLS] = state
            if is_begin:
                b.begin(dep)
            else:
                b.end(dep, event, now, sample, 7.0)
    first = books[0]
    for other in books[1:]:
        assert other[2].tolist() == first[2].tolist()  # window
        assert other[3].tolist() == first[3].tolist()  # latency table
        assert other[4] == first[4]  # change() calls
    # change() gets the verdict as given; "no verdict" (-1) never reaches it
    for _i, event, _now, retry_after in first[4]:
        assert event >= 0 and retry_after == 7.0
