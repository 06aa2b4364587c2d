"""Every Helix feature on /v1/messages, through the official anthropic SDK and a 2-worker helix:
gateway keys from x-api-key, limits (429 in Anthropic's shape with retry-after), the cache
(its own keys, per tenant, stream <-> JSON replay in Anthropic's format), a fallback from
Claude to an OpenAI model that stays in Anthropic's format, metrics and the access line
labelled ``messages``, and the x-helix-* headers."""

from __future__ import annotations

import json
import time

import anthropic
import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess, metrics_when

UPSTREAM = "sk-upstream-features-77"
ALICE, BOB, CAPPED = "hx-alice-key", "hx-bob-key", "hx-capped-key"


def config(mock_url: str) -> str:
    return f"""
providers:
  - name: anthropic
    type: anthropic
    base_url: {mock_url}
    api_key: {UPSTREAM}
    models: [claude-sonnet-4-5]
  - name: claude-down
    type: anthropic
    base_url: {mock_url}
    api_key: {UPSTREAM}
    headers: {{x-mock-status: "529"}}
    models: [claude-flaky]
  - name: oai
    type: openai_compatible
    base_url: {mock_url}/v1
    api_key: {UPSTREAM}
    models: [gpt-4o-mini]
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
    - {{primary: claude-flaky, fallback: gpt-4o-mini}}
caching:
  backend: memory
  enabled: false
observability:
  metrics: {{enabled: true}}
  logging: {{access_log: true, format: json}}
"""


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "3") as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    # One worker: the memory cache is per worker, and this test is about the cache's keys.
    with HelixProcess(config(mock.url), workers=1) as proc:
        yield proc


def client(helix, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{helix.port}", api_key=key,
                               max_retries=0, timeout=20)


def test_gateway_key_from_x_api_key_or_bearer(helix, mock):
    mock.clear()
    with client(helix, ALICE) as c:
        assert c.messages.create(model="gpt-4o-mini", max_tokens=20, messages=[
            {"role": "user", "content": "hi"}]).content[0].text == "mock reply to: hi"
    # Claude Code's ANTHROPIC_AUTH_TOKEN: Authorization: Bearer
    with anthropic.Anthropic(base_url=f"http://127.0.0.1:{helix.port}", auth_token=BOB,
                             max_retries=0) as c:
        assert c.messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=[
            {"role": "user", "content": "hi"}]).stop_reason == "end_turn"
    for req in mock.requests():
        text = json.dumps(req["headers"])
        assert ALICE not in text and BOB not in text
    with client(helix, "hx-wrong") as c, pytest.raises(anthropic.AuthenticationError) as ei:
        c.messages.create(model="gpt-4o-mini", max_tokens=5,
                          messages=[{"role": "user", "content": "hi"}])
    assert ei.value.body["error"]["type"] == "authentication_error"
    assert "x-api-key" in ei.value.body["error"]["message"]


