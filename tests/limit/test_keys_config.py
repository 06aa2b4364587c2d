"""Gateway keys and the limits config: parsing, refusals, env-only keys, masking."""

import hashlib

import pytest

from helix import config as c
from helix.limit.keys import KeyTable


def load(tmp_path, text, env=None):
    p = tmp_path / "h.yaml"
    p.write_text(text)
    cfg = c.load_file(str(p), env or {})
    c.check_supported(cfg)
    return cfg


def test_keys_plain_and_sha256_verify(tmp_path):
    digest = hashlib.sha256(b"hx-second-key-22").hexdigest()
    cfg = load(tmp_path, f"""
auth:
  keys:
    - {{key: hx-first-key-111, user: alice, team: red, limits: {{requests_per_minute: 5}}}}
    - {{sha256: {digest.upper()}, name: ci}}
rate_limits:
  per_key: {{requests_per_day: 100}}
""")
    table = KeyTable.from_config(cfg.auth)
    a = table.verify("Bearer hx-first-key-111")
    assert (a.user, a.team, a.limits) == ("alice", "red", ((0, 5),))
    assert a.name.startswith("key-")
    b = table.verify("bearer   hx-second-key-22 ")
    assert b.name == "ci" and b.limits is None
    for bad in (None, "", "Bearer", "Bearer hx-first-key-11", "Basic hx-first-key-111",
                "hx-first-key-111", "Bearer hx-first-key-111x"):
        assert table.verify(bad) is None
    assert "digest" not in repr(a)


def test_env_keys(tmp_path):
    cfg = c.load_env({"HELIX_API_KEYS": "hx-env-key-0001, hx-env-key-0002"})
    assert [k.key for k in cfg.auth.keys] == ["hx-env-key-0001", "hx-env-key-0002"]
    assert KeyTable.from_config(cfg.auth).verify("Bearer hx-env-key-0002") is not None
    assert KeyTable.from_config(c.load_env({}).auth) is None  # no keys: open


@pytest.mark.parametrize(("text", "message"), [
    ("auth:\n  keys: [{key: short}]\n", "at least 8"),
    ("auth:\n  keys: [{key: hx-aaaaaaaa, sha256: ab}]\n", "exactly one"),
    ("auth:\n  keys: [{sha256: nothex}]\n", "64 hex"),
    ("auth:\n  keys: [{key: hx-aaaaaaaa}, {key: hx-aaaaaaaa}]\n", "duplicate key"),
    ("auth:\n  keys: [{key: hx-aaaaaaaa, name: x}, {key: hx-bbbbbbbb, name: x}]\n",
     "duplicate key name"),
    ("rate_limits:\n  per_key: {requests_per_minute: 1}\n", "needs gateway keys"),
    ("rate_limits:\n  backend: redis\n", "redis_url: required"),
    ("rate_limits:\n  global: {requests_per_minute: 0}\n", "must be > 0"),
    ("rate_limits:\n  global: {requests_per_fortnight: 1}\n", "unknown key"),
    ("auth:\n  keys: [{key: hx-aaaaaaaa, limits: {requests_per_minute: 1}}]\n",
     "needs a rate_limits section"),
])
def test_refused(tmp_path, text, message):
    with pytest.raises(c.ConfigError, match=message):
        load(tmp_path, text)


def test_rate_limits_accepted_and_keys_masked(tmp_path):
    cfg = load(tmp_path, """
auth:
  keys: [{key: hx-secret-key-9999}]
rate_limits:
  global: {requests_per_minute: 10, tokens_per_day: 1000, cost_per_day: 2.5}
  redis_timeout: 100ms
""")
    assert cfg.rate_limits.redis_timeout == pytest.approx(0.1)
    shown = c.mask_secrets(c.to_builtins(cfg))
    assert "hx-secret-key-9999" not in str(shown)
