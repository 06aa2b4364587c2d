"""Anthropic Messages API (``POST {base}/v1/messages``): native for Anthropic clients,
translated for OpenAI ones.

* An Anthropic client (``/v1/messages``, ``/v1/messages/count_tokens``) is
  served **natively**: its body goes upstream as sent with only ``model``
  resolved, its ``anthropic-beta`` / ``anthropic-version`` headers with it;
  the answer, the stream and the provider's errors come back as sent
  (:class:`~helix.providers.anthropic.stream.AnthropicPassthroughRelay` reads
  the usage on the way).
* An OpenAI client is **translated**: :mod:`.request` (chat request ->
  Messages request), :mod:`.response` (Message -> ``chat.completion``, usage,
  errors) and :mod:`.stream` (the event stream -> the client's stream sink).

Vertex AI serves the same Messages format for Claude with the model in the
URL and ``anthropic_version`` in the body; ``providers/vertex.py`` reuses all
three modules.
"""

from __future__ import annotations

import msgspec

from helix.errors import ErrorKind, HelixError
from helix.providers.anthropic.request import (
    DEFAULT_MAX_TOKENS,
    DROPPED_PARAMS,
    REJECTED_PARAMS,
    default_max_tokens,
    openai_to_anthropic_request,
)
from helix.providers.anthropic.response import (
    anthropic_error,
    anthropic_to_openai_response,
    finish_reason,
    keep_header,
    openai_usage,
    response_created,
    usage_of,
)
from helix.providers.anthropic.stream import AnthropicPassthroughRelay, AnthropicStreamRelay
from helix.providers.base import Deployment, TranslatingAdapter, UpstreamRequest
from helix.providers.catalog import ProviderSpec
from helix.providers.openai import base_headers, upstream_error
from helix.schema.anthropic import (
    FINISH_REASONS,
    error_decoder,
    json_decode,
    json_encode,
    message_decoder,
)
from helix.schema.body import replace_model

__all__ = [
    "DEFAULT_ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "DROPPED_PARAMS",
    "FINISH_REASONS",
    "REJECTED_PARAMS",
    "SPECS",
    "AnthropicAdapter",
    "AnthropicPassthroughRelay",
    "AnthropicStreamRelay",
    "anthropic_error",
    "anthropic_headers",
    "anthropic_to_openai_response",
    "client_headers",
    "decode_message",
    "default_max_tokens",
    "finish_reason",
    "openai_to_anthropic_request",
    "openai_usage",
    "response_created",
    "usage_of",
]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
# Client headers an Anthropic client's request carries upstream in native mode: they
# select API behaviour (beta features, the API version), never credentials.
FORWARDED_HEADERS = ("anthropic-beta", "anthropic-version")


def client_headers(static: list[tuple[bytes, bytes]], headers: dict[str, str],
                   names: tuple[str, ...] = FORWARDED_HEADERS) -> list[tuple[bytes, bytes]]:
    """The deployment's headers plus the client's ``names`` (a client value replaces a
    configured one of the same name)."""
    given = [(n.encode(), headers[n].encode("latin-1", "replace")) for n in names if n in headers]
    if not given:
        return static
    replaced = {n for n, _ in given}
    return [*(h for h in static if h[0] not in replaced), *given]


def decode_message(dep: Deployment, body: bytes):
    try:
        return message_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise HelixError(
            ErrorKind.UPSTREAM_PROTOCOL, f"{dep.provider} returned an unreadable message ({exc})"
        ) from None


