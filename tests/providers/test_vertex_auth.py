"""Vertex AI: service-account JWT, OAuth token cache/refresh, signer, config and URLs."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

import msgspec
import pytest

from helix.config import ConfigError, load_file
from helix.errors import HelixError, Retry
from helix.mock import gemini_routes
from helix.mock.base import Controls, MockRequest
from helix.providers.google_auth import (
    CLOUD_PLATFORM_SCOPE,
    JWT_BEARER,
    TokenSource,
    load_service_account,
    make_jwt,
    parse_service_account,
)
from helix.providers.vertex import VertexAuth
from helix.routing.registry import ModelRegistry
from helix.schema.openai import chat_request_decoder, decode_request, embeddings_request_decoder

crypto = pytest.importorskip("cryptography")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

EMAIL = "helix-test@proj-x.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def public_pem(rsa_key) -> bytes:
    return rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sa_json(key, token_uri="https://oauth2.googleapis.com/token") -> str:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps({
        "type": "service_account",
        "project_id": "proj-x",
        "private_key_id": "kid-123",
        "private_key": pem,
        "client_email": EMAIL,
        "client_id": "1",
        "token_uri": token_uri,
    })


# ------------------------------------------------------------------------------- JWT


def test_jwt_verifies_with_google_auth(rsa_key, public_pem):
    google_jwt = pytest.importorskip("google.auth.jwt")
    import time

    sa = parse_service_account(sa_json(rsa_key))
    now = time.time()
    token = make_jwt(sa, now)
    claims = google_jwt.decode(token, certs=public_pem,
                               audience="https://oauth2.googleapis.com/token")
    assert claims == {
        "iss": EMAIL,
        "scope": CLOUD_PLATFORM_SCOPE,
        "aud": "https://oauth2.googleapis.com/token",
        "iat": int(now),
        "exp": int(now) + 3600,
    }
    header = google_jwt.decode_header(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "kid-123"}


def test_service_account_loading(tmp_path, rsa_key):
    text = sa_json(rsa_key)
    path = tmp_path / "sa.json"
    path.write_text(text)
    assert load_service_account(None, str(path), {}).client_email == EMAIL
    assert load_service_account(None, None, {"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    with pytest.raises(ValueError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        load_service_account(None, None, {})
    with pytest.raises(ValueError, match="private_key"):
        parse_service_account('{"type": "service_account", "client_email": "a@b"}')
    with pytest.raises(ValueError, match="authorized_user"):
        parse_service_account('{"type": "authorized_user"}')
    assert "PRIVATE" not in repr(parse_service_account(text))


# --------------------------------------------------------------- a local token endpoint


class TokenServer:
    """A tiny HTTP/1.1 OAuth token endpoint (one request per connection)."""

    def __init__(self, public_pem: bytes, lifetime: int = 3600, delay: float = 0.0):
        self.public_pem = public_pem
        self.lifetime = lifetime
        self.delay = delay
        self.status = 200
        self.requests: list[dict] = []
        self.server = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/token"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        headers = {k.lower(): v for k, v in headers.items()}
        body = await reader.readexactly(int(headers["content-length"]))
        form = parse_qs(body.decode())
        self.requests.append({"line": lines[0], "headers": headers, "form": form})
        if self.delay:
            await asyncio.sleep(self.delay)
        n = len(self.requests)
        if self.status == 200:
            reply = {"access_token": f"tok-{n}", "expires_in": self.lifetime,
                     "token_type": "Bearer"}
        else:
            reply = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        data = json.dumps(reply).encode()
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (self.status, len(data), data)
        )
        await writer.drain()
        writer.close()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_fetch_cache_and_single_flight(rsa_key, public_pem):
    import time

    async def run():
        async with TokenServer(public_pem, delay=0.05) as srv:
            sa = parse_service_account(sa_json(rsa_key))
            clock = Clock(time.time())
            src = TokenSource(sa, token_url=srv.url, clock=clock)
            tokens = await asyncio.gather(*[src.token() for _ in range(25)])
            assert set(tokens) == {"tok-1"} and len(srv.requests) == 1
            req = srv.requests[0]
            assert req["line"] == "POST /token HTTP/1.1"
            assert req["headers"]["content-type"] == "application/x-www-form-urlencoded"
            assert req["form"]["grant_type"] == [JWT_BEARER]
            google_jwt = pytest.importorskip("google.auth.jwt")
            claims = google_jwt.decode(req["form"]["assertion"][0], certs=public_pem,
                                       audience="https://oauth2.googleapis.com/token")
            assert claims["iss"] == EMAIL and claims["scope"] == CLOUD_PLATFORM_SCOPE
            # cached well before expiry
            clock.now += 3000
            assert await src.token() == "tok-1" and len(srv.requests) == 1
            # inside the refresh window: the old token is still served, one background refresh
            clock.now += 400
            got = await asyncio.gather(*[src.token() for _ in range(10)])
            assert set(got) == {"tok-1"}
            await asyncio.sleep(0.2)
            assert len(srv.requests) == 2
            assert await src.token() == "tok-2"
            # past expiry: callers wait for the new token, again one fetch for all
            clock.now += 4000
            got = await asyncio.gather(*[src.token() for _ in range(10)])
            assert set(got) == {"tok-3"} and len(srv.requests) == 3
            assert src.fetches == 3

    asyncio.run(run())


def test_token_endpoint_refusal_is_a_clear_error_and_is_retried(rsa_key, public_pem):
    async def run():
        async with TokenServer(public_pem) as srv:
            srv.status = 400
            src = TokenSource(parse_service_account(sa_json(rsa_key)), token_url=srv.url)
            with pytest.raises(HelixError) as ei:
                await src.token()
            err = ei.value
            assert err.status == 502 and err.retry is Retry.NO
            assert "invalid_grant" in err.message and "Invalid JWT Signature" in err.message
            srv.status = 200
            assert await src.token() == "tok-2"  # a failure is not cached

    asyncio.run(run())


def test_short_lived_tokens_refresh_at_half_life(rsa_key, public_pem):
    async def run():
        async with TokenServer(public_pem, lifetime=100) as srv:
            clock = Clock(1_000_000.0)
            src = TokenSource(parse_service_account(sa_json(rsa_key)), token_url=srv.url,
                              clock=clock)
            assert await src.token() == "tok-1"
            clock.now += 49
            assert await src.token() == "tok-1" and len(srv.requests) == 1
            clock.now += 2
            await src.token()
            await asyncio.sleep(0.1)
            assert len(srv.requests) == 2

    asyncio.run(run())


# -------------------------------------------------------------------- the mock's /token


def mock_token_request(assertion: str) -> MockRequest:
    body = f"grant_type={JWT_BEARER}&assertion={assertion}".encode()
    return MockRequest("POST", "/token", "", {"content-type": "application/x-www-form-urlencoded"},
                       body, None)


def test_mock_token_endpoint_checks_the_assertion(rsa_key, public_pem):
    import time

    sa = parse_service_account(sa_json(rsa_key))
    ok = gemini_routes.token(mock_token_request(make_jwt(sa, time.time())), Controls())
    assert ok.status == 200 and json.loads(ok.body)["access_token"].startswith("ya29.")
    stale = gemini_routes.token(mock_token_request(make_jwt(sa, time.time() - 7200)), Controls())
    assert stale.status == 400
    # with the account's public key registered, a token signed by another key is refused
    reg = MockRequest("POST", "/token/keys", "", {}, b"",
                      {"client_email": EMAIL, "public_key": public_pem.decode()})
    assert gemini_routes.register_key(reg, Controls()).status == 200
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = make_jwt(sa, time.time(), key=other)
    bad = gemini_routes.token(mock_token_request(forged), Controls())
    assert bad.status == 400 and b"Signature" in bad.body
    good = gemini_routes.token(mock_token_request(make_jwt(sa, time.time())), Controls())
    assert good.status == 200


# --------------------------------------------------------------- config, signer, URLs


def load(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return load_file(str(p), {})


def vertex_yaml(rsa_key, extra="", creds=True) -> str:
    cj = f"    credentials_json: {json.dumps(sa_json(rsa_key))}\n" if creds else ""
    return f"""
