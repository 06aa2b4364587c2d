"""The mock provider, exercised through the official openai SDK pointed directly at it."""

import base64
import socket
import struct
import time

import openai
import pytest

from helix.mock import MockProcess
from helix.mock.openai_routes import embedding_vector

MSGS = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "What is the capital of France? Answer in one long sentence."},
]
EXPECTED = "mock reply to: " + MSGS[1]["content"][:40]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            },
        },
    },
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
]


def test_chat_non_stream(client):
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert r.id.startswith("chatcmpl-")
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert abs(r.created - time.time()) < 60
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == EXPECTED
    assert choice.finish_reason == "stop"
    u = r.usage
    assert u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_chat_echoes_model_and_content_parts(client):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "part one"}]}]
    r = client.chat.completions.create(model="some/other-model", messages=msgs)
    assert r.model == "some/other-model"
    assert r.choices[0].message.content == "mock reply to: part one"


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 4  # --chunks 4
    assert "".join(c.choices[0].delta.content for c in content_chunks) == EXPECTED
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage_and_chunk_header(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,
        stream=True,
        extra_headers={"x-mock-chunks": "9"},
    )
    chunks = list(stream)
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == EXPECTED
    assert sum(1 for c in chunks if c.choices[0].delta.content) == 9
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_raw_wire_format(mock):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=10)
    body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    conn.request("POST", "/chat/completions", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-type").startswith("text/event-stream")
    raw = resp.read()
    conn.close()
    events = raw.split(b"\n\n")
    assert events[-1] == b""
    assert events[-2] == b"data: [DONE]"
    assert all(e.startswith(b"data: ") for e in events[:-1])


def test_tool_call_non_stream(client):
    msgs = [{"role": "user", "content": "please call tool for Paris"}]
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"mock","days":1}'


def test_no_tool_call_without_trigger(client):
    msgs = [{"role": "user", "content": "just chat"}]
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=TOOLS)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.tool_calls is None


def test_tool_call_stream(client):
    msgs = [{"role": "user", "content": "Call tool now"}]
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, tools=TOOLS, stream=True
    )
    chunks = list(stream)
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    (tc,) = first.tool_calls
    assert tc.index == 0 and tc.id.startswith("call_") and tc.function.name == "get_weather"
    args = ""
    for c in chunks:
        for t in c.choices[0].delta.tool_calls or []:
            assert t.index == 0
            args += t.function.arguments or ""
    assert args == '{"city":"mock","days":1}'
    assert sum(1 for c in chunks[1:] if c.choices[0].delta.tool_calls) == 4
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_embeddings_float(client):
    r = client.embeddings.create(
        model="text-embedding-3-small", input=["a", "bb"], encoding_format="float"
    )
    assert r.object == "list"
    assert r.model == "text-embedding-3-small"
    assert [d.index for d in r.data] == [0, 1]
    assert all(d.object == "embedding" for d in r.data)
    assert r.data[0].embedding == embedding_vector("a", 16)
    assert r.data[1].embedding == embedding_vector("bb", 16)
    assert r.usage.prompt_tokens == r.usage.total_tokens == 2


def test_embeddings_base64_matches_float(client):
    kw = {"model": "text-embedding-3-small", "input": "hello world", "dimensions": 8}
    floats = client.embeddings.create(encoding_format="float", **kw).data[0].embedding
    raw = client.embeddings.create(encoding_format="base64", **kw).data[0].embedding
    assert isinstance(raw, str)
    decoded = list(struct.unpack("<8f", base64.b64decode(raw)))
    assert decoded == floats
    # With no encoding_format the SDK asks for base64 itself and decodes it to floats.
    assert client.embeddings.create(**kw).data[0].embedding == floats


def test_models_list(client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert "gpt-4o-mini" in ids
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"


def test_status_429_rate_limit(client):
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, extra_headers={"x-mock-status": "429"}
        )
    err = info.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "1"
    assert err.body["code"] == "rate_limit_exceeded"
    assert set(err.body) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, openai.BadRequestError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_status_errors(client, status, exc):
    with pytest.raises(exc):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, extra_headers={"x-mock-status": str(status)}
        )


