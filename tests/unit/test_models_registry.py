"""The model table: packaged data validity, lookups, cost arithmetic, config overrides."""

import json
import re
from importlib import resources

import msgspec
import pytest

from helix import config as helix_config
from helix.providers import catalog
from helix.providers.openai import OpenAIStreamRelay, decode_usage
from helix.routing import models
from helix.routing.models import DEFAULT, ModelInfo, Registry, cost, lookup
from helix.schema.usage import Usage


def _raw():
    return json.loads(resources.files("helix.data").joinpath("models.json").read_bytes())


def _cfg(doc: dict):
    return helix_config._convert(doc, "test")


# --- the packaged data ----------------------------------------------------------------------


def test_data_header_and_size():
    raw = _raw()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw["prices_as_of"])
    assert raw["prices_as_of"] == models.PRICES_AS_OF
    assert "list prices" in raw["source"]
    assert 60 <= len(raw["models"]) <= 160
    assert len(DEFAULT) == len(raw["models"])


def test_every_entry_has_prices_or_says_unknown():
    for e in _raw()["models"]:
        # Both keys are always written: a number (0 = free) or null (explicitly unknown).
        assert "input_per_mtok" in e and "output_per_mtok" in e, e["id"]
        for key in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok",
                    "cache_write_per_mtok"):
            v = e.get(key)
            assert v is None or (isinstance(v, int | float) and 0 <= v < 1000), (e["id"], key)
        if e.get("cached_input_per_mtok") is not None:
            assert e["cached_input_per_mtok"] <= e["input_per_mtok"], e["id"]
        if e.get("cache_write_per_mtok") is not None:
            assert e["cache_write_per_mtok"] >= e["input_per_mtok"], e["id"]
        if e["mode"] == "embedding":
            assert e["output_per_mtok"] == 0, e["id"]
        assert e["context_window"] is None or e["context_window"] > 0
        assert e["max_output"] is None or 0 < e["max_output"] <= e["context_window"], e["id"]


def test_no_duplicate_ids_or_aliases():
    owner: dict[str, str] = {}
    for e in _raw()["models"]:
        names = {e["id"], *e["aliases"], *e["provider_ids"].values()}
        for name in names:
            key = name.lower()
            first = owner.setdefault(key, e["id"])
            assert first == e["id"], f"{name} in {first} and {e['id']}"


def test_providers_are_known_types_and_all_are_covered():
    raw = _raw()["models"]
    types = set(catalog.TYPE_MODULES)
    for e in raw:
        assert e["provider"] in types, e["id"]
        assert set(e["provider_ids"]) <= types, e["id"]
    covered = {e["provider"] for e in raw} | {t for e in raw for t in e["provider_ids"]}
    wanted = {
        "openai", "azure", "anthropic", "gemini", "vertex", "bedrock", "mistral", "cohere",
        "groq", "together", "deepseek", "xai", "perplexity", "fireworks",
    }
    assert wanted <= covered


def test_default_models_of_built_providers_are_priced():
    from helix.providers.openai import SPECS

    for ptype, spec in SPECS.items():
        for model in spec.default_models:
            info = lookup(model, ptype)
            assert info is not None and info.input_per_mtok is not None, (ptype, model)


