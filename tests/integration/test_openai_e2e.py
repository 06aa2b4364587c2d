"""The official openai SDK -> multi-worker helix -> the mock provider (OpenAI wire format)."""

import asyncio
import base64
import http.client
import json
import struct
import time

import openai
import pytest

from tests.integration.conftest import UPSTREAM_KEY

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello from Helix!"}]
EXPECTED = "mock reply to: Hello from Helix!"


def test_chat_non_stream(client, mock):
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert r.choices[0].message.content == EXPECTED
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    [rec] = mock.requests()
    assert rec["path"] == "/v1/chat/completions"
    assert rec["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    # The client's own key never goes upstream, in any header.
    assert "client-own-key-must-not-leak" not in json.dumps(rec)
    assert rec["body"]["messages"] == MSGS


def test_chat_stream_reassembles_exactly(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_async_client_stream_and_non_stream(helix):
    async def run():
        async with openai.AsyncOpenAI(
            base_url=helix.base_url, api_key="x", max_retries=0, timeout=15
        ) as ac:
            r = await ac.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
            s = await ac.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)
            parts = [c.choices[0].delta.content or "" async for c in s if c.choices]
            many = await asyncio.gather(
                *[
                    ac.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}]
                    )
                    for i in range(40)
                ]
            )
            return r, "".join(parts), many

    r, streamed, many = asyncio.run(run())
    assert r.choices[0].message.content == EXPECTED == streamed
    assert [m.choices[0].message.content for m in many] == [
        f"mock reply to: n{i}" for i in range(40)
    ]


def test_embeddings_float_and_base64(client):
    r = client.embeddings.create(model="text-embedding-3-small", input=["a", "bb"])
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) > 0
    # The SDK asks for base64 by default when numpy is absent? Ask explicitly both ways.
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="a", encoding_format="base64"
    )
    b64 = json.loads(raw.http_response.content)["data"][0]["embedding"]
    floats = struct.unpack(f"<{len(base64.b64decode(b64)) // 4}f", base64.b64decode(b64))
    assert floats == pytest.approx(r.data[0].embedding, rel=1e-6)


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["gpt-4o-mini", "text-embedding-3-small", "alias-fast"]


def test_alias_and_provider_prefix_rewrite_model(client, mock):
    client.chat.completions.create(model="alias-fast", messages=MSGS)
    client.chat.completions.create(model="mock/some-unlisted-model", messages=MSGS)
    bodies = [r["body"] for r in mock.requests()]
    assert [b["model"] for b in bodies] == ["real-model-id", "some-unlisted-model"]


def test_unknown_fields_pass_through(client, mock):
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, seed=7, extra_body={"vendor_thing": {"deep": [1, 2]}}
    )
    [rec] = mock.requests()
    assert rec["body"]["seed"] == 7 and rec["body"]["vendor_thing"] == {"deep": [1, 2]}


def test_unknown_model_is_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="no-such-model", messages=MSGS)
    assert ei.value.code == "model_not_found"
    assert ei.value.body["param"] == "model"


def test_provider_error_passes_through(client):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="limited/gpt-4o-mini", messages=MSGS)
    assert ei.value.response.headers.get("retry-after")
    assert set(ei.value.body) == {"message", "type", "param", "code"}


def test_upstream_timeout_is_504(client):
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="slow/gpt-4o-mini", messages=MSGS)
    assert ei.value.status_code == 504
    assert time.monotonic() - t0 < 4.5  # the 1 s provider timeout, not the mock's 5 s


def test_upstream_down_is_502(client):
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="down/gpt-4o-mini", messages=MSGS)
    assert ei.value.status_code == 502
    assert UPSTREAM_KEY not in json.dumps(ei.value.body)


def test_mid_stream_failure_raises_in_the_sdk(client):
    stream = client.chat.completions.create(model="broken/gpt-4o-mini", messages=MSGS, stream=True)
    with pytest.raises((openai.APIError, json.JSONDecodeError)):
        for _ in stream:
            pass


def test_stream_is_relayed_as_it_arrives(client):
    t0 = time.monotonic()
    stream = client.chat.completions.create(model="streamy/gpt-4o-mini", messages=MSGS, stream=True)
    arrivals = [time.monotonic() - t0 for c in stream if c.choices and c.choices[0].delta.content]
    # 6 chunks 250 ms apart: the first arrives long before the last was sent.
    assert len(arrivals) >= 5
    assert arrivals[-1] - arrivals[0] > 0.8


def test_bad_json_is_400_openai_shape(helix):
    conn = http.client.HTTPConnection("127.0.0.1", helix.port, timeout=5)
    conn.request(
        "POST", "/v1/chat/completions", body=b"{nope", headers={"content-type": "application/json"}
    )
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert resp.status == 400
    assert set(doc["error"]) == {"message", "type", "param", "code"}


def test_unknown_path_and_method(helix):
    conn = http.client.HTTPConnection("127.0.0.1", helix.port, timeout=5)
    conn.request("GET", "/v1/nothing")
    r = conn.getresponse()
    assert r.status == 404 and "error" in json.loads(r.read())
    conn.request("GET", "/v1/chat/completions")
    r = conn.getresponse()
    assert r.status == 405 and "error" in json.loads(r.read())
    conn.close()


def test_body_over_limit_is_413(helix):
    conn = http.client.HTTPConnection("127.0.0.1", helix.port, timeout=5)
    body = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 300_000}]}
    )
    try:
        conn.request(
            "POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"}
        )
        r = conn.getresponse()
        assert r.status == 413 and json.loads(r.read())["error"]["code"]
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("413 must be answered before the connection is closed")
    finally:
        conn.close()