def test_bad_request_validation(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert info.value.body["param"] == "messages"


def test_unknown_path_404(client):
    with pytest.raises(openai.NotFoundError):
        client.get("/nope", cast_to=object)


def test_recording(client, mock):
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, extra_headers={"x-trace": "abc"}, extra_query={"q": 1}
    )
    recs = mock.requests()
    assert len(recs) == 1
    rec = recs[0]
    assert rec["method"] == "POST"
    assert rec["path"] == "/v1/chat/completions"
    assert rec["query"] == "q=1"
    assert rec["headers"]["authorization"] == "Bearer k"
    assert rec["headers"]["x-trace"] == "abc"
    assert rec["body"] == {"model": "gpt-4o-mini", "messages": MSGS}
    assert mock.clear() == 1
    assert mock.requests() == []


def test_latency_header(client):
    t0 = time.monotonic()
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, extra_headers={"x-mock-latency-ms": "300"}
    )
    assert time.monotonic() - t0 >= 0.29


def test_chunk_interval_header(client):
    t0 = time.monotonic()
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,
        stream=True,
        extra_headers={"x-mock-chunks": "3", "x-mock-chunk-interval-ms": "100"},
    )
    stamps = [time.monotonic() - t0 for _ in stream]
    assert len(stamps) == 5  # role + 3 content + finish
    assert stamps[-1] >= 0.35


def test_fail_reset_is_rst(mock):
    body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
    with socket.create_connection(("127.0.0.1", mock.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nx-mock-fail: reset\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        with pytest.raises(ConnectionResetError):
            while s.recv(65536):
                pass


@pytest.mark.parametrize("mode", ["reset", "close"])
def test_fail_connection(client, mode):
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, extra_headers={"x-mock-fail": mode}
        )


def test_fail_hang(client):
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, extra_headers={"x-mock-fail": "hang"}
        )


def test_fail_reset_mid_stream(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MSGS,
        stream=True,
        extra_headers={"x-mock-fail": "reset-mid-stream", "x-mock-chunks": "6"},
    )
    got = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            got.append(chunk)
    assert 1 <= len(got) < 9


def test_pipelined_and_keepalive_raw(mock):
    body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
    req = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    slow = req.replace(b"Host: t\r\n", b"Host: t\r\nx-mock-latency-ms: 50\r\n")
    with socket.create_connection(("127.0.0.1", mock.port), timeout=10) as s:
        s.sendall(slow + req + req)
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.count(b"mock reply to: x") == 3


def test_require_key():
    with MockProcess("--require-key", "sk-right") as m:
        bad = openai.OpenAI(base_url=m.base_url, api_key="sk-wrong", max_retries=0, timeout=10)
        with pytest.raises(openai.AuthenticationError) as info:
            bad.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        assert info.value.body["code"] == "invalid_api_key"
        good = openai.OpenAI(base_url=m.base_url, api_key="sk-right", max_retries=0, timeout=10)
        r = good.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        assert r.choices[0].message.content == EXPECTED
        bad.close()
        good.close()


def test_cli_defaults_and_fault_injection():
    with MockProcess("--status", "429", "--fail-rate", "0.5", "--seed", "1", "--no-record") as m:
        c = openai.OpenAI(base_url=m.base_url, api_key="k", max_retries=0, timeout=10)
        ok = limited = 0
        for _ in range(40):
            try:
                c.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
                ok += 1
            except openai.RateLimitError:
                limited += 1
        c.close()
        assert ok > 5 and limited > 5
        assert m.requests() == []


def test_workers_and_cli_latency():
    with MockProcess("--workers", "2", "--latency-ms", "100") as m:
        c = openai.OpenAI(base_url=m.base_url, api_key="k", max_retries=0, timeout=10)
        t0 = time.monotonic()
        for _ in range(4):
            r = c.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
            assert r.choices[0].message.content == EXPECTED
        assert time.monotonic() - t0 >= 0.39
        c.close()
