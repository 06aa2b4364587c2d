"""Prompt-cache affinity (rendezvous ranking, prefix keys per client API, the latency bound)
and the config of the beyond-the-peers features (hedging, deadlines, affinity, queue)."""

import json
import random

import pytest

from helix import config as c
from helix.api import prefix
from helix.routing import affinity
from helix.routing import health as h
from helix.routing.balancer import Balancer
from helix.routing.registry import ModelRegistry
from helix.routing.resilience import Policy
from helix.schema.anthropic import messages_request_decoder
from helix.schema.openai import chat_request_decoder
from helix.schema.responses import responses_request_decoder


def cfg(extra=None, providers=("a", "b", "c", "d")):
    tree = {"providers": [
        {"name": p, "type": "openai_compatible", "base_url": f"http://{p}.test/v1",
         "api_key": "k", "models": ["m"]} for p in providers]}
    tree.update(extra or {})
    config = c._convert(tree, "test")
    c.check_supported(config)
    return config


def test_rendezvous_moves_only_the_keys_of_a_removed_deployment():
    salts = [affinity.deployment_salt(f"p{i}/m") for i in range(4)]
    keys = [affinity.prefix_hash([str(k).encode()]) for k in range(2000)]
    before = {k: affinity.rank(k, [0, 1, 2, 3], salts)[0] for k in keys}
    after = {k: affinity.rank(k, [0, 1, 3], salts)[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == 2 for k in moved)
    shares = [list(before.values()).count(i) / len(keys) for i in range(4)]
    assert all(0.2 < s < 0.3 for s in shares), shares


def test_weighted_rendezvous_follows_the_weights():
    salts = [affinity.deployment_salt("x/m"), affinity.deployment_salt("y/m")]
    keys = [affinity.prefix_hash([str(k).encode()]) for k in range(4000)]
    tops = [affinity.rank(k, [0, 1], salts, [3.0, 1.0])[0] for k in keys]
    assert 0.7 < tops.count(0) / len(tops) < 0.8


def chat(body):
    raw = json.dumps(body).encode()
    return prefix.chat_key(raw, chat_request_decoder.decode(raw).messages)


def test_chat_prefix_keys():
    sys_a = {"role": "system", "content": "You are A."}
    sys_b = {"role": "system", "content": "You are B."}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]

    def body(*msgs, **kw):
        return {"model": "m", "messages": list(msgs), **kw}

    q1, q2 = {"role": "user", "content": "one"}, {"role": "user", "content": "two"}
    assert chat(body(sys_a, q1)) == chat(body(sys_a, q2))  # the system prompt is the prefix
    assert chat(body(sys_a, q1)) != chat(body(sys_b, q1))
    assert chat(body(sys_a, q1, tools=tools)) != chat(body(sys_a, q1))  # tools belong to it
    assert chat(body(sys_a, q1, prompt_cache_key="t1")) == chat(body(sys_b, q2,
                                                                     prompt_cache_key="t1"))
    # No system prompt, no tools: the conversation's first message.
    assert chat(body(q1, {"role": "assistant", "content": "x"}, q2)) == chat(body(q1))
    # A cache_control breakpoint (OpenRouter-style, in chat): through the first one.
    marked = {"role": "user", "content": [{"type": "text", "text": "doc",
                                           "cache_control": {"type": "ephemeral"}}]}
    assert chat(body(sys_a, marked, q1)) == chat(body(sys_a, marked, q2))
    assert chat(body(sys_a, marked, q1)) != chat(body(sys_a, q1))


