"""Client-chosen model ids (issue 14.1): bounded length, bounded LRU, never listed."""

import pytest

from helix.config import load_env
from helix.errors import HelixError
from helix.routing.registry import MAX_MODEL_CHARS, ModelRegistry


def reg():
    return ModelRegistry(load_env({"OPENAI_API_KEY": "sk-123456789"}))


def test_long_model_id_is_400_param_model():
    r = reg()
    with pytest.raises(HelixError) as info:
        r.resolve("openai/" + "x" * MAX_MODEL_CHARS)
    err = info.value
    assert err.status == 400 and err.param == "model" and err.type == "invalid_request_error"
    assert "x" * 40 not in err.message  # the client's input is not echoed back
    # A bare unknown long name is refused the same way (not a 404 echoing it).
    with pytest.raises(HelixError) as info:
        r.resolve("y" * 10_000)
    assert info.value.status == 400


def test_control_characters_are_400():
    with pytest.raises(HelixError) as info:
        reg().resolve("openai/gpt\r\nx-injected: 1")
    assert info.value.status == 400 and info.value.param == "model"


def test_id_at_the_limit_passes_through():
    r = reg()
    name = "openai/" + "m" * (MAX_MODEL_CHARS - len("openai/"))
    (dep,) = r.resolve(name)
    assert dep.model_id == name.split("/", 1)[1]


def test_dynamic_deployments_are_lru_bounded_by_count_and_bytes():
    r = reg()
    configured = len(r.all_deployments())
    r.MAX_DYNAMIC = 50
    for i in range(500):
        r.resolve(f"openai/model-{i}")
    assert r.dynamic_count == 50
    # LRU: a recently used id survives, the oldest went.
    r.resolve("openai/model-460")
    for i in range(500, 540):
        r.resolve(f"openai/model-{i}")
    assert r.resolve("openai/model-460")[0] is r.resolve("openai/model-460")[0]
    assert "openai/model-0" not in r._dynamic
    # Bytes: long ids fill the byte budget long before the count.
    r.MAX_DYNAMIC = 10_000
    for i in range(5000):
        r.resolve(f"openai/{i:06d}" + "z" * 240)
    assert r.dynamic_bytes <= r.MAX_DYNAMIC_BYTES
    assert r.dynamic_count < 5000
    # Never listed with the configured deployments (/status, balancer tables).
    assert len(r.all_deployments()) == configured
