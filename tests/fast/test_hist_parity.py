"""The compiled metrics-row writer and its pure-Python twin agree (helix/_fast/hist_c.pyx,
hist_py.py): the same columns written for the same observations, the same errors, and the
same partial writes when a value is unusable."""

import array
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from helix._fast import RowWriterC, RowWriterPy
from helix.observe import metrics as m

IMPLS = [RowWriterPy] + ([RowWriterC] if RowWriterC is not None else [])
ROWS = 3
COLS_ARGS = (m.C_COST, m.C_DUR, m.C_UP, m.C_TTFT, m.C_TOK_IN, m.C_TOK_OUT)


def test_compiled_twin_is_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert RowWriterC is not None


def run(impl, calls):
    buf = array.array("d", [0.0] * (ROWS * m.REQ_COLS))
    view = memoryview(buf)
    w = impl(view, m.REQ_COLS, m.DURATION_BOUNDS, m.TTFT_BOUNDS, m.TOKEN_BOUNDS, *COLS_ARGS)
    errors = []
    for args in calls:
        try:
            w.observe(*args)
            errors.append(None)
        except Exception as exc:  # the type must match, and what was written before it
            errors.append(type(exc))
    return [x if x == x else "nan" for x in buf], errors  # NaN != NaN


seconds = st.one_of(st.none(), st.floats(min_value=0, max_value=200), st.sampled_from(
    [0.0, 0.01, 0.0100001, 81.92, 1e9, float("nan"), float("inf"), *m.TTFT_BOUNDS]))
tokens = st.one_of(st.none(), st.integers(min_value=0, max_value=2**40),
                   st.sampled_from([*m.TOKEN_BOUNDS, 0, 10**400, "x", 1.5]))
costs = st.one_of(st.none(), st.floats(min_value=-1, max_value=1, allow_nan=False), st.just(0))
calls = st.lists(st.tuples(
    st.sampled_from([0, m.REQ_COLS, 2 * m.REQ_COLS, -1, 3 * m.REQ_COLS, 1]),
    st.floats(min_value=0, max_value=100) | st.sampled_from(list(m.DURATION_BOUNDS)),
    seconds, seconds, tokens, tokens, costs), max_size=20)


@settings(max_examples=400, deadline=None)
@given(calls)
def test_same_columns_and_errors(calls):
    expected = run(RowWriterPy, calls)
    for impl in IMPLS[1:]:
        assert run(impl, calls) == expected


def test_buckets_follow_bisect_left():
    # A value equal to a bound lands in that bound's bucket; above the last: +Inf.
    buf, _ = run(IMPLS[-1], [(0, 0.02, None, None, 16, 10**9, 0.5)])
    dur = buf[m.C_DUR:m.C_DUR + len(m.DURATION_BOUNDS) + 2]
    assert dur[0] == 0.02 and dur[1 + 1] == 1.0 and sum(dur[1:]) == 1.0
    tok_in = buf[m.C_TOK_IN:m.C_TOK_IN + len(m.TOKEN_BOUNDS) + 2]
    assert tok_in[1 + m.TOKEN_BOUNDS.index(16)] == 1.0
    tok_out = buf[m.C_TOK_OUT:m.C_TOK_OUT + len(m.TOKEN_BOUNDS) + 2]
    assert tok_out[-1] == 1.0  # beyond 67108864: +Inf
    assert buf[m.C_REQUESTS] == 1.0 and buf[m.C_COST] == 0.5
    assert sum(buf[m.C_UP:m.C_TTFT]) == 0.0  # absent: nothing written


# -- the request recorder (hist_py.RequestRecorder; compiled in hist_c) -------------------

from types import SimpleNamespace  # noqa: E402

from helix._fast import RequestRecorderC, RequestRecorderPy  # noqa: E402

RECORDERS = [(RowWriterPy, RequestRecorderPy)] + (
    [(RowWriterC, RequestRecorderC)] if RequestRecorderC is not None else [])


def record(impls, ctxs):
    """Each ctx through a fresh recorder of ``impls``: the rows and every callback's call."""
    writer_cls, recorder_cls = impls
    buf = array.array("d", [0.0] * (6 * m.REQ_COLS))  # every key ctxs can make
    index: dict = {}
    calls = []

    def new_row(key):
        calls.append(("row", key))
        index[key] = b = len(index) * m.REQ_COLS
        return b

    clock = iter(range(1000, 2000))
    rec = recorder_cls(writer_cls(memoryview(buf), m.REQ_COLS, m.DURATION_BOUNDS, m.TTFT_BOUNDS,
                                  m.TOKEN_BOUNDS, *COLS_ARGS),
                       index, new_row, lambda dep, usage: calls.append(("pc", dep.model_id,
                                                                        usage.cache_read)),
                       lambda hit: calls.append(("cache", hit)), lambda: float(next(clock)))
    for ctx in ctxs:
        rec(ctx)
    return list(buf), calls


dep = st.one_of(st.none(), st.builds(SimpleNamespace, model_id=st.sampled_from(["m1", "m2"]),
                                     provider=st.just("p")))
usage = st.one_of(st.none(), st.builds(SimpleNamespace, input=st.integers(0, 10**6),
                                       output=st.integers(0, 10**6),
                                       cache_read=st.integers(0, 5), cache_write=st.just(0)))
ctxs = st.lists(st.builds(
    SimpleNamespace, api=st.just(SimpleNamespace(name="chat")), deployment=dep,
    status=st.sampled_from([200, 429]), started=st.floats(0, 999), upstream_started=seconds.map(
        lambda x: 0.0 if x is None or x != x else x), first_chunk_at=st.sampled_from([0.0, 999.5]),
    usage=usage, cost=st.one_of(st.none(), st.floats(0, 1)),
    cache=st.sampled_from([None, "hit", "miss"])), max_size=6)


@settings(max_examples=300, deadline=None)
@given(ctxs)
def test_request_recorders_agree(ctxs):
    expected = record(RECORDERS[0], ctxs)
    for impls in RECORDERS[1:]:
        assert record(impls, ctxs) == expected


def test_request_recorder_fills_the_row_and_counters():
    d = SimpleNamespace(model_id="gpt", provider="openai")
    u = SimpleNamespace(input=12, output=3, cache_read=4, cache_write=0)
    ctx = SimpleNamespace(api=SimpleNamespace(name="chat"), deployment=d, status=200,
                          started=999.0, upstream_started=999.5, first_chunk_at=0.0, usage=u,
                          cost=0.25, cache="miss")
    for impls in RECORDERS:
        buf, calls = record(impls, [ctx])
        assert calls == [("row", ("chat", "gpt", "openai", 200)), ("pc", "gpt", 4),
                         ("cache", False)]
        assert buf[m.C_REQUESTS] == 1.0 and buf[m.C_COST] == 0.25
        assert buf[m.C_DUR] == 1.0 and buf[m.C_UP] == 0.5  # clock 1000.0
        assert buf[m.C_TOK_IN] == 12.0 and buf[m.C_TOK_OUT] == 3.0
        assert sum(buf[m.C_TTFT:m.C_TOK_IN]) == 0.0  # no first chunk: nothing written
