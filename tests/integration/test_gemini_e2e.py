"""The openai SDK -> helix -> the mock speaking Gemini API and Vertex AI wire formats."""

from __future__ import annotations

import base64
import http.client
import json
import struct

import pytest

from helix.mock import MockProcess
from tests.helpers import HelixProcess

openai = pytest.importorskip("openai")
rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
from cryptography.hazmat.primitives import serialization  # noqa: E402

GEMINI_KEY = "AIza-upstream-secret-5678"
EMAIL = "helix-e2e@proj-x.iam.gserviceaccount.com"
MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello from Helix!"}]
EXPECTED = "mock reply to: Hello from Helix!"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
VERTEX_PATH = "/v1/projects/proj-x/locations/us-central1/publishers"


def _post(mock, path: str, doc: dict) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=5)
    try:
        conn.request("POST", path, json.dumps(doc), {"content-type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "4", "--require-key", GEMINI_KEY) as proc:
        yield proc


@pytest.fixture(scope="module")
def helix(mock):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    # The mock verifies the assertion's signature with this key.
    assert _post(mock, "/token/keys", {"client_email": EMAIL, "public_key": public.decode()}) == 200
    sa = json.dumps({"type": "service_account", "project_id": "proj-x", "private_key_id": "k1",
                     "private_key": pem, "client_email": EMAIL,
                     "token_uri": "https://oauth2.googleapis.com/token"})
    config = f"""
providers:
  - name: gem
    type: gemini
    base_url: {mock.url}
    api_key: {GEMINI_KEY}
    models: [gemini-2.5-flash, {{name: gem-embed, id: text-embedding-004}}]
  - name: gem-limited
    type: gemini
    base_url: {mock.url}
    api_key: {GEMINI_KEY}
    headers: {{x-mock-status: "429"}}
  - name: vx
    type: vertex
    base_url: {mock.url}
    project: proj-x
    location: us-central1
    token_url: {mock.url}/token
    credentials_json: {json.dumps(sa)}
    models:
      - {{name: vx-flash, id: gemini-2.5-flash}}
      - {{name: vx-embed, id: text-embedding-005}}
      - {{name: vx-claude, id: claude-sonnet-4@20250514}}
"""
    with HelixProcess(config, workers=1) as proc:
        yield proc


@pytest.fixture
def client(helix, mock):
    mock.clear()
    with openai.OpenAI(base_url=helix.base_url, api_key="client-own-key", max_retries=0,
                       timeout=15) as c:
        yield c


def upstream(mock, prefix: str = "/v1") -> list[dict]:
    return [r for r in mock.requests() if r["path"].startswith(prefix)]


# ------------------------------------------------------------------------ Gemini API


def test_gemini_chat(client, mock):
    r = client.chat.completions.create(model="gemini-2.5-flash", messages=MSGS, temperature=0.5,
                                       max_tokens=50)
    assert r.choices[0].message.content == EXPECTED
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gemini-2.5-flash"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    [rec] = mock.requests()
    assert rec["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert rec["headers"]["x-goog-api-key"] == GEMINI_KEY
    assert "authorization" not in rec["headers"]
    assert "client-own-key" not in json.dumps(rec)
    assert rec["body"] == {
        "contents": [{"role": "user", "parts": [{"text": "Hello from Helix!"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.5},
    }


def test_gemini_stream(client, mock):
    stream = client.chat.completions.create(
        model="gemini-2.5-flash", messages=MSGS, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1
    assert len([c for c in chunks if c.choices]) >= 4  # deltas arrive as they come
    [rec] = mock.requests()
    assert rec["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert rec["query"] == "alt=sse"


def test_gemini_tool_call_round_trip(client, mock):
    msgs = [{"role": "user", "content": "please call tool for Paris"}]
    r = client.chat.completions.create(model="gemini-2.5-flash", messages=msgs, tools=[WEATHER])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}
    msgs += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
    ]
    r2 = client.chat.completions.create(model="gemini-2.5-flash", messages=msgs, tools=[WEATHER])
    assert r2.choices[0].message.content == 'tool said: {"temp":21}'
    first, second = (r["body"] for r in mock.requests())
    assert first["tools"] == [{"functionDeclarations": [{
        "name": "get_weather",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                       "required": ["city"]},
    }]}]
    assert second["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather",
                                                      "args": {"city": "mock"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"temp": 21}}}]},
    ]


def test_gemini_stream_tool_call(client):
    stream = client.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "call tool"}],
        tools=[WEATHER], tool_choice="required", stream=True,
    )
    chunks = [c for c in stream if c.choices]
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.function.name) for tc in calls] == [(0, "get_weather")]
    assert calls[0].id and json.loads(calls[0].function.arguments) == {"city": "mock"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_gemini_json_mode(client, mock):
    schema = {"type": "object", "properties": {"n": {"type": "integer"},
                                               "tags": {"type": "array",
                                                        "items": {"type": "string"}}},
              "required": ["n", "tags"], "additionalProperties": False}
    r = client.chat.completions.create(
        model="gemini-2.5-flash", messages=MSGS,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "x", "schema": schema, "strict": True}},
    )
    assert json.loads(r.choices[0].message.content) == {"n": 1, "tags": ["mock"]}
    r = client.chat.completions.create(model="gemini-2.5-flash", messages=MSGS,
                                       response_format={"type": "json_object"})
    assert json.loads(r.choices[0].message.content) == {"reply": EXPECTED}
    first, second = (r["body"]["generationConfig"] for r in mock.requests())
    # Gemini 2.5 takes the JSON Schema as sent (responseSchema's OpenAPI subset is for 2.0).
    assert first == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert second == {"responseMimeType": "application/json"}