# --- lookups ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ptype", "expected"),
    [
        ("gpt-4o", None, "gpt-4o"),
        ("gpt-4o", "openai", "gpt-4o"),
        ("gpt-4o-2024-08-06", "openai", "gpt-4o"),
        ("gpt-4o-2024-05-13", "openai", "gpt-4o-2024-05-13"),  # its own, older price
        ("claude-3-5-sonnet", "anthropic", "claude-3-5-sonnet-20241022"),
        ("claude-3-5-sonnet-latest", None, "claude-3-5-sonnet-20241022"),
        ("CLAUDE-3-5-SONNET-20241022", "anthropic", "claude-3-5-sonnet-20241022"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "bedrock", "claude-3-5-sonnet-20241022"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "bedrock", "claude-3-5-sonnet-20241022"),
        ("claude-3-5-sonnet-v2@20241022", "vertex", "claude-3-5-sonnet-20241022"),
        ("gemini-2.0-flash-001", "gemini", "gemini-2.0-flash"),
        ("models/gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
        ("gemini-2.5-pro", "vertex", "gemini-2.5-pro"),
        ("gpt-35-turbo", "azure", "gpt-3.5-turbo"),
        ("gpt-4o", "azure", "gpt-4o"),
        ("openai/gpt-4o-mini", "openai_compatible", "gpt-4o-mini"),
        ("anthropic/claude-3.5-sonnet", "openrouter", "claude-3-5-sonnet-20241022"),
        ("gpt-4.1-2025-12-01", "openai", "gpt-4.1"),  # an unseen date suffix
        ("mistral-large-latest", "mistral", "mistral-large-2411"),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together", None),
        ("llama-3.3-70b-versatile", "groq", "llama-3.3-70b-versatile"),
        ("accounts/fireworks/models/llama-v3p3-70b-instruct", "fireworks", None),
        ("text-embedding-3-small", "openai", "text-embedding-3-small"),
        # current families (prices of 2026-12)
        ("claude-opus-4-5", "anthropic", "claude-opus-4-5-20251101"),
        ("anthropic.claude-sonnet-4-6", "bedrock", "claude-sonnet-4-6"),
        ("us.anthropic.claude-opus-4-6-v1", "bedrock", "claude-opus-4-6"),
        ("claude-sonnet-5-5", "anthropic", "claude-sonnet-5-5"),
        ("gpt-6.1-sol", "azure", "gpt-6.1-sol"),
        ("openai/gpt-6-luna", "openrouter", "gpt-6-luna"),
        ("gemini-3.5-flash", "vertex", "gemini-3.5-flash"),
    ],
)
def test_lookup_resolves(name, ptype, expected):
    info = lookup(name, ptype)
    assert info is not None
    assert info.id == (expected or name)


def test_provider_ids_and_fields():
    info = lookup("claude-3-5-sonnet")
    assert info.provider == "anthropic"
    assert info.provider_ids["bedrock"] == "anthropic.claude-3-5-sonnet-20241022-v2:0"
    assert info.provider_ids["vertex"] == "claude-3-5-sonnet-v2@20241022"
    assert "claude-3-5-sonnet-latest" in info.aliases
    assert info.mode == "chat" and info.context_window == 200000 and info.max_output == 8192
    assert lookup("text-embedding-3-large").mode == "embedding"
    with pytest.raises(AttributeError):
        info.input_per_mtok = 0.0  # frozen


@pytest.mark.parametrize(
    ("name", "ptype"),
    [
        ("no-such-model", None),
        ("no-such-model", "openai"),
        ("", None),
        ("gpt-4o", "groq"),  # a hosted provider's price is not another's
        ("llama-3.3-70b-versatile", "together"),
        ("gpt-4o-mini", "ollama"),  # self-hosted: no list price applies
        ("gpt-4o-mini", "vllm"),
    ],
)
def test_lookup_unknown_is_none(name, ptype):
    assert lookup(name, ptype) is None


def test_lookup_is_cached_and_tolerates_odd_input():
    reg = Registry(DEFAULT.entries.values())
    first = reg.lookup("us.anthropic.claude-3-haiku-20240307-v1:0", "bedrock")
    assert first is not None and first.id == "claude-3-haiku-20240307"
    assert reg.lookup("us.anthropic.claude-3-haiku-20240307-v1:0", "bedrock") is first
    assert reg.lookup(None) is None  # type: ignore[arg-type]


# --- cost arithmetic ------------------------------------------------------------------------


def _info(inp, out, cached=None):
    return ModelInfo(id="m", provider="openai", input_per_mtok=inp, output_per_mtok=out,
                     cached_input_per_mtok=cached)


