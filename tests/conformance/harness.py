"""Translate an OpenAI request with a real adapter, answer it with the mock's own handler, and
translate the answer back through the OpenAI chat ingress (``helix.api.chat``: the non-stream
body, or the relay into ``OpenAIChunkSink``): the whole sans-IO round trip, in process.

The mock handlers are the same code ``helix mock`` serves, so what comes back is the provider's
wire format as the mock speaks it (tool calls, thinking, JSON mode...).  No sockets: a round
trip costs well under a millisecond, so every provider x case combination can be checked.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cache

from helix import config as cfgmod
from helix.api.chat import CHAT, OpenAIChunkSink, wants_usage
from helix.mock import gemini_routes
from helix.mock.base import BadRequest, Controls, MockRequest, Reply
from helix.mock.server import PROVIDERS, Router
from helix.routing.registry import ModelRegistry
from helix.schema.openai import chat_request_decoder, embeddings_request_decoder

ROUTER = Router(PROVIDERS)
VERTEX_TOKEN = "ya29.conformance-harness"



@cache
def service_account() -> str:
    """A Vertex service account (a fresh RSA key; the harness never fetches a token)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "proj-x",
                       "private_key_id": "k1", "private_key": pem,
                       "client_email": "harness@proj-x.iam.gserviceaccount.com",
                       "token_uri": "http://127.0.0.1:9/token"})


# provider name -> (type, extra config lines); all point at a mock that is never dialled.
PROVIDERS_CONFIG = {
    "anthropic": ("anthropic", ""),
    "gemini": ("gemini", ""),
    "vertex": ("vertex", "project: proj-x\n    location: us-central1\n    credentials_json: {sa}"),
    "bedrock": ("bedrock", "region: us-east-1\n    aws_access_key_id: AKIDEXAMPLE\n"
                           "    aws_secret_access_key: secret"),
    "cohere": ("cohere", ""),
}


def registry(models: dict[str, list[str]], tmp_path) -> ModelRegistry:
    """A ModelRegistry with one provider per type in ``models`` ({name: [model ids]})."""
    lines = ["providers:"]
    for name, ids in models.items():
        ptype, extra = PROVIDERS_CONFIG[name]
        extra = extra.replace("{sa}", json.dumps(service_account()))
        lines.append(f"""  - name: {name}
    type: {ptype}
    api_key: k
    base_url: http://127.0.0.1:9
    models: [{", ".join(ids)}]
    {extra}""")
    path = tmp_path / "conformance.yaml"
    path.write_text("\n".join(lines) + "\n")
    return ModelRegistry(cfgmod.load_file(str(path), {}))


@dataclass
class Answer:
    status: int
    body: bytes  # the OpenAI-shaped JSON, or the OpenAI SSE stream
    upstream: bytes  # what the mock answered


def _mock(up, chunks: int) -> Reply:
    target = up.target.decode()
    path, _, query = target.partition("?")
    headers = {k.decode().lower(): v.decode("latin-1") for k, v in up.headers}
    if path.startswith("/v1/projects/"):
        headers["authorization"] = f"Bearer {VERTEX_TOKEN}"
        gemini_routes._issued[VERTEX_TOKEN] = time.time() + 3600
    req = MockRequest(up.method.decode(), path, query, headers, up.body, json.loads(up.body))
    hit = ROUTER.lookup(req.method, path)
    assert isinstance(hit, tuple), f"the mock serves no {req.method} {path}"
    provider, handler = hit
    try:
        return handler(req, Controls(chunks=chunks))
    except BadRequest as exc:
        return provider.error_reply(exc.status, exc.message)


def chat(dep, doc: dict, chunks: int = 3) -> Answer:
    body = json.dumps(doc).encode()
    view = chat_request_decoder.decode(body)
    up = dep.adapter.chat_request(dep, view, body)
    reply = _mock(up, chunks)
    if reply.status != 200:
        return Answer(reply.status, reply.body, reply.body)
    if not doc.get("stream"):  # what the OpenAI chat ingress sends its client
        return Answer(200, CHAT.translate_response(dep, reply.body)[0], reply.body)
    relay = dep.adapter.stream_relay(dep, view, OpenAIChunkSink(wants_usage(view)))
    out = b"".join(relay.feed(ev) for ev in reply.events) + relay.close()
    return Answer(200, out, b"".join(reply.events))


def embeddings(dep, doc: dict) -> Answer:
    body = json.dumps(doc).encode()
    view = embeddings_request_decoder.decode(body)
    up = dep.adapter.embeddings_request(dep, view, body)
    reply = _mock(up, 3)
    if reply.status != 200:
        return Answer(reply.status, reply.body, reply.body)
    return Answer(200, dep.adapter.embeddings_response(dep, reply.body), reply.body)
