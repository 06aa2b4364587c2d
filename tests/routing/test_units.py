"""Sans-IO tests: PeakEWMA math, P2C choice, health state machine, backoff, header parsing."""

import math
import random

import pytest

from helix._fast.ewma_py import COLS, LatencyTable, stride_for
from helix.errors import ErrorKind, HelixError, Retry
from helix.routing import health as h
from helix.routing import strategies
from helix.routing.resilience import backoff, classify, is_context_overflow, reset_after


def table(rows=2, ndeps=3, tau=10.0, floor=0.001):
    view = memoryview(bytearray(8 * rows * stride_for(ndeps))).cast("d")
    return LatencyTable(view, rows, ndeps, tau, floor)


# --- PeakEWMA ---------------------------------------------------------------------------------


def test_stride_is_whole_cache_lines():
    assert stride_for(1) == 8 and stride_for(2) == 8 and stride_for(3) == 16
    assert stride_for(5) * 8 % 64 == 0 and stride_for(5) >= 5 * COLS


def test_peak_jumps_up_at_once_and_decays_down_with_tau():
    t = table(tau=10.0)
    assert t.estimate(0, 1.0) == 0.0  # never sampled
    assert t.observe(0, 0, 100.0, 0.020) == 0.020
    assert t.observe(0, 0, 101.0, 0.200) == 0.200  # slower sample: taken at once
    # a faster sample dt=10s later (= tau): weight of the old value is e^-1
    v = t.observe(0, 0, 111.0, 0.020)
    w = math.exp(-1.0)
    assert v == pytest.approx(0.200 * w + 0.020 * (1 - w))


def test_read_decays_toward_zero_when_idle():
    t = table(tau=5.0)
    t.observe(0, 0, 10.0, 0.5)
    assert t.estimate(0, 10.0) == pytest.approx(0.5)
    assert t.estimate(0, 15.0) == pytest.approx(0.5 * math.exp(-1.0))


def test_fold_uses_newest_worker_and_sums_inflight():
    t = table(rows=3)
    t.observe(0, 1, 10.0, 0.1)
    t.observe(2, 1, 11.0, 0.3)  # worker 2 folds worker 0's value first: 0.3 > 0.1 -> peak
    assert t.estimate(1, 11.0) == pytest.approx(0.3)
    t.observe(0, 1, 11.0 + 1e-9, 0.1)  # worker 0 blends from worker 2's newer estimate
    assert 0.1 < t.estimate(1, 11.0 + 1e-9) <= 0.3
    t.add(0, 1, 1)
    t.add(1, 1, 2)
    t.add(2, 1, 1)
    assert t.inflight(1) == 4
    assert t.inflight(0) == 0  # other deployments untouched
    t.add(1, 1, -2)
    assert t.inflight(1) == 2


def test_cost_is_latency_times_inflight_plus_one():
    t = table(floor=0.0)
    t.observe(0, 0, 10.0, 0.02)
    t.observe(0, 1, 10.0, 0.2)
    assert t.cost(0, 10.0) == pytest.approx(0.02)
    assert t.choose(0, 1, 10.0) == 0
    for _ in range(10):
        t.add(0, 0, 1)
    assert t.cost(0, 10.0) == pytest.approx(0.22)
    assert t.choose(0, 1, 10.0) == 1  # 11 queued on the fast one costs more than the slow one


def test_clear_row_forgets_a_worker_block():
    t = table(rows=2)
    t.observe(1, 0, 5.0, 0.3)
    t.add(1, 0, 3)
    t.clear_row(1)
    assert t.inflight(0) == 0 and t.estimate(0, 5.0) == 0.0


# --- strategies -------------------------------------------------------------------------------


def test_p2c_two_candidates_compares_both():
    chosen = strategies.p2c([0, 1], [7, 9], lambda a, b: b, random.Random(1).random)
    assert chosen == 1
    chosen = strategies.p2c([0, 1], [7, 9], lambda a, b: a, random.Random(1).random)
    assert chosen == 0


def test_p2c_picks_two_distinct_and_never_the_worst_of_three():
    rnd = random.Random(42).random
    costs = {10: 1.0, 11: 2.0, 12: 3.0}
    seen = set()
    for _ in range(500):
        pairs = []

        def choose(a, b, pairs=pairs):
            pairs.append((a, b))
            return a if costs[a] <= costs[b] else b

        pos = strategies.p2c([0, 1, 2], [10, 11, 12], choose, rnd)
        a, b = pairs[0]
        assert a != b
        seen.add(pos)
    assert seen == {0, 1}  # the most expensive one never wins a pair


