"""Prompt-cache affinity through a running 2-worker Helix over two mock processes.

Each mock is its own process with its own prompt cache (``--prompt-cache``), so a prefix
is reported as cached only when it reached the same deployment before: the saving is
visible in the usage the SDKs return and in /metrics.
"""

from __future__ import annotations

import re

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, metrics_when

KEY = "sk-upstream-secret-1234"


@pytest.fixture(scope="module")
def mocks():
    with MockProcess("--prompt-cache", "100") as a, MockProcess("--prompt-cache", "100") as b:
        yield a, b


@pytest.fixture(scope="module")
def helix(mocks):
    a, b = mocks

    def prov(name, url, models, ptype="openai_compatible", path="/v1", latency=0):
        return f"""
  - name: {name}
    type: {ptype}
    base_url: {url}{path}
    api_key: {KEY}
    headers: {{x-mock-latency-ms: "{latency}"}}
    models: {models}"""

    cfg = "providers:" + "".join([
        prov("a", a.url, "[aff]"), prov("b", b.url, "[aff]"),
        prov("ca", a.url, "[claude-aff]", "anthropic", ""),
        prov("cb", b.url, "[claude-aff]", "anthropic", ""),
        prov("quick", a.url, "[skew]", latency=10), prov("sluggish", b.url, "[skew]", latency=300),
        prov("p1", a.url, "[plain]"), prov("p2", b.url, "[plain]"),
    ]) + """
load_balancing:
  prompt_cache_affinity: true
  affinity_tolerance: 1.5
  models:
    plain: {prompt_cache_affinity: false}
observability:
  metrics: {enabled: true}
  server_timing: false
"""
    with HelixProcess(cfg, workers=2) as proc:
        yield proc


def system(i: int) -> str:
    return f"You are assistant number {i}. " + " ".join(f"rule{i}x{w}" for w in range(40))


def test_same_prefix_same_deployment_and_cached_tokens(helix):
    openai = pytest.importorskip("openai")
    served: dict[int, set[str]] = {}
    cached = 0
    with openai.OpenAI(base_url=helix.base_url, api_key="k", max_retries=0, timeout=20) as c:
        for turn in range(3):
            for i in range(12):
                raw = c.chat.completions.with_raw_response.create(model="aff", messages=[
                    {"role": "system", "content": system(i)},
                    {"role": "user", "content": f"turn {turn}"}])
                served.setdefault(i, set()).add(raw.headers["x-helix-provider"])
                assert "server-timing" not in raw.headers  # observability.server_timing: false
                usage = raw.parse().usage
                got = usage.prompt_tokens_details.cached_tokens
                if turn == 0:
                    assert got == 0
                else:
                    assert got == 45  # the system prompt, cached where it went before
                cached += got
    assert all(len(s) == 1 for s in served.values()), served  # one deployment per prefix
    assert {p for s in served.values() for p in s} == {"a", "b"}  # and prefixes spread
    def read_tokens(text: str) -> float:
        return sum(float(v) for v in re.findall(
            r'^helix_prompt_cache_read_tokens_total\{provider="[ab]",model="aff"\} (\S+)$',
            text, re.M))

    text = metrics_when(helix.port, lambda t: read_tokens(t) >= cached)
    counted = read_tokens(text.decode())
    assert counted == cached == 12 * 2 * 45


def test_without_affinity_prefixes_are_spread(helix):
    openai = pytest.importorskip("openai")
    seen = set()
    with openai.OpenAI(base_url=helix.base_url, api_key="k", max_retries=0, timeout=20) as c:
        for _ in range(30):
            raw = c.chat.completions.with_raw_response.create(model="plain", messages=[
                {"role": "system", "content": system(99)}, {"role": "user", "content": "x"}])
            seen.add(raw.headers["x-helix-provider"])
    assert seen == {"p1", "p2"}


def test_anthropic_cache_control_breakpoint(helix):
    anthropic = pytest.importorskip("anthropic")
    served = set()
    reads = []
    with anthropic.Anthropic(base_url=f"http://127.0.0.1:{helix.port}", api_key="k",
                             max_retries=0, timeout=20) as c:
        for turn in range(4):
            raw = c.messages.with_raw_response.create(
                model="claude-aff", max_tokens=50,
                system=[{"type": "text", "text": system(7),
                         "cache_control": {"type": "ephemeral"}}],
                messages=[{"role": "user", "content": f"question {turn}"}])
            served.add(raw.headers["x-helix-provider"])
            msg = raw.parse()
            reads.append((msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens))
    assert len(served) == 1
    assert reads[0] == (0, 45) and reads[1:] == [(45, 0)] * 3


def test_responses_prompt_cache_key(helix):
    openai = pytest.importorskip("openai")
    with openai.OpenAI(base_url=helix.base_url, api_key="k", max_retries=0, timeout=20) as c:
        for key in ("tenant-1", "tenant-2", "tenant-3", "tenant-4"):
            served = {c.responses.with_raw_response.create(
                model="aff", input=f"hello {n}", prompt_cache_key=key, store=False,
            ).headers["x-helix-provider"] for n in range(3)}
            assert len(served) == 1, (key, served)


def test_a_much_slower_deployment_loses_its_prefixes(helix):
    openai = pytest.importorskip("openai")
    served = []
    with openai.OpenAI(base_url=helix.base_url, api_key="k", max_retries=0, timeout=20) as c:
        for i in range(16):
            served.append(c.chat.completions.with_raw_response.create(model="skew", messages=[
                {"role": "system", "content": system(100 + i)},
                {"role": "user", "content": "hi"}]).headers["x-helix-provider"])
    # Once both latencies are known (300 ms > 1.5 x 10 ms), every prefix stays on the fast one.
    assert served[-8:] == ["quick"] * 8, served