providers:
  - name: vx
    type: vertex
    project: proj-x
{cj}{extra}    models: [gemini-2.5-flash, claude-sonnet-4@20250514, text-embedding-005]
"""


def test_config_validation(tmp_path, rsa_key):
    load(tmp_path, vertex_yaml(rsa_key))
    with pytest.raises(ConfigError, match=r"project: required"):
        load(tmp_path, vertex_yaml(rsa_key).replace("    project: proj-x\n", ""))
    with pytest.raises(ConfigError, match=r"credentials_json: the service-account key has no"):
        load(tmp_path, vertex_yaml(rsa_key, creds=False)
             + '    credentials_json: \'{"client_email": "a@b"}\'\n')
    with pytest.raises(ConfigError, match=r"credentials_file: cannot read"):
        load(tmp_path, vertex_yaml(rsa_key, "    credentials_file: /nonexistent.json\n",
                                   creds=False))
    # credentials from the environment are resolved by the signer, not at validation
    load(tmp_path, vertex_yaml(rsa_key, creds=False))
    with pytest.raises(ConfigError, match="location"):
        load(tmp_path, vertex_yaml(rsa_key, "    location: 'Europe West'\n"))


def test_signer_and_targets(tmp_path, rsa_key, public_pem):
    cfg = load(tmp_path, vertex_yaml(rsa_key, "    location: global\n    base_url: "
                                     "https://aiplatform.googleapis.com\n"))
    reg = ModelRegistry(cfg)
    dep = reg.resolve("gemini-2.5-flash")[0]
    assert dep.origin.host == "aiplatform.googleapis.com"
    assert isinstance(dep.signer, VertexAuth)
    assert not any(k in (b"authorization", b"x-goog-api-key") for k, _ in dep.static_headers)
    body = msgspec.json.encode({"model": "gemini-2.5-flash", "stream": True,
                                "messages": [{"role": "user", "content": "hi"}]})
    up = dep.adapter.chat_request(dep, decode_request(chat_request_decoder, body), body)
    assert up.target == (b"/v1/projects/proj-x/locations/global/publishers/google/models/"
                         b"gemini-2.5-flash:streamGenerateContent?alt=sse")

    claude = reg.resolve("claude-sonnet-4@20250514")[0]
    up = claude.adapter.chat_request(claude, decode_request(chat_request_decoder, body), body)
    assert up.target == (b"/v1/projects/proj-x/locations/global/publishers/anthropic/models/"
                         b"claude-sonnet-4@20250514:streamRawPredict")
    doc = msgspec.json.decode(up.body)
    assert doc["anthropic_version"] == "vertex-2023-10-16" and "model" not in doc
    assert doc["stream"] is True and doc["messages"] == [{"role": "user", "content": "hi"}]

    emb = reg.resolve("text-embedding-005")[0]
    ebody = msgspec.json.encode({"model": "text-embedding-005", "input": ["a", "b"],
                                 "dimensions": 4})
    up = emb.adapter.embeddings_request(emb, decode_request(embeddings_request_decoder, ebody),
                                        ebody)
    assert up.target.endswith(b"/publishers/google/models/text-embedding-005:predict")
    assert msgspec.json.decode(up.body) == {
        "instances": [{"content": "a"}, {"content": "b"}],
        "parameters": {"outputDimensionality": 4},
    }
    pred = {"predictions": [{"embeddings": {"values": [0.5], "statistics": {"token_count": 2}}},
                            {"embeddings": {"values": [0.25], "statistics": {"token_count": 3}}}]}
    out = msgspec.json.decode(emb.adapter.embeddings_response(emb, msgspec.json.encode(pred)))
    assert [d["embedding"] for d in out["data"]] == [[0.5], [0.25]]
    assert out["usage"] == {"prompt_tokens": 5, "total_tokens": 5}

    # the signer adds the bearer token from the token endpoint (token_url overrides token_uri)
    async def sign():
        async with TokenServer(public_pem) as srv:
            extra = f"    token_url: {srv.url}\n"
            dep = ModelRegistry(load(tmp_path, vertex_yaml(rsa_key, extra))).resolve(
                "gemini-2.5-flash")[0]
            assert dep.signer.source.token_url == srv.url
            first = await dep.signer.sign(dep, up)
            second = await dep.signer.sign(dep, up)
            fetched = len(srv.requests)
            # Google refuses the token (revoked): the next request fetches a new one.
            body401 = msgspec.json.encode(
                {"error": {"code": 401, "message": "Request had invalid authentication "
                           "credentials.", "status": "UNAUTHENTICATED"}})
            err = dep.adapter.error(dep, 401, [], body401)
            third = await dep.signer.sign(dep, up)
            return first, second, fetched, err, third, len(srv.requests)

    signed, again, fetches, err, third, fetches_after = asyncio.run(sign())
    assert (b"authorization", b"Bearer tok-1") in signed.headers
    assert signed.target == up.target and signed.body == up.body
    assert (b"authorization", b"Bearer tok-1") in again.headers and fetches == 1
    assert err.status == 401 and "invalid authentication" in err.message
    assert fetches_after == 2 and (b"authorization", b"Bearer tok-2") in third.headers
    assert not any(k == b"authorization" for k, _ in up.headers)  # the original is untouched


def test_default_location_and_regional_hosts(tmp_path, rsa_key):
    reg = ModelRegistry(load(tmp_path, vertex_yaml(rsa_key)))
    dep = reg.resolve("gemini-2.5-flash")[0]
    assert dep.origin.host == "us-central1-aiplatform.googleapis.com"
    assert dep.signer.resource == "/v1/projects/proj-x/locations/us-central1"
    eu = ModelRegistry(load(tmp_path, vertex_yaml(rsa_key, "    location: europe-west4\n")))
    dep = eu.resolve("gemini-2.5-flash")[0]
    assert dep.origin.host == "europe-west4-aiplatform.googleapis.com"
    assert dep.signer.resource == "/v1/projects/proj-x/locations/europe-west4"


def test_missing_env_credentials_fail_requests_not_startup(tmp_path, rsa_key, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    reg = ModelRegistry(load(tmp_path, vertex_yaml(rsa_key, creds=False)))
    dep = reg.resolve("gemini-2.5-flash")[0]
    assert dep.signer.source is None

    async def sign():
        await dep.signer.sign(dep, None)

    with pytest.raises(HelixError) as ei:
        asyncio.run(sign())
    assert ei.value.status == 500 and "GOOGLE_APPLICATION_CREDENTIALS" in ei.value.message


def test_failed_background_refresh_keeps_the_valid_token_and_backs_off(rsa_key, public_pem):
    async def run():
        async with TokenServer(public_pem) as srv:
            clock = Clock(1_000_000.0)
            src = TokenSource(parse_service_account(sa_json(rsa_key)), token_url=srv.url,
                              clock=clock)
            assert await src.token() == "tok-1"
            srv.status = 500
            clock.now += 3400  # in the refresh window, still valid
            assert await src.token() == "tok-1"
            await asyncio.sleep(0.1)
            assert await src.token() == "tok-1"
            await asyncio.sleep(0.1)
            assert len(srv.requests) == 2  # no hammering of a failing endpoint
            srv.status = 200
            clock.now += 11
            assert await src.token() == "tok-1"
            await asyncio.sleep(0.1)
            assert len(srv.requests) == 3 and await src.token() == "tok-3"

    asyncio.run(run())


def test_error_shapes_are_told_apart_for_claude_on_vertex(tmp_path, rsa_key):
    reg = ModelRegistry(load(tmp_path, vertex_yaml(rsa_key)))
    claude = reg.resolve("claude-sonnet-4@20250514")[0]
    anthropic_body = msgspec.json.encode(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    err = claude.adapter.error(claude, 529, [], anthropic_body)
    assert (err.status, err.code, err.message) == (529, "overloaded_error", "Overloaded")
    google_body = msgspec.json.encode(
        {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}})
    err = claude.adapter.error(claude, 429, [], google_body)
    assert (err.status, err.code, err.message) == (429, "resource_exhausted", "Quota exceeded")