def cost_of(info, usage: dict | None):
    """cost() of an OpenAI usage object, as forward prices a pass-through answer."""
    return cost(info, Usage.from_openai(usage))


def test_cost_prices_cache_writes_apart():
    u = Usage(input=1000, output=10, cache_read=200, cache_write=300)
    info = ModelInfo(id="m", provider="anthropic", input_per_mtok=3.0, output_per_mtok=15.0,
                     cached_input_per_mtok=0.3)
    # No cache-write price: writes at the input price.
    assert cost(info, u) == pytest.approx((800 * 3.0 + 200 * 0.3 + 10 * 15.0) / 1e6)


def test_cost_plain():
    usage = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
    assert cost_of(_info(2.5, 10.0), usage) == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6)


def test_cost_with_cached_tokens():
    usage = {"prompt_tokens": 1000, "completion_tokens": 500,
             "prompt_tokens_details": {"cached_tokens": 400}}
    expected = (600 * 2.5 + 400 * 1.25 + 500 * 10.0) / 1e6
    assert cost_of(_info(2.5, 10.0, 1.25), usage) == pytest.approx(expected)
    # No cached price: cached tokens are billed at the input price.
    assert cost_of(_info(2.5, 10.0), usage) == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6)
    # More cached than prompt (a broken upstream) never goes negative.
    usage["prompt_tokens_details"]["cached_tokens"] = 5000
    assert cost_of(_info(2.5, 10.0, 1.25), usage) == pytest.approx((1000 * 1.25 + 500 * 10) / 1e6)


def test_cost_real_models():
    usage = {"prompt_tokens": 2_000_000, "completion_tokens": 1_000_000,
             "prompt_tokens_details": {"cached_tokens": 1_000_000}}
    assert cost_of(lookup("gpt-4o"), usage) == pytest.approx(2.5 + 1.25 + 10.0)
    assert cost_of(lookup("claude-3-5-sonnet"), usage) == pytest.approx(3.0 + 0.3 + 15.0)
    emb = {"prompt_tokens": 1_000_000, "total_tokens": 1_000_000}
    assert cost_of(lookup("text-embedding-3-small"), emb) == pytest.approx(0.02)


