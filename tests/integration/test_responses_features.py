"""Every Helix feature on /v1/responses through a running helix: gateway keys, limits, the
cache (tenant-safe, JSON <-> stream replay in the Responses format), a fallback from
OpenAI to Claude that stays in the Responses format, metrics labelled ``responses``; and
the OpenAI Agents SDK running a function-tool loop through Helix to a non-OpenAI mock."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, metrics_when

UPSTREAM = "sk-upstream-resp-features"
ALICE, BOB, CAPPED = "hx-alice-key", "hx-bob-key", "hx-capped-key"


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "3") as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    cfg = f"""
providers:
  - name: oai-down
    type: openai
    base_url: {mock.url}/v1
    api_key: {UPSTREAM}
    headers: {{x-mock-status: "503"}}
    models: [gpt-flaky]
  - name: anthropic
    type: anthropic
    base_url: {mock.url}
    api_key: {UPSTREAM}
    models: [claude-sonnet-4-5]
auth:
  keys:
    - {{key: {ALICE}, user: alice}}
    - {{key: {BOB}, user: bob}}
    - {{key: {CAPPED}, name: capped, limits: {{requests_per_minute: 2}}}}
rate_limits:
  global: {{requests_per_minute: 100000}}
resilience:
  retries: {{max_attempts: 1}}
  fallbacks:
    - {{primary: gpt-flaky, fallback: claude-sonnet-4-5}}
caching: {{backend: memory, enabled: false}}
observability:
  metrics: {{enabled: true}}
responses: {{state_dir: {state}}}
"""
    with HelixProcess(cfg, workers=1) as proc:
        yield proc


def client(helix, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{helix.port}/v1", api_key=key,
                         max_retries=0, timeout=20)


def test_keys_and_limits(helix):
    with client(helix, "hx-wrong") as c, pytest.raises(openai.AuthenticationError):
        c.responses.create(model="claude-sonnet-4-5", input="hi")
    with client(helix, CAPPED) as c:
        for _ in range(2):
            c.responses.create(model="claude-sonnet-4-5", input="hi")
        with pytest.raises(openai.RateLimitError) as ei:
            c.responses.create(model="claude-sonnet-4-5", input="hi")
    assert ei.value.body["code"] == "rate_limit_exceeded"
    assert int(ei.value.response.headers["retry-after"]) >= 1


def test_cache_replays_in_the_responses_format_per_tenant(helix, mock):
    on = {"Helicone-Cache-Enabled": "true"}
    with client(helix, ALICE) as alice, client(helix, BOB) as bob:
        mock.clear()
        first = alice.responses.with_raw_response.create(
            model="claude-sonnet-4-5", input="cache this", extra_headers=on)
        assert first.headers["helicone-cache"] == "MISS"
        hit = alice.responses.with_raw_response.create(
            model="claude-sonnet-4-5", input="cache this", extra_headers=on)
        assert hit.headers["helicone-cache"] == "HIT"
        assert hit.parse().output_text == first.parse().output_text
        with alice.responses.stream(model="claude-sonnet-4-5", input="cache this",
                                    extra_headers=on) as s:
            kinds = [e.type for e in s]
            final = s.get_final_response()
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        assert final.output_text == first.parse().output_text
        assert len(mock.requests()) == 1
        other = bob.responses.with_raw_response.create(
            model="claude-sonnet-4-5", input="cache this", extra_headers=on)
        assert other.headers["helicone-cache"] == "MISS"


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_from_openai_to_claude_stays_in_responses_format(helix, mock, stream):
    mock.clear()
    with client(helix, ALICE) as c:
        if stream:
            with c.responses.stream(model="gpt-flaky", input="fall back") as s:
                text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
                r = s.get_final_response()
        else:
            r = c.responses.create(model="gpt-flaky", input="fall back")
            text = r.output_text
        assert text == "mock reply to: fall back" and r.object == "response"
        # Stored by Helix (Claude has no Responses API): it can be continued.
        nxt = c.responses.create(model="claude-sonnet-4-5", input="again",
                                 previous_response_id=r.id)
    assert nxt.status == "completed"
    paths = [q["path"] for q in mock.requests()]
    assert paths[-1] == "/v1/messages" and "/v1/messages" in paths


def test_metrics_say_responses(helix):
    with client(helix, ALICE) as c:
        c.responses.create(model="claude-sonnet-4-5", input="metrics")
    body = metrics_when(helix.port, lambda t: 'endpoint="responses"' in t)
    lines = [ln for ln in body.decode().splitlines()
             if ln.startswith("helix_http_requests_total{") and 'endpoint="responses"' in ln]
    assert any('status="200"' in ln for ln in lines), lines


def test_agents_sdk_runs_a_tool_loop_through_helix_to_claude(helix, mock):
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)
    calls = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather of a city."""
        calls.append(city)
        return f"sunny in {city}"

    async def run() -> str:
        oc = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{helix.port}/v1", api_key=ALICE,
                                max_retries=0)
        model = agents.OpenAIResponsesModel(model="claude-sonnet-4-5", openai_client=oc)
        agent = agents.Agent(name="weather", instructions="Use the tool.", tools=[get_weather],
                             model=model)
        result = await agents.Runner.run(agent, "call tool for the weather")
        await oc.close()
        return result.final_output

    mock.clear()
    out = asyncio.run(run())
    assert calls, "the agent never called its tool"
    assert isinstance(out, str) and out
    bodies = [q["body"] for q in mock.requests() if q["path"] == "/v1/messages"]
    assert len(bodies) == 2  # the tool call, then the answer with its result
    assert any(b.get("type") == "tool_result"
               for m in bodies[1]["messages"] if isinstance(m["content"], list)
               for b in m["content"])
    assert json.dumps(bodies[1]).count("sunny in") == 1