def test_weighted_shares_follow_weights():
    rnd = random.Random(7).random
    counts = [0, 0, 0]
    for _ in range(20000):
        counts[strategies.weighted([0, 1, 2], [1.0, 3.0, 0.0], rnd)] += 1
    assert counts[2] == 0
    assert counts[1] / counts[0] == pytest.approx(3.0, rel=0.1)
    assert strategies.weighted([2], [1.0, 3.0, 0.0], rnd) == 2  # only zero weights left


def test_round_robin_skips_unavailable():
    assert [strategies.round_robin([0, 1, 2], 3, t) for t in range(4)] == [0, 1, 2, 0]
    assert [strategies.round_robin([0, 2], 3, t) for t in range(3)] == [0, 2, 2]


def test_cheapest_tier_and_unknown_prices():
    assert strategies.cheapest([0, 1, 2], [2.0, 1.0, 1.0]) == [1, 2]
    assert strategies.cheapest([0, 1], [None, 5.0]) == [1]
    assert strategies.cheapest([0, 1], [None, None]) == [0, 1]


# --- health state machine -----------------------------------------------------------------------

P = h.HealthPolicy(consecutive_failures=3, cooldown=30.0, connect_cooldown=2.0,
                   rate_limit_cooldown=5.0, trial_timeout=60.0)


def test_consecutive_failures_open_then_half_open_trial_closes():
    s = h.Health()
    s = h.transition(s, h.FAILURE, 1.0, P)
    s = h.transition(s, h.FAILURE, 2.0, P)
    assert h.effective(s, 2.0, P) == h.HEALTHY and s.fails == 2
    s = h.transition(s, h.FAILURE, 3.0, P)
    assert s.state == h.OPEN and s.until == 33.0
    assert h.effective(s, 10.0, P) == h.E_OPEN and h.available(s, 10.0, P) == 2
    assert h.effective(s, 33.0, P) == h.E_HALF_OPEN and h.available(s, 33.0, P) == 1
    trial = h.claim(s, 33.0, P)
    assert trial.state == h.HALF_OPEN and h.available(trial, 34.0, P) == 2  # one trial only
    assert h.claim(trial, 34.0, P) is None
    closed = h.transition(trial, h.SUCCESS, 35.0, P)
    assert closed.state == h.CLOSED and closed.fails == 0
    assert h.available(closed, 35.0, P) == 0


def test_failed_trial_reopens():
    s = h.Health(h.OPEN, 10.0, 3, 0.0, 0.0, h.R_FAILURES)
    s = h.claim(s, 11.0, P)
    s = h.transition(s, h.FAILURE, 12.0, P)
    assert s.state == h.OPEN and s.until == 42.0 and s.reason == h.R_TRIAL_FAILED


def test_stuck_trial_frees_after_timeout():
    s = h.claim(h.Health(h.OPEN, 10.0, 3), 11.0, P)
    assert h.available(s, 70.0, P) == 2
    assert h.available(s, 71.0, P) == 1


def test_success_resets_consecutive_count():
    s = h.transition(h.transition(h.Health(), h.FAILURE, 1.0, P), h.FAILURE, 2.0, P)
    s = h.transition(s, h.SUCCESS, 3.0, P)
    s = h.transition(s, h.FAILURE, 4.0, P)
    assert s.state == h.CLOSED and s.fails == 1


def test_rate_limited_cools_until_retry_after():
    s = h.transition(h.Health(), h.RATE_LIMITED, 100.0, P, retry_after=7.0)
    assert s.state == h.COOLING and s.until == 107.0
    assert h.effective(s, 106.9, P) == h.E_COOLING and h.available(s, 106.9, P) == 2
    assert h.effective(s, 107.0, P) == h.HEALTHY and h.available(s, 107.0, P) == 0
    d = h.transition(h.Health(), h.RATE_LIMITED, 100.0, P)
    assert d.until == 105.0  # default cooldown without a header
    capped = h.transition(h.Health(), h.RATE_LIMITED, 0.0, P, retry_after=1e9)
    assert capped.until == P.max_rate_limit_cooldown


def test_connect_failure_cools_quickly():
    s = h.transition(h.Health(), h.CONNECT, 50.0, P)
    assert s.state == h.COOLING and s.until == 52.0 and s.fails == 1


def test_error_rate_trips_the_circuit():
    s = h.transition(h.Health(), h.FAILURE, 5.0, P, rate_tripped=True)
    assert s.state == h.OPEN and s.reason == h.R_ERROR_RATE


def test_late_success_does_not_close_an_open_circuit():
    s = h.Health(h.OPEN, 40.0, 3, 0.0, 10.0, h.R_FAILURES)
    assert h.transition(s, h.SUCCESS, 20.0, P) == s