def test_rate_limit_is_anthropic_shaped_with_retry_after(helix):
    with client(helix, CAPPED) as c:
        for _ in range(2):
            c.messages.create(model="gpt-4o-mini", max_tokens=5,
                              messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.RateLimitError) as ei:
            c.messages.create(model="gpt-4o-mini", max_tokens=5,
                              messages=[{"role": "user", "content": "hi"}])
    assert ei.value.body["type"] == "error"
    assert ei.value.body["error"]["type"] == "rate_limit_error"
    assert int(ei.value.response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gpt-4o-mini"])
def test_cache_hits_replay_in_anthropic_format_per_tenant(helix, mock, model):
    on = {"Helicone-Cache-Enabled": "true"}
    messages = [{"role": "user", "content": f"cache me {model}"}]
    with client(helix, ALICE) as alice, client(helix, BOB) as bob:
        mock.clear()
        first = alice.messages.with_raw_response.create(
            model=model, max_tokens=30, messages=messages, extra_headers=on)
        assert first.headers["helicone-cache"] == "MISS"
        # The same request as JSON: a hit.
        again = alice.messages.with_raw_response.create(
            model=model, max_tokens=30, messages=messages, extra_headers=on)
        assert again.headers["helicone-cache"] == "HIT"
        assert again.parse().content[0].text == first.parse().content[0].text
        # As a stream: replayed as Anthropic's event sequence from the stored JSON.
        with alice.messages.stream(model=model, max_tokens=30, messages=messages,
                                   extra_headers=on) as s:
            kinds = [e.type for e in s]
            final = s.get_final_message()
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        assert final.content[0].text == first.parse().content[0].text
        assert final.usage.output_tokens == first.parse().usage.output_tokens
        assert len(mock.requests()) == 1
        # Another tenant never reads Alice's entry.
        other = bob.messages.with_raw_response.create(
            model=model, max_tokens=30, messages=messages, extra_headers=on)
        assert other.headers["helicone-cache"] == "MISS"
        # A stored stream serves a JSON request too.
        streamed = [{"role": "user", "content": f"stream first {model}"}]
        with bob.messages.stream(model=model, max_tokens=30, messages=streamed,
                                 extra_headers=on) as s:
            text = "".join(s.text_stream)
        hit = bob.messages.with_raw_response.create(
            model=model, max_tokens=30, messages=streamed, extra_headers=on)
        assert hit.headers["helicone-cache"] == "HIT"
        assert hit.parse().content[0].text == text


def test_chat_and_messages_never_share_cache_entries(helix):
    import openai

    on = {"Helicone-Cache-Enabled": "true"}
    with client(helix, ALICE) as c:
        c.messages.create(model="gpt-4o-mini", max_tokens=30, extra_headers=on,
                          messages=[{"role": "user", "content": "shared prompt"}])
    with openai.OpenAI(base_url=f"http://127.0.0.1:{helix.port}/v1", api_key=ALICE,
                       max_retries=0) as oc:
        r = oc.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=30, extra_headers=on,
            messages=[{"role": "user", "content": "shared prompt"}])
    assert r.headers["helicone-cache"] == "MISS"  # an Anthropic Message is not a completion
    assert r.parse().object == "chat.completion"


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_from_claude_to_gpt_stays_in_anthropic_format(helix, mock, stream):
    mock.clear()
    with client(helix, ALICE) as c:
        if stream:
            with c.messages.stream(model="claude-flaky", max_tokens=30, messages=[
                    {"role": "user", "content": "fall back"}]) as s:
                text = "".join(s.text_stream)
                final = s.get_final_message()
                headers = s.response.headers
        else:
            raw = c.messages.with_raw_response.create(model="claude-flaky", max_tokens=30,
                                                      messages=[{"role": "user",
                                                                 "content": "fall back"}])
            final, headers = raw.parse(), raw.headers
            text = final.content[0].text
    assert text == "mock reply to: fall back" and final.type == "message"
    paths = [r["path"] for r in mock.requests()]
    # The 529 cools the Claude deployment: a later request goes straight to the fallback.
    assert paths in (["/v1/messages", "/v1/chat/completions"], ["/v1/chat/completions"])
    assert headers["x-helix-provider"] == "oai"
    assert headers["x-helix-attempts"] == str(len(paths))


def test_metrics_and_access_line_say_messages(helix):
    since = len(helix.output)
    with client(helix, ALICE) as c:
        c.messages.create(model="claude-sonnet-4-5", max_tokens=20,
                          messages=[{"role": "user", "content": "metrics please"}],
                          extra_headers={"x-request-id": "metrics-please-1"})
    body = metrics_when(helix.port, lambda t: 'endpoint="messages"' in t)
    lines = [ln for ln in body.decode().splitlines()
             if ln.startswith("helix_http_requests_total{") and 'endpoint="messages"' in ln]
    assert any('provider="anthropic"' in ln and 'status="200"' in ln for ln in lines), lines
    tokens = [ln for ln in body.decode().splitlines()
              if ln.startswith("helix_gen_ai_client_token_usage_tokens_sum")
              and 'endpoint="messages"' in ln]
    assert tokens
    def messages_lines():  # access lines are buffered up to 50 ms
        # The line is found by its request id: the previous test's buffered line (a fallback
        # answered by "oai") can be flushed after ``since``.
        access = [json.loads(ln) for ln in helix.output[since:] if '"helix.access"' in ln]
        return [a for a in access if a.get("request_id") == "metrics-please-1"]

    deadline = time.monotonic() + 5
    while not messages_lines() and time.monotonic() < deadline:
        time.sleep(0.02)
    (line,) = messages_lines()
    assert line["route"] == "/v1/messages" and line["endpoint"] == "messages"
    assert line["prompt_tokens"] > 0
    assert line["provider"] == "anthropic" and line["cost_usd"] is not None
