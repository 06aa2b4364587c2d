"""GCRA and reserve/settle: pure functions, time passed in."""

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from helix.limit import budget as _budget
from helix.limit import gcra as _gcra
from helix.limit.policy import format_reset

S = 1_000_000_000  # ns


class gcra:  # the tuples, with names
    interval = staticmethod(_gcra.interval)
    release = staticmethod(_gcra.release)

    @staticmethod
    def admit(*args):
        t = _gcra.admit(*args)
        return SimpleNamespace(allowed=t[0], state=t[1], remaining=t[2], reset=t[3],
                               retry_after=t[4])


class budget:
    settle = staticmethod(_budget.settle)

    @staticmethod
    def reserve(*args):
        t = _budget.reserve(*args)
        return SimpleNamespace(allowed=t[0], window=t[1], used=t[2], remaining=t[3], reset=t[4],
                               retry_after=t[5])


def run(limit, period, times):
    tat, admitted = 0, []
    for t in times:
        v = gcra.admit(tat, t, period, limit)
        if v.allowed:
            tat = v.state
            admitted.append(t)
    return admitted


def test_burst_is_exactly_the_limit():
    admitted = run(10, 60 * S, [1000 * S] * 30)
    assert len(admitted) == 10


def test_smooth_refill_one_per_interval():
    tat = 0
    now = 1000 * S
    for _ in range(6):
        v = gcra.admit(tat, now, 60 * S, 6)
        assert v.allowed
        tat = v.state
    v = gcra.admit(tat, now, 60 * S, 6)
    assert not v.allowed
    assert v.retry_after == 10 * S  # one interval
    assert v.remaining == 0
    assert gcra.admit(tat, now + 10 * S - 1, 60 * S, 6).allowed is False
    v = gcra.admit(tat, now + 10 * S, 60 * S, 6)
    assert v.allowed and v.remaining == 0


def test_headers_numbers():
    v = gcra.admit(0, 100 * S, 60 * S, 3)
    assert (v.allowed, v.remaining, v.reset) == (True, 2, 20 * S)


def test_no_window_edge_burst():
    # Fixed windows would admit 2x the limit around a window edge; GCRA never
    # admits more than limit + elapsed/interval in any span.
    period, limit = 60 * S, 10
    times = [59 * S + i * (S // 10) for i in range(40)]  # 4 s around the minute edge
    admitted = run(limit, period, times)
    span = times[-1] - times[0]
    assert len(admitted) <= limit + span // (period // limit) + 1
    assert len(admitted) == 10


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 50),
    gaps=st.lists(st.integers(0, 5 * S), min_size=1, max_size=200),
)
def test_never_more_than_limit_per_sliding_period(limit, gaps):
    period = 60 * S
    now, times = 10**12, []
    for g in gaps:
        now += g
        times.append(now)
    admitted = run(limit, period, times)
    interval = gcra.interval(period, limit)
    # GCRA's guarantee: in any span [a, b], at most limit + (b - a) // interval pass.
    for j in range(len(admitted)):
        for i in range(j, len(admitted)):
            assert i - j + 1 <= limit + (admitted[i] - admitted[j]) // interval


def test_release_gives_back():
    v = gcra.admit(0, 100 * S, 60 * S, 1)
    assert v.allowed
    assert not gcra.admit(v.state, 100 * S, 60 * S, 1).allowed
    tat = gcra.release(v.state, 60 * S, 1)
    assert gcra.admit(tat, 100 * S, 60 * S, 1).allowed


def test_budget_reserve_until_spent_then_reset():
    period, limit = 60, 100
    w, used = 0, 0
    out = budget.reserve(w, used, 120, period, limit, 40)
    assert out.allowed and out.used == 40 and out.remaining == 60 and out.reset == 60
    w, used = out.window, out.used
    out = budget.reserve(w, used, 130, period, limit, 60)
    assert out.allowed and out.used == 100
    w, used = out.window, out.used
    out = budget.reserve(w, used, 131, period, limit, 1)
    assert not out.allowed and out.retry_after == 49 and out.used == 100
    # next window: empty again
    out = budget.reserve(w, used, 180, period, limit, 1)
    assert out.allowed and out.used == 1


def test_settle_replaces_estimate_with_actual():
    period = 60
    out = budget.reserve(0, 0, 120, period, 100, 50)
    # actual 10: 40 back
    w, used = budget.settle(out.window, out.used, 125, period, out.window, 50, 10)
    assert used == 10
    # actual bigger than estimate: budget overspent -> refused until reset
    out = budget.reserve(w, used, 126, period, 100, 20)
    w, used = budget.settle(out.window, out.used, 127, period, out.window, 20, 200)
    assert used == 210
    assert not budget.reserve(w, used, 128, period, 100, 1).allowed
    assert budget.reserve(w, used, 180, period, 100, 1).allowed


def test_settle_release_and_window_rollover():
    out = budget.reserve(0, 0, 120, 60, 100, 30)
    assert budget.settle(out.window, out.used, 121, 60, out.window, 30, 0) == (2, 0)
    # reserved in window 2, settled in window 3: the actual is charged to window 3
    assert budget.settle(out.window, out.used, 185, 60, out.window, 30, 25) == (3, 25)


def test_format_reset():
    assert format_reset(0.02) == "20ms"
    assert format_reset(1) == "1s"
    assert format_reset(1.5) == "1.5s"
    assert format_reset(360) == "6m0s"
    assert format_reset(3723) == "1h2m3s"
