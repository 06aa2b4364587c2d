"""The Balancer over real config: health-aware selection, strategies, snapshot, config checks."""

import random

import msgspec
import pytest

from helix import config as c
from helix.routing import health as h
from helix.routing.balancer import Balancer
from helix.routing.registry import ModelRegistry


def cfg(extra: dict | None = None, models=("m",), providers=("a", "b", "c")):
    tree = {
        "providers": [
            {"name": p, "type": "openai_compatible", "base_url": f"http://{p}.test/v1",
             "api_key": "k", "models": list(models)}
            for p in providers
        ]
    }
    tree.update(extra or {})
    return msgspec.convert(tree, c.Config, dec_hook=c._dec_hook)


def balancer(config, seed=1):
    reg = ModelRegistry(config)
    return reg, Balancer(reg, config, rng=random.Random(seed))


def test_latency_based_prefers_fast_and_skips_open():
    reg, bal = balancer(cfg())
    a, b, cc = reg.resolve("m")
    now = 100.0
    for d, lat in ((a, 0.02), (b, 0.2), (cc, 0.2)):
        bal.begin(d)
        bal.end(d, h.SUCCESS, now, lat)
    picks = [bal.select(reg.resolve("m"), now).provider for _ in range(300)]
    assert picks.count("a") / 300 > 0.6
    for _ in range(5):  # open a's circuit
        bal.end(a, h.FAILURE, now)
    assert bal.health.status(a.index, now)["state"] == "open"
    picks = {bal.select(reg.resolve("m"), now).provider for _ in range(100)}
    assert "a" not in picks
    # after the cooldown: exactly one half-open trial goes to a
    later = now + 31.0
    first = bal.select(reg.resolve("m"), later)
    assert first.provider == "a"
    assert all(bal.select(reg.resolve("m"), later).provider != "a" for _ in range(20))
    bal.end(a, h.SUCCESS, later, 0.02)
    assert bal.health.status(a.index, later)["state"] == "healthy"


def test_retry_prefers_untried_and_panic_rules():
    reg, bal = balancer(cfg(providers=("a", "b")))
    a, b = reg.resolve("m")
    assert bal.select(reg.resolve("m"), 1.0, tried=[a]) is b
    bal.end(a, h.RATE_LIMITED, 1.0, retry_after=10.0)
    bal.end(b, h.RATE_LIMITED, 1.0, retry_after=10.0)
    assert bal.select(reg.resolve("m"), 2.0, panic=False) is None
    assert bal.select(reg.resolve("m"), 2.0, panic=True) in (a, b)
    assert bal.select(reg.resolve("m"), 11.0, panic=False) in (a, b)


def test_round_robin_and_weighted():
    reg, bal = balancer(cfg({"load_balancing": {"strategy": "round_robin"}}))
    seq = [bal.select(reg.resolve("m"), 1.0).provider for _ in range(6)]
    assert seq == ["a", "b", "c", "a", "b", "c"]
    reg, bal = balancer(cfg({"load_balancing": {"strategy": "weighted",
                                                "weights": {"a": 0, "b": 1, "c/m": 3}}}))
    picks = [bal.select(reg.resolve("m"), 1.0).provider for _ in range(4000)]
    assert picks.count("a") == 0
    assert picks.count("c") / picks.count("b") == pytest.approx(3.0, rel=0.15)


def test_per_model_strategy_and_cost_based():
    config = cfg(
        {
            "load_balancing": {"models": {"gpt-4o-mini": {"strategy": "cost_based"}}},
            "models": [{"id": "gpt-4o-mini", "provider": "openai_compatible",
                        "input_per_mtok": 1.0, "output_per_mtok": 1.0}],
        },
        models=("gpt-4o-mini",),
    )
    reg = ModelRegistry(config)
    from helix.routing.models import Registry

    class Prices:
        def __init__(self):
            self.base = Registry.from_config(config)

        def lookup(self, model_id, ptype):
            return self.base.lookup(model_id, ptype)

    bal = Balancer(reg, config, rng=random.Random(1), models=Prices())
    group = bal.groups[id(reg.resolve("gpt-4o-mini"))]
    assert group.strategy == "cost_based" and group.fallback == "latency_based"
    assert bal.select(reg.resolve("gpt-4o-mini"), 1.0) is not None


def test_cost_based_prefers_cheapest():
    reg, bal = balancer(cfg({"load_balancing": {"strategy": "cost_based"}}))
    group = bal.groups[id(reg.resolve("m"))]
    group.prices = [(5.0, 5.0), (1.0, 1.0), None]
    assert {bal.select(reg.resolve("m"), 1.0).provider for _ in range(50)} == {"b"}
    bal.end(reg.resolve("m")[1], h.RATE_LIMITED, 1.0, retry_after=30)
    assert {bal.select(reg.resolve("m"), 2.0).provider for _ in range(50)} == {"a"}


def test_snapshot_fields():
    reg, bal = balancer(cfg())
    a = reg.resolve("m")[0]
    bal.begin(a)
    bal.end(a, h.SUCCESS, 10.0, 0.05)
    bal.begin(a)
    snap = {s["deployment"]: s for s in bal.snapshot(10.0)}
    item = snap["a/m"]
    assert item["latency_ms"] == pytest.approx(50.0)
    assert item["in_flight"] == 1
    assert item["state"] == "healthy" and item["cooldown_left_s"] == 0.0
    assert item["strategy"] == "latency_based"
    assert snap["b/m"]["latency_ms"] is None


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"load_balancing": {"fallback": "round_robin"}}, "only strategy cost_based"),
        ({"load_balancing": {"strategy": "weighted", "weights": {"zzz": 1}}}, "weights.zzz"),
        ({"load_balancing": {"weights": {"a": 1}}}, "only by strategy weighted"),
        ({"load_balancing": {"models": {"nope": {"strategy": "round_robin"}}}}, "models.nope"),
        ({"load_balancing": {"health": {"error_rate": 0}}}, "error_rate"),
        ({"resilience": {"fallbacks": [{"primary": "m", "fallback": "ghost"}]}}, "ghost"),
        ({"resilience": {"fallbacks": [{"primary": "m", "fallback": "m"}]}}, "itself"),
        ({"resilience": {"retries": {"initial_delay": 3, "max_delay": 1}}}, "initial_delay"),
        ({"resilience": {"context_window_fallbacks": {"m": "x/y"}}}, "x/y"),
    ],
)
def test_config_refusals(extra, match):
    with pytest.raises(c.ConfigError, match=match):
        c.check_supported(cfg(extra))


def test_config_accepts_supported_sections():
    c.check_supported(cfg({
        "load_balancing": {"strategy": "cost_based", "fallback": "round_robin",
                           "ewma_decay": "5s", "health": {"cooldown": "10s"}},
        "resilience": {"retries": {"max_attempts": 3}, "deadline": "30s",
                       "fallbacks": [{"primary": "m", "fallback": ["a/other"]}],
                       "context_window_fallbacks": {"m": "b/m"}},
    }))