def test_messages_and_responses_prefix_keys():
    def messages(**kw):
        raw = json.dumps({"model": "m", "max_tokens": 5, **kw}).encode()
        return prefix.messages_key(messages_request_decoder.decode(raw))

    u1, u2 = [{"role": "user", "content": "one"}], [{"role": "user", "content": "two"}]
    assert messages(system="S", messages=u1) == messages(system="S", messages=u2)
    assert messages(system="S", messages=u1) != messages(system="T", messages=u1)
    block = [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]
    tail = [{"role": "user", "content": [{"type": "text", "text": "long doc",
                                          "cache_control": {"type": "ephemeral"}}]}]
    # The first breakpoint decides: the system block, whatever later breakpoints follow.
    assert messages(system=block, messages=tail + u1) == messages(system=block, messages=u2)

    def responses(**kw):
        raw = json.dumps({"model": "m", **kw}).encode()
        return prefix.responses_key(raw, responses_request_decoder.decode(raw))

    assert responses(instructions="I", input="a") == responses(instructions="I", input="b")
    assert responses(input="a", prompt_cache_key="k") == responses(input="b",
                                                                   prompt_cache_key="k")
    assert responses(input="a") != responses(input="b")
    assert responses(input=[{"role": "user", "content": "a"}]) == responses(
        input=[{"role": "user", "content": "a"}, {"role": "user", "content": "more"}])


def test_affine_choice_is_stable_and_bounded_by_latency():
    config = cfg({"load_balancing": {"prompt_cache_affinity": True, "affinity_tolerance": 1.5}})
    reg = ModelRegistry(config)
    bal = Balancer(reg, config, rng=random.Random(1))
    cands = reg.resolve("m")
    assert bal.affinity and bal.affine(cands)
    now = 100.0
    for d in cands:
        bal.begin(d)
        bal.end(d, h.SUCCESS, now, 0.2)
    keys = [affinity.prefix_hash([str(k).encode()]) for k in range(40)]
    chosen = {k: bal.select(cands, now, key=k) for k in keys}
    assert all(bal.select(cands, now, key=k) is chosen[k] for k in keys)  # stable
    assert len(set(chosen.values())) == 4  # and spread
    slow = chosen[keys[0]]
    bal.begin(slow)
    bal.end(slow, h.SUCCESS, now, 0.9)  # now far slower than 1.5 x the best
    moved = bal.select(cands, now, key=keys[0])
    assert moved is not slow
    assert bal.select(cands, now, key=keys[0], tried=[moved]) not in (slow, moved)
    # Its other prefixes move too; nobody else's does.
    for k in keys[1:]:
        d = bal.select(cands, now, key=k)
        assert (d is not slow) if chosen[k] is slow else (d is chosen[k])


def test_config_of_deadlines_hedging_affinity_and_queue():
    policy = Policy(cfg({"resilience": {
        "first_token_timeout": "2s", "hedge": {"after": "300ms"},
        "models": {"m": {"hedge": {"max": 0}}}}}).resilience)
    t = policy.timing("m")
    assert (t.ttft, t.hedges) == (2.0, 0)
    other = policy.timing("other")
    assert (other.ttft, other.after, other.hedges) == (2.0, 0.3, 1)
    off = Policy(cfg({"resilience": {"first_token_timeout": "2s",
                                     "models": {"m": {"first_token_timeout": 0}}}}).resilience)
    assert off.timing("m") is None
    bad = [
        ({"resilience": {"models": {"nope": {"first_token_timeout": "1s"}}}},
         "resilience.models.nope"),
        ({"resilience": {"first_token_timeout": "200ms", "hedge": {"after": "300ms"}}},
         "hedge.after: must be shorter"),
        ({"resilience": {"hedge": {"max": 9}}}, "hedge.max"),
        ({"load_balancing": {"affinity_tolerance": 0.5}}, "affinity_tolerance"),
        ({"auth": {"keys": [{"key": "sk-12345678", "priority": "high"}]}},
         "priority: a key's priority orders the rate-limit queue"),
        ({"rate_limits": {"queue": {"max_wait": 0}}}, "max_wait"),
    ]
    for extra, message in bad:
        with pytest.raises(c.ConfigError) as ei:
            cfg(extra)
        assert message in str(ei.value), (extra, str(ei.value))