def test_gemini_embeddings(client, mock):
    r = client.embeddings.create(model="gem-embed", input=["a", "bb"], encoding_format="float")
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) == 16
    raw = client.embeddings.with_raw_response.create(model="gem-embed", input="a",
                                                     encoding_format="base64")
    b64 = json.loads(raw.http_response.content)["data"][0]["embedding"]
    floats = struct.unpack("<16f", base64.b64decode(b64))
    assert floats == pytest.approx(r.data[0].embedding, rel=1e-6)
    batch, single = mock.requests()
    assert batch["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert single["path"] == "/v1beta/models/text-embedding-004:embedContent"
    assert single["body"] == {"content": {"parts": [{"text": "a"}]}}


def test_gemini_error_passes_through(client):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="gem-limited/gemini-2.5-flash", messages=MSGS)
    assert "Resource has been exhausted" in ei.value.message
    assert ei.value.code == "resource_exhausted"


# ------------------------------------------------------------------------- Vertex AI


def test_vertex_chat_stream_and_token(client, mock):
    r = client.chat.completions.create(model="vx-flash", messages=MSGS)
    assert r.choices[0].message.content == EXPECTED
    stream = client.chat.completions.create(model="vx-flash", messages=MSGS, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == EXPECTED
    recs = mock.requests()
    calls = [x for x in recs if x["path"].startswith(VERTEX_PATH)]
    assert [x["path"] for x in calls] == [
        f"{VERTEX_PATH}/google/models/gemini-2.5-flash:generateContent",
        f"{VERTEX_PATH}/google/models/gemini-2.5-flash:streamGenerateContent",
    ]
    bearer = {x["headers"]["authorization"] for x in calls}
    assert len(bearer) == 1 and bearer.pop().startswith("Bearer ya29.mock-")
    assert all("x-goog-api-key" not in x["headers"] for x in calls)
    assert calls[0]["body"]["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    # at most one token exchange (none if an earlier test already got the token)
    assert len([x for x in recs if x["path"] == "/token"]) <= 1


def test_vertex_token_exchange_is_recorded(helix, mock):
    # A fresh helix gets a token on its first Vertex request; the mock checked the signature.
    mock.clear()
    with open(helix.config_path) as fh:
        cfg = fh.read()
    with HelixProcess(cfg, workers=1) as fresh, openai.OpenAI(
        base_url=fresh.base_url, api_key="x", max_retries=0, timeout=15
    ) as c:
        for _ in range(3):
            c.chat.completions.create(model="vx-flash", messages=MSGS)
    tokens = [x for x in mock.requests() if x["path"] == "/token"]
    assert len(tokens) == 1
    form = tokens[0]["body_text"]
    assert form.startswith("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&")
    assert tokens[0]["headers"]["content-type"] == "application/x-www-form-urlencoded"


def test_vertex_embeddings(client, mock):
    r = client.embeddings.create(model="vx-embed", input=["a", "bb"], encoding_format="float")
    assert [d.index for d in r.data] == [0, 1] and len(r.data[1].embedding) == 16
    assert r.usage.prompt_tokens == 2
    [rec] = upstream(mock, VERTEX_PATH)
    assert rec["path"] == f"{VERTEX_PATH}/google/models/text-embedding-005:predict"
    assert rec["body"] == {"instances": [{"content": "a"}, {"content": "bb"}]}


def test_vertex_claude(client, mock):
    pytest.importorskip("helix.mock.anthropic_routes")
    r = client.chat.completions.create(model="vx-claude", messages=MSGS)
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(model="vx-claude", messages=MSGS, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == r.choices[0].message.content
    calls = upstream(mock, VERTEX_PATH)
    assert [x["path"] for x in calls] == [
        f"{VERTEX_PATH}/anthropic/models/claude-sonnet-4@20250514:rawPredict",
        f"{VERTEX_PATH}/anthropic/models/claude-sonnet-4@20250514:streamRawPredict",
    ]
    body = calls[0]["body"]
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert body["system"] == "be brief"
    assert calls[0]["headers"]["authorization"].startswith("Bearer ya29.mock-")