def test_cost_prices_cache_writes():
    info = ModelInfo(id="m", provider="anthropic", input_per_mtok=3.0, output_per_mtok=15.0,
                     cached_input_per_mtok=0.3, cache_write_per_mtok=3.75)
    usage = {"prompt_tokens": 3000, "completion_tokens": 100,
             "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 1500}}
    expected = (500 * 3.0 + 1000 * 0.3 + 1500 * 3.75 + 100 * 15.0) / 1e6
    assert cost(info, usage) == pytest.approx(expected)
    # No cache-write price: written tokens cost the input price, as before.
    plain = msgspec.structs.replace(info, cache_write_per_mtok=None)
    assert cost(plain, usage) == pytest.approx((2000 * 3.0 + 1000 * 0.3 + 100 * 15.0) / 1e6)
    # Writes beyond the uncached prompt (a broken upstream) are capped, never negative.
    usage["prompt_tokens_details"]["cache_write_tokens"] = 10_000
    assert cost(info, usage) == pytest.approx((1000 * 0.3 + 2000 * 3.75 + 100 * 15.0) / 1e6)


def test_cost_takes_a_usage_struct_with_the_same_numbers():
    from helix.schema.usage import Usage

    info = lookup("claude-sonnet-4-5")
    as_dict = {"prompt_tokens": 3000, "completion_tokens": 700,
               "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 1500},
               "completion_tokens_details": {"reasoning_tokens": 600}}
    as_struct = Usage(input=3000, output=700, cache_read=1000, cache_write=1500, reasoning=600)
    assert cost(info, as_struct) == pytest.approx(cost(info, as_dict))
    assert models.price_tokens(info, 3000, 700, 1000, 1500, 600) == pytest.approx(
        cost(info, as_dict))
    assert cost(info, object()) is None


def test_anthropic_cache_creation_is_priced_as_a_cache_write():
    from helix.providers.anthropic.response import usage_of
    from helix.schema.anthropic import Usage

    usage = usage_of(Usage(input_tokens=100, cache_creation_input_tokens=2000,
                           cache_read_input_tokens=0, output_tokens=10))
    assert (usage.input, usage.cache_write, usage.cache_read) == (2100, 2000, 0)
    info = lookup("claude-sonnet-4-5", "anthropic")
    assert info.cache_write_per_mtok == pytest.approx(info.input_per_mtok * 1.25)
    expected = (100 * info.input_per_mtok + 2000 * info.cache_write_per_mtok
                + 10 * info.output_per_mtok) / 1e6
    assert cost(info, usage) == pytest.approx(expected)


def test_bedrock_cache_writes_are_carried_for_pricing():
    from helix.providers.bedrock import usage_of
    from helix.schema.bedrock import TokenUsage

    usage = usage_of(TokenUsage(inputTokens=10, outputTokens=5, cacheWriteInputTokens=300))
    assert (usage.input, usage.cache_write) == (310, 300)


def test_prices_as_of_is_the_files_date():
    assert models.prices_as_of() == _raw()["prices_as_of"]


def test_cost_unknown_or_malformed_is_none():
    usage = {"prompt_tokens": 10, "completion_tokens": 5}
    assert cost_of(None, usage) is None
    assert cost_of(_info(None, 1.0), usage) is None
    assert cost_of(_info(1.0, None), usage) is None  # completion tokens with no output price
    assert cost_of(_info(1.0, None), {"prompt_tokens": 10}) == pytest.approx(1e-5)
    assert cost_of(_info(1.0, 1.0), {"prompt_tokens": "ten"}) is None
    # A details member that is not an object is no details: the prompt is all uncached.
    assert cost_of(_info(1.0, 1.0), {"prompt_tokens": 10, "prompt_tokens_details": 3}) == \
        pytest.approx(1e-5)
    assert cost_of(_info(1.0, 1.0), None) is None
    assert cost_of(_info(0.0, 0.0), usage) == 0.0  # free is a price, not unknown
    assert DEFAULT.cost("no-such-model", "openai", Usage.from_openai(usage)) is None


# --- usage decoding -----------------------------------------------------------------------


def test_decode_usage():
    body = b'{"id":"x","choices":[{"message":{"content":"a \\"usage\\": 1"}}],' \
           b'"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,' \
           b'"prompt_tokens_details":{"cached_tokens":2}}}'
    assert decode_usage(body) == {
        "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 2},
    }
    assert decode_usage(b'{"id":"x"}') is None
    assert decode_usage(b'{"usage":null}') is None
    assert decode_usage(b'{"usage":[1]}') is None
    assert decode_usage(b"not json") is None


def test_stream_relay_tracks_usage_and_relays_bytes_unchanged():
    chunks = [
        b'data: {"choices":[{"delta":{"content":"hi \\"usage\\": {}"}}],"usage":null}\n\n',
        b'data: {"choices":[],"us',  # an event split across reads
        b'age": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}\r\n\r\n',
        b"data: [DONE]\n\n",
    ]
    relay = OpenAIStreamRelay()
    out = b"".join(relay.feed(c) for c in chunks) + relay.close()
    assert out == b"".join(chunks)
    assert relay.usage.to_openai() == {"prompt_tokens": 5, "completion_tokens": 2,
                                       "total_tokens": 7}
    plain = OpenAIStreamRelay()
    plain.feed(chunks[0] + chunks[3])
    assert plain.usage is None


def test_stream_relay_choice_follows_include_usage():
    from helix.providers.openai import OpenAIAdapter
    from helix.schema.openai import chat_request_decoder

    class Dep:
        provider_type = "openai"

    ad = OpenAIAdapter()
    asked = chat_request_decoder.decode(
        b'{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}'
    )
    unasked = chat_request_decoder.decode(b'{"model":"m","messages":[],"stream":true}')
    assert isinstance(ad.native_relay("chat", Dep(), asked), OpenAIStreamRelay)
    assert ad.native_relay("chat", Dep(), unasked).usage is None
    assert not isinstance(ad.native_relay("chat", Dep(), unasked), OpenAIStreamRelay)
    Dep.provider_type = "mistral"  # compatible servers may send usage unasked: keep it
    assert isinstance(ad.native_relay("chat", Dep(), unasked), OpenAIStreamRelay)


# --- config overrides -------------------------------------------------------------------------


def test_config_without_models_uses_the_default_table():
    assert Registry.from_config(_cfg({})) is DEFAULT
    assert Registry.from_config(None) is DEFAULT


def test_config_overrides_merge():
    cfg = _cfg({"models": [
        # Override a packaged model by an alias: the named fields change, the rest stays.
        {"id": "claude-3-5-sonnet", "input_per_mtok": 2.0, "aliases": ["house-sonnet"]},
        # A new model for any provider.
        {"id": "house-model-v1", "input_per_mtok": 1.0, "output_per_mtok": 2.0,
         "context_window": 32768},
        # A packaged model priced differently at one provider only.
        {"id": "gpt-4o", "provider": "azure", "input_per_mtok": 2.75, "output_per_mtok": 11.0},
        # A self-hosted model priced explicitly.
        {"id": "llama3.1:8b", "provider": "ollama", "input_per_mtok": 0, "output_per_mtok": 0},
    ]})
    reg = Registry.from_config(cfg)
    sonnet = reg.lookup("claude-3-5-sonnet-20241022", "anthropic")
    assert sonnet.input_per_mtok == 2.0 and sonnet.output_per_mtok == 15.0
    assert sonnet.max_output == 8192 and sonnet.provider == "anthropic"
    assert reg.lookup("house-sonnet", "anthropic") is sonnet
    assert reg.lookup("anthropic.claude-3-5-sonnet-20241022-v2:0", "bedrock") is sonnet

    house = reg.lookup("house-model-v1", "openai_compatible")
    assert house is not None and house.provider is None and house.context_window == 32768
    assert reg.lookup("house-model-v1", "vllm") is house  # no provider: applies anywhere

    assert reg.lookup("gpt-4o", "azure").input_per_mtok == 2.75
    assert reg.lookup("gpt-4o", "openai").input_per_mtok == 2.5  # untouched elsewhere
    assert reg.lookup("gpt-4o").input_per_mtok == 2.5

    free = reg.lookup("llama3.1:8b", "ollama")
    assert cost_of(free, {"prompt_tokens": 10, "completion_tokens": 10}) == 0.0

    # The packaged default table is never modified by a config.
    assert lookup("claude-3-5-sonnet").input_per_mtok == 3.0
    assert lookup("house-model-v1") is None
    assert len(reg) == len(DEFAULT) + 3


def test_config_models_validation():
    with pytest.raises(helix_config.ConfigError, match=r"models\[0\]\.input_per_mtok"):
        _cfg({"models": [{"id": "x", "input_per_mtok": -1}]})
    with pytest.raises(helix_config.ConfigError, match="unknown provider type 'nope'"):
        _cfg({"models": [{"id": "x", "provider": "nope"}]})
    with pytest.raises(helix_config.ConfigError, match="unknown key 'price'"):
        _cfg({"models": [{"id": "x", "price": 1}]})
    with pytest.raises(helix_config.ConfigError, match="duplicate model"):
        _cfg({"models": [{"id": "x"}, {"id": "X"}]})
    with pytest.raises(helix_config.ConfigError, match=r"models\[0\]\.context_window"):
        _cfg({"models": [{"id": "x", "context_window": 0}]})
    ok = _cfg({"models": [{"id": "x", "provider": "groq", "mode": "embedding"}]})
    assert msgspec.to_builtins(ok.models[0])["mode"] == "embedding"
