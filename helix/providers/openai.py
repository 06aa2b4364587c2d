"""The OpenAI wire format: OpenAI itself and every OpenAI-compatible API.

Groq, Together, Mistral, Perplexity, DeepSeek, Fireworks, xAI, OpenRouter,
Ollama, vLLM and any ``openai_compatible`` endpoint speak this format; Azure
OpenAI differs only in its URL (deployment + ``api-version``) and its
``api-key`` header.  The request body is passed through unchanged except for
``model``, which is rewritten to the provider's id only when it differs.
"""

from __future__ import annotations

import msgspec

from helix.errors import ErrorKind, HelixError, Retry, Source, error_body
from helix.providers.base import Deployment, UpstreamRequest

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode

AZURE_DEFAULT_API_VERSION = "2024-10-21"
_JSON = b"application/json"


class _ProviderError(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class _ProviderErrorEnvelope(msgspec.Struct):
    error: _ProviderError | str | None = None
    message: str | None = None  # some compatible servers answer {"message": ...} or {"detail": ...}
    detail: str | None = None


_error_decoder = msgspec.json.Decoder(_ProviderErrorEnvelope)


def rewrite_model(body: bytes, model_id: str) -> bytes:
    doc = _decode(body)
    doc["model"] = model_id
    return _encode(doc)


def retry_for_status(status: int) -> Retry:
    # 408/409/429 and 5xx are worth another attempt; other 4xx are the client's fault.
    if status in (408, 409, 429) or status >= 500:
        return Retry.YES
    return Retry.NO


def kind_for_status(status: int) -> ErrorKind:
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in (401, 403):
        return ErrorKind.UPSTREAM_STATUS
    return ErrorKind.UPSTREAM_STATUS


def upstream_error(
    provider: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> HelixError:
    """A provider's error answer, passed through with its status and message.

    An OpenAI-shaped body goes to the client verbatim; anything else is wrapped
    into that shape with the provider's text kept.  ``Retry-After`` survives.
    """
    extra = [(k, v) for k, v in headers if k == b"retry-after" or k.startswith(b"x-ratelimit-")]
    try:
        env = _error_decoder.decode(body) if body else None
    except msgspec.DecodeError:
        env = None
    if env is not None and isinstance(env.error, _ProviderError) and env.error.message:
        e = env.error
        return HelixError(
            kind_for_status(status),
            e.message,
            status=status,
            param=e.param,
            code=e.code,
            type=e.type or "upstream_error",
            source=Source.UPSTREAM,
            retry=retry_for_status(status),
            body=error_body(e.message, e.type or "upstream_error", e.param, e.code),
            headers=extra,
        )
    if env is not None:
        text = env.error if isinstance(env.error, str) else (env.message or env.detail)
    else:
        text = None
    if not text:
        text = body[:300].decode("utf-8", "replace").strip() or "(empty body)"
    return HelixError(
        kind_for_status(status),
        f"{provider} returned HTTP {status}: {text}",
        status=status,
        type="upstream_error",
        source=Source.UPSTREAM,
        retry=retry_for_status(status),
        headers=extra,
    )


class OpenAIStreamRelay:
    """Relays OpenAI SSE bytes unchanged, as they arrive.

    The relay does not wait for whole events: a byte that reached Helix goes
    to the client in the same loop turn.
    """

    __slots__ = ()

    def feed(self, data: bytes) -> bytes:
        return data

    def close(self) -> bytes:
        return b""


_RELAY = OpenAIStreamRelay()


class OpenAIAdapter:
    """Adapter for the OpenAI wire format (stateless: one instance per process)."""

    def _target(self, dep: Deployment, endpoint: str) -> bytes:
        path = f"{dep.base_path}/{endpoint}"
        return (f"{path}?{dep.query}" if dep.query else path).encode()

    def _request(self, dep: Deployment, view, body: bytes, endpoint: str) -> UpstreamRequest:
        if view.model != dep.model_id:
            body = rewrite_model(body, dep.model_id)
        return UpstreamRequest(b"POST", self._target(dep, endpoint), dep.static_headers, body)

    def chat_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        return self._request(dep, view, body, "chat/completions")

    def embeddings_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        return self._request(dep, view, body, "embeddings")

    def chat_response(self, dep: Deployment, body: bytes) -> bytes:
        return body

    def stream_relay(self, dep: Deployment, view) -> OpenAIStreamRelay:
        return _RELAY

    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError:
        return upstream_error(dep.provider, status, headers, body)


class AzureOpenAIAdapter(OpenAIAdapter):
    """Azure OpenAI: ``/openai/deployments/{deployment}/{endpoint}?api-version=``."""

    def _target(self, dep: Deployment, endpoint: str) -> bytes:
        return f"{dep.base_path}/openai/deployments/{dep.model_id}/{endpoint}?{dep.query}".encode()

    def _request(self, dep: Deployment, view, body: bytes, endpoint: str) -> UpstreamRequest:
        # Azure routes by the deployment in the URL and ignores ``model``.
        return UpstreamRequest(b"POST", self._target(dep, endpoint), dep.static_headers, body)


def static_headers(
    ptype: str, api_key: str | None, organization: str | None, extra: dict[str, str]
) -> list[tuple[bytes, bytes]]:
    """Headers sent on every request to this provider, built once at start-up."""
    headers = [
        (b"content-type", _JSON),
        (b"accept-encoding", b"identity"),
        (b"user-agent", b"helix-gateway"),
    ]
    if api_key:
        if ptype == "azure":
            headers.append((b"api-key", api_key.encode("latin-1")))
        else:
            headers.append((b"authorization", b"Bearer " + api_key.encode("latin-1")))
    if organization:
        headers.append((b"openai-organization", organization.encode("latin-1")))
    for k, v in extra.items():
        headers.append((k.lower().encode("latin-1"), v.encode("latin-1")))
    return headers
