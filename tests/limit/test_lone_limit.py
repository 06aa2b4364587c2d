"""The one-call admission of a lone request limit (helix._fast.gate, both builds): the same
decisions, state, headers and refusals as the store's general path, across processes too,
and picked by the Gate only for the configuration it covers."""

from __future__ import annotations

import os
import random
from types import SimpleNamespace as NS

import pytest

from helix._fast import LoneLimitC, LoneLimitPy, RowLocks, gate_py
from helix.errors import HelixError
from helix.limit import local
from helix.limit.policy import RESET_MS, Check, Result, rate_headers, refusal, reset_bytes
from tests.limit.test_local import _fork, clock_at, make_shm, make_store

BUILDS = [LoneLimitPy] + ([LoneLimitC] if LoneLimitC is not None else [])
S = 1_000_000_000
RPM, RPH, RPD = 0, 1, 2


def test_compiled_build_when_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert LoneLimitC is not None


def test_row_layout_is_the_stores():
    assert (gate_py.COLS, gate_py.LOCK, gate_py.HASH, gate_py.TOUCHED, gate_py.STATE) == (
        local.COLS, local.LOCK, local.HASH, local.TOUCHED, local.STATE)


@pytest.fixture(params=BUILDS, ids=lambda c: c.__module__)
def build(request):
    return request.param


class Refused(Exception):
    pass


def _refused(ctx, remaining, reset, retry):
    raise Refused(remaining, reset, retry)


def _ctx():
    return NS(response_headers=[])


@pytest.mark.parametrize("unit,limit", [(RPM, 5), (RPH, 4), (RPD, 3), (RPM, 10**8)])
def test_decides_and_reports_like_the_general_path(build, unit, limit):
    rng = random.Random(11 + unit)
    clock = clock_at(7000 * S)
    fast_store = make_store(make_shm(), RowLocks, clock)
    slow = make_store(make_shm(), RowLocks, clock)
    check = Check("g", unit, limit)
    fast = build(fast_store, check, _refused, reset_bytes, RESET_MS)
    steps = [0, 0, 0, 1, S // 1000, S // 10, 3 * S, 20 * S, 700 * S, 5000 * S]
    refusals = 0
    for _ in range(300):
        clock.box[0] += rng.choice(steps)
        ctx = _ctx()
        try:
            fast.admit(ctx)
            got = None
        except Refused as exc:
            got = exc.args
        want = slow.admit([check], (1, 0, 0))
        assert ctx.response_headers == rate_headers([check], want)
        if want.allowed:
            assert got is None
        else:
            refusals += 1
            assert got == (want.remaining[0], want.reset[0], want.retry_after)
    assert refusals > 0 or limit > 1000
    row = fast_store._where[fast_store._hash("g")]
    srow = slow._where[slow._hash("g")]
    for col in range(local.COLS):
        if col != local.LOCK:
            assert fast_store.view[row * local.COLS + col] == slow.view[srow * local.COLS + col]


def test_finds_its_row_again_after_an_eviction(build):
    """Other scopes fill a small table and take the limit's row over: the next admission
    finds (claims) a row again instead of counting on another scope's row."""
    clock = clock_at(1000 * S)
    store = make_store(make_shm(rows=16), RowLocks, clock)
    check = Check("g", RPM, 2)
    lone = build(store, check, _refused, reset_bytes, RESET_MS)
    lone.admit(_ctx())
    first = lone.base
    clock.box[0] += 1
    for i in range(200):  # every row is taken over at least once
        clock.box[0] += 1
        assert store.admit([Check(f"u:{i}", RPM, 1)], (1, 0, 0)).allowed
    assert store.view[first + local.HASH] != store._hash("g")
    lone.admit(_ctx())  # the scope's state went with its row: a fresh bucket again
    assert store.view[lone.base + local.HASH] == store._hash("g")
    lone.admit(_ctx())
    with pytest.raises(Refused):
        lone.admit(_ctx())


def test_exact_across_processes(build):
    shm = make_shm()
    limit = 50

    def work():
        store = make_store(shm, RowLocks)
        lone = build(store, Check("g", RPM, limit), _refused, reset_bytes, RESET_MS)
        n = 0
        for _ in range(60):
            try:
                lone.admit(_ctx())
                n += 1
            except Refused:
                pass
        return n

    assert sum(_fork(work, 4)) == limit


def _gate(text: str):
    import tempfile

    from helix.config import load_file
    from helix.phases.admit import Gate

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
        fh.write(text)
        fh.flush()
        config = load_file(fh.name, env={})
    from helix.limit.keys import KeyTable

    return Gate(config, None, None, KeyTable.from_config(config.auth))


BASE = """
providers:
  - {name: m, type: openai_compatible, base_url: "http://127.0.0.1:9/v1", api_key: k,
     models: [gpt-4o-mini]}
"""


def test_gate_uses_it_only_for_a_lone_global_request_limit():
    from helix._fast import LoneLimit

    for extra in ("rate_limits: {global: {requests_per_minute: 5}}",
                  "auth: {keys: [{key: hx-key-000001}]}\n"
                  "rate_limits: {global: {requests_per_day: 5}}"):
        lone = _gate(BASE + extra)
        assert isinstance(lone.admit.__self__, LoneLimit)
    for extra in (
        "rate_limits: {global: {requests_per_minute: 5, requests_per_hour: 50}}",
        "rate_limits: {global: {tokens_per_minute: 5}}",
        "rate_limits: {global: {requests_per_minute: 5}, per_user: {requests_per_minute: 1}}",
        "rate_limits: {global: {requests_per_minute: 5}, per_team: {requests_per_minute: 1}}",
        "auth: {keys: [{key: hx-key-000001}]}\n"
        "rate_limits: {global: {requests_per_minute: 5}, per_key: {requests_per_minute: 1}}",
        "auth: {keys: [{key: hx-key-000001, limits: {requests_per_minute: 1}}]}\n"
        "rate_limits: {global: {requests_per_minute: 5}}",
        "rate_limits: {global: {requests_per_minute: 5}, queue: {max_wait: 1}}",
        "rate_limits: {per_user: {requests_per_minute: 5}}",
    ):
        gate = _gate(BASE + extra)
        assert not isinstance(getattr(gate.admit, "__self__", None), LoneLimit), extra


def test_gate_refusal_is_the_stores_429_and_counted():
    from helix.limit.policy import Check as C

    counted = []
    gate = _gate(BASE + "rate_limits: {global: {requests_per_minute: 1}}")
    gate.metrics = NS(rate_limited=counted.append)
    ctx = NS(response_headers=[], principal=None)
    gate.admit(ctx)
    ctx = NS(response_headers=[], principal=None)
    with pytest.raises(HelixError) as info:
        gate.admit(ctx)
    err = info.value
    want = refusal(C("g", RPM, 1), Result(False, 0, 1.0, [0], [1.0], [0]), 1)
    assert err.kind == want.kind and err.status == want.status
    assert "Rate limit reached (global)" in str(err.message)
    assert dict(err.headers)[b"retry-after"] >= b"1"
    assert counted == ["global"]
    assert [n for n, _ in ctx.response_headers] == [
        b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests",
        b"x-ratelimit-reset-requests"]
    assert dict(ctx.response_headers)[b"x-ratelimit-remaining-requests"] == b"0"
