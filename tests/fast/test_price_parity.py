"""The compiled price arithmetic and its pure-Python twin must give the same result, bit
for bit, or the same error (helix/_fast/price_c.pyx, price_py.py)."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace as NS

from hypothesis import example, given, settings
from hypothesis import strategies as st

from helix._fast import price_tokens_c, price_tokens_py, usage_cost_c, usage_cost_py
from helix.routing import models
from helix.schema.usage import Usage

PRICE = [price_tokens_py] + ([price_tokens_c] if price_tokens_c is not None else [])
USAGE = [usage_cost_py] + ([usage_cost_c] if usage_cost_c is not None else [])

COUNT = st.one_of(st.integers(0, 10**6), st.integers(-(2**60), 2**60),
                  st.sampled_from([0, 1, 2**53 - 1, 2**53, -(2**53), 2**63, -(2**63) - 1, 10**30]),
                  st.booleans(), st.floats(0, 10), st.just(math.nan), st.none())
PRICE_VALUE = st.one_of(st.none(), st.floats(0, 100),
                        st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 10))
INFO = st.one_of(st.none(), st.builds(NS, input_per_mtok=PRICE_VALUE, output_per_mtok=PRICE_VALUE,
                                      cached_input_per_mtok=PRICE_VALUE,
                                      cache_write_per_mtok=PRICE_VALUE))


def test_compiled_twins_are_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert price_tokens_c is not None and usage_cost_c is not None


def outcome(fn, *args):
    try:
        r = fn(*args)
    except Exception as exc:
        return type(exc)
    if isinstance(r, float):
        return ("float", math.copysign(1.0, r), r.hex())  # bit for bit, NaN and -0.0 too
    return ("other", r)


@settings(max_examples=1000, deadline=None)
@given(INFO, COUNT, COUNT, COUNT, COUNT)
@example(NS(input_per_mtok=0.15, output_per_mtok=0.6, cached_input_per_mtok=0.075,
            cache_write_per_mtok=None), 3000, 700, 1000, 1500)
def test_price_tokens_same_result(info, i, o, r, w):
    results = {outcome(fn, info, i, o, r, w) for fn in PRICE}
    assert len(results) == 1, results


@settings(max_examples=1000, deadline=None)
@given(INFO, COUNT, COUNT, COUNT, COUNT)
def test_usage_cost_same_result(info, i, o, r, w):
    usage = NS(input=i, output=o, cache_read=r, cache_write=w)
    results = {outcome(fn, info, usage) for fn in USAGE}
    assert len(results) == 1, results


def test_real_models_and_usage():
    info = models.lookup("gpt-4o-mini")
    usage = Usage(input=3000, output=700, cache_read=1000)
    expected = (2000 * 0.15 + 1000 * 0.075 + 700 * 0.6) / 1_000_000
    for fn in USAGE:
        assert fn(info, usage) == expected
    assert models.cost(info, usage) == expected
    assert models.cost(info, {"prompt_tokens": 3000, "completion_tokens": 700,
                              "prompt_tokens_details": {"cached_tokens": 1000}}) == expected
    assert models.cost(info, Usage(input="x", output=1)) is None  # malformed: None, no error