class AnthropicAdapter(TranslatingAdapter):
    """Adapter for Anthropic's Messages API (stateless: one instance per process)."""

    native = frozenset({"messages", "count_tokens"})

    # -- OpenAI clients: translated ------------------------------------------------------
    def _target(self, dep: Deployment, path: str, query: str = "") -> bytes:
        path = f"{dep.base_path}{path}"
        query = "&".join(q for q in (dep.query, query) if q)
        return (f"{path}?{query}" if query else path).encode()

    def chat_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        return self.chat_request_doc(dep, view, json_decode(body))

    def chat_request_doc(self, dep: Deployment, view, doc: dict) -> UpstreamRequest:
        out = openai_to_anthropic_request(doc, dep.model_id, default_max_tokens(dep.model_id))
        target = self._target(dep, "/v1/messages")
        return UpstreamRequest(b"POST", target, dep.static_headers, json_encode(out))

    def embeddings_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        raise HelixError(
            ErrorKind.INVALID_REQUEST,
            f"The model '{dep.model}' is served by Anthropic ({dep.provider}), which has no "
            "embeddings API; use an embedding model from another provider.",
            param="model",
            code="model_not_supported",
        )

    def chat_document(self, dep: Deployment, body: bytes):
        return anthropic_to_openai_response(decode_message(dep, body), dep.model,
                                            response_created())

    def embeddings_response(self, dep: Deployment, body: bytes) -> bytes:
        raise HelixError(ErrorKind.INTERNAL, "Anthropic has no embeddings")  # refused above

    def stream_relay(self, dep: Deployment, view, sink) -> AnthropicStreamRelay:
        return AnthropicStreamRelay(dep.model, response_created(), sink)

    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError:
        try:
            env = error_decoder.decode(body) if body else None
        except msgspec.DecodeError:
            env = None
        if env is None or env.error is None or not env.error.message:
            return upstream_error(dep.provider, status, headers, body)
        extra = [(k, v) for k, v in headers if keep_header(k)]
        err = anthropic_error(env.error, status, extra)
        err.native = ("anthropic", body)  # an Anthropic client gets it exactly as sent
        return err

    # -- Anthropic clients: native --------------------------------------------------------
    def native_request(self, api: str, dep: Deployment, view, request) -> UpstreamRequest:
        body = request.body
        if view.model != dep.model_id:
            body = replace_model(body, view.model, dep.model_id)
        path = "/v1/messages/count_tokens" if api == "count_tokens" else "/v1/messages"
        headers = client_headers(dep.static_headers, request.headers)
        return UpstreamRequest(b"POST", self._target(dep, path, request.query), headers, body)

    def native_relay(self, api: str, dep: Deployment, view) -> AnthropicPassthroughRelay:
        return AnthropicPassthroughRelay()

    def native_error(self, api: str, dep: Deployment, status: int, headers,
                     body: bytes) -> HelixError:
        return self.error(dep, status, headers, body)

    def native_response(self, api: str, dep: Deployment, body: bytes) -> bytes:
        return body


def anthropic_headers(cfg) -> list[tuple[bytes, bytes]]:
    """content-type, ``anthropic-version`` and ``x-api-key`` (plus configured extras)."""
    headers = base_headers(cfg.headers)
    if not any(k == b"anthropic-version" for k, _ in headers):
        version = cfg.anthropic_version or DEFAULT_ANTHROPIC_VERSION
        headers.append((b"anthropic-version", version.encode("latin-1")))
    if cfg.api_key:
        headers.append((b"x-api-key", cfg.api_key.encode("latin-1")))
    return headers


SPECS: dict[str, ProviderSpec] = {
    "anthropic": ProviderSpec(
        type="anthropic",
        adapter=AnthropicAdapter(),
        headers=anthropic_headers,
        default_base_url="https://api.anthropic.com",
        key_env="ANTHROPIC_API_KEY",
        default_models=(
            "claude-3-5-sonnet-latest",
            "claude-3-5-haiku-latest",
            "claude-3-7-sonnet-latest",
            "claude-sonnet-4-0",
            "claude-opus-4-0",
        ),
        notes={
            "embeddings": "Anthropic has no embeddings API: /v1/embeddings is refused (400).",
            "params": "see helix.providers.anthropic: DROPPED_PARAMS and REJECTED_PARAMS",
        },
    )
}