def test_health_table_window_and_lock_free_success():
    ndeps, rows = 4, 2
    hv = memoryview(bytearray(8 * ndeps * h.H_COLS)).cast("d")
    wv = memoryview(bytearray(8 * rows * ndeps * h.W_COLS)).cast("d")
    pol = h.HealthPolicy(consecutive_failures=100, error_rate=0.5, min_requests=4, window=10.0)
    w0 = h.HealthTable(hv, wv, ndeps, rows, 0, pol)
    w1 = h.HealthTable(hv, wv, ndeps, rows, 1, pol, w0.lock)
    w0.record(2, h.SUCCESS, 1.0)
    w1.record(2, h.SUCCESS, 1.5)
    w0.record(2, h.FAILURE, 2.0)
    assert w0.window_counts(2, 2.0) == (3.0, 1.0)
    assert w1.available(2, 2.0) == 0
    w1.record(2, h.FAILURE, 3.0)  # 2 of 4 -> rate 0.5 -> open, seen by both workers
    assert w0.available(2, 3.0) == 2
    assert w0.status(2, 3.0)["state"] == "open"
    assert w0.status(2, 3.0)["reason"] == "error_rate"
    assert w0.window_counts(2, 30.0) == (0.0, 0.0)  # the window moved on


# --- retries ------------------------------------------------------------------------------------


def test_backoff_schedule_exponential_with_jitter_bounds():
    assert backoff(1, "exponential", 0.1, 5.0, 0.9) == pytest.approx(0.1)
    assert backoff(2, "exponential", 0.1, 5.0, 0.0) == pytest.approx(0.1)
    assert backoff(2, "exponential", 0.1, 5.0, 1.0) == pytest.approx(0.2)
    assert backoff(4, "exponential", 0.1, 5.0, 0.5) == pytest.approx(0.1 + 0.35)
    assert backoff(20, "exponential", 0.1, 5.0, 0.999999) == pytest.approx(5.0, rel=1e-5)
    rnd = random.Random(3)
    for n in range(1, 12):
        d = backoff(n, "exponential", 0.1, 5.0, rnd.random())
        assert 0.1 <= d <= min(5.0, 0.1 * 2 ** (n - 1)) + 1e-12
    assert backoff(5, "constant", 0.3, 5.0, 0.7) == 0.3


def test_reset_after_headers():
    assert reset_after([(b"retry-after", b"3")]) == 3.0
    assert reset_after([(b"retry-after-ms", b"250"), (b"retry-after", b"3")]) == 0.25
    assert reset_after([(b"x-ratelimit-reset-requests", b"1m30s"),
                        (b"x-ratelimit-reset-tokens", b"20ms")]) == 90.0
    assert reset_after([(b"retry-after", b"Wed, 21 Oct 2015 07:28:10 GMT")],
                       now_wall=1445412480.0) == 10.0
    assert reset_after([(b"anthropic-ratelimit-requests-reset", b"2015-10-21T07:28:20Z")],
                       now_wall=1445412480.0) == 20.0
    assert reset_after([(b"x-request-id", b"abc")]) is None


def _err(status, kind=ErrorKind.UPSTREAM_STATUS, retry=None, headers=None, **kw):
    return HelixError(kind, "x", status=status, retry=retry, headers=headers, **kw)


def test_classify():
    ev, retry, wait = classify(_err(429, ErrorKind.RATE_LIMITED, Retry.YES,
                                    [(b"retry-after", b"2")]))
    assert (ev, retry, wait) == (h.RATE_LIMITED, True, 2.0)
    assert classify(_err(529, retry=Retry.YES))[:2] == (h.RATE_LIMITED, True)
    assert classify(_err(503, retry=Retry.YES))[:2] == (h.FAILURE, True)
    assert classify(HelixError(ErrorKind.CONNECT_REFUSED, "x"))[:2] == (h.CONNECT, True)
    assert classify(HelixError(ErrorKind.READ_TIMEOUT, "x"))[:2] == (h.FAILURE, True)
    assert classify(_err(400, retry=Retry.NO))[:2] == (h.SUCCESS, False)
    assert classify(_err(409, retry=Retry.YES))[:2] == (h.SUCCESS, False)  # never a 4xx
    assert classify(_err(401, retry=Retry.NO))[:2] == (h.FAILURE, False)


def test_context_overflow_detection():
    assert is_context_overflow(_err(400, code="context_length_exceeded"))
    assert is_context_overflow(HelixError(ErrorKind.UPSTREAM_STATUS,
                                          "prompt is too long: 300000 tokens > 200000 maximum",
                                          status=400))
    assert not is_context_overflow(_err(400, code="invalid_value"))
    assert not is_context_overflow(_err(500, code="context_length_exceeded"))
