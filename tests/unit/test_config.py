import pytest

from helix import config as c


def load_text(tmp_path, text, env=None):
    p = tmp_path / "helix.yaml"
    p.write_text(text)
    return c.load_file(str(p), env or {})


SEED_EXAMPLE = """
providers:
  - name: openai
    type: openai
    api_key: ${OPENAI_API_KEY}
    models: [gpt-4o, gpt-4o-mini, gpt-3.5-turbo]
  - name: anthropic
    type: anthropic
    api_key: ${ANTHROPIC_API_KEY}
    models: [claude-3-5-sonnet, claude-3-5-haiku]
  - name: bedrock
    type: bedrock
    region: us-east-1
    models: [anthropic.claude-3-5-sonnet-20241022-v2:0]
load_balancing:
  strategy: latency_based
rate_limits:
  global:
    requests_per_minute: 1000
    tokens_per_hour: 1000000
    cost_per_day: 100
  per_user:
    requests_per_minute: 60
  per_team:
    requests_per_hour: 500
    cost_per_day: 50
caching:
  backend: redis
  redis_url: redis://localhost:6379
  ttl: 3600
  rules:
    - path: "//chat/completions"
      ttl: 3600
      cache_key_include: [model, messages, temperature]
resilience:
  retries:
    max_attempts: 3
    backoff: exponential
    initial_delay: 100ms
    max_delay: 5s
  fallbacks:
    - primary: openai/gpt-4o
      fallback: anthropic/claude-3-5-sonnet
observability:
  helicone:
    api_key: ${HELICONE_API_KEY}
    base_url: https://api.helicone.ai
    properties: {environment: production}
  tracing: {enabled: true, endpoint: "http://jaeger:14268/api/traces"}
  metrics: {enabled: true, prometheus_endpoint: /metrics}
  logging: {level: info, format: json}
"""


def test_seed_readme_config_is_accepted_whole(tmp_path):
    env = {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "HELICONE_API_KEY": "h"}
    cfg = load_text(tmp_path, SEED_EXAMPLE, env)
    assert cfg.rate_limits.global_.requests_per_minute == 1000
    assert cfg.resilience.retries.initial_delay == pytest.approx(0.1)
    assert cfg.resilience.retries.max_delay == 5.0
    assert cfg.caching.rules[0].cache_key_include == ["model", "messages", "temperature"]
    # Every section of the user's README is built: nothing in it is refused.
    c.check_supported(cfg)
    assert [p.type for p in cfg.providers] == ["openai", "anthropic", "bedrock"]


def test_interpolation_and_defaults(tmp_path):
    cfg = load_text(
        tmp_path,
        "server: {port: '${PORT:-9001}', host: '${H}'}\n"
        "providers: [{name: o, type: openai, api_key: 'pre-${K}-$$x', models: [m]}]\n",
        {"H": "0.0.0.0", "K": "secret"},
    )
    assert cfg.server.port == 9001 and cfg.server.host == "0.0.0.0"
    assert cfg.providers[0].api_key == "pre-secret-$x"


def test_missing_variable_names_the_path(tmp_path):
    with pytest.raises(c.ConfigError, match=r"providers\[0\]\.api_key: environment variable X"):
        load_text(tmp_path, "providers: [{name: o, type: openai, api_key: '${X}'}]\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: {port: abc}", r"server\.port: Expected `int`, got `str` \(got 'abc'\)"),
        ("server: {port: 70000}", r"port must be 0\.\.65535"),
        ("server: {prot: 1}", r"server\.prot: unknown key"),
        ("bogus: 1", r"bogus: unknown key"),
        ("providers: [{name: a, type: openai}]", r"providers\[0\]\.api_key: required"),
        ("providers: [{name: a, type: nope, api_key: k}]", r"unknown provider type 'nope'"),
        ("providers: [{name: a, type: vllm}]", r"providers\[0\]\.base_url: required"),
        (
            "providers: [{name: a, type: openai, api_key: k}, {name: a, type: groq, api_key: k}]",
            "duplicate provider name",
        ),
        ("resilience: {retries: {initial_delay: soon}}", r"initial_delay: expected a duration"),
        ("load_balancing: {strategy: fastest}", r"load_balancing\.strategy"),
    ],
)
def test_bad_config_errors_name_path_value_and_expectation(tmp_path, text, expected):
    with pytest.raises(c.ConfigError, match=expected):
        load_text(tmp_path, text)


@pytest.mark.parametrize("text", ['server: "("', "server: [1, 2]", "server: 5", 'auth: "x"'])
@pytest.mark.parametrize("env", [{}, {"HELIX_PORT": "9000", "HELIX_API_KEYS": "k1"}])
def test_a_section_that_is_not_a_mapping_is_a_config_error(tmp_path, text, env):
    # Found by tests/fuzz (config_loader, b'server: ('): the environment overrides copied
    # the section with dict() and crashed with a ValueError instead of naming the key.
    section = text.split(":")[0]
    with pytest.raises(c.ConfigError, match=rf"{section}: Expected `object"):
        load_text(tmp_path, text, env)


def test_env_only_mode():
    cfg = c.load_env({"OPENAI_API_KEY": "sk-1", "GROQ_API_KEY": "g", "HELIX_PORT": "9999"})
    assert [p.name for p in cfg.providers] == ["openai", "groq"]
    assert "gpt-4o" in [m.name for m in cfg.providers[0].model_entries()]
    assert cfg.server.port == 9999
    c.check_supported(cfg)
    empty = c.load_env({})
    assert empty.providers == [] and empty.source == "env"


def test_env_redis_url_enables_redis_caching():
    cfg = c.load_env({"REDIS_URL": "redis://localhost:6379"})
    c.check_supported(cfg)
    assert (cfg.caching.backend, cfg.caching.redis_url) == ("redis", "redis://localhost:6379")


def test_mask_secrets():
    tree = c.to_builtins(c.load_env({"OPENAI_API_KEY": "sk-abcdefghijklmnop"}))
    masked = c.mask_secrets(tree)
    assert masked["providers"][0]["api_key"] == "sk-…mnop"
    assert "abcdefghijkl" not in repr(masked)
    assert c.mask_secrets({"redis_url": "redis://u:pw@h:1/0"}) == {
        "redis_url": "redis://u:****@h:1/0"
    }
    assert c.mask_secrets({"headers": {"Authorization": "Bearer xyzxyzxyzxyz"}})["headers"][
        "Authorization"
    ].startswith("Bea…")


def test_model_entries_shorthand_and_mapping(tmp_path):
    cfg = load_text(
        tmp_path,
        "providers: [{name: a, type: openai, api_key: k, models: [x, {name: fast, id: y}]}]",
    )
    assert [(m.name, m.id) for m in cfg.providers[0].model_entries()] == [
        ("x", None),
        ("fast", "y"),
    ]
