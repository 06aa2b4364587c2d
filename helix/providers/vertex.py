"""Google Vertex AI (``type: vertex``): Gemini models and Anthropic models.

Auth is a service account (``credentials_file``, ``credentials_json`` or the
``GOOGLE_APPLICATION_CREDENTIALS`` file), turned into an OAuth2 bearer token
by :mod:`helix.providers.google_auth` and added per request by the signer
(:class:`VertexAuth`).  URLs name the project, location and model::

    https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}
        /publishers/google/models/{model}:generateContent        (Gemini; the Gemini translation)
        /publishers/google/models/{model}:predict                (text-embedding models)
        /publishers/anthropic/models/{model}:rawPredict          (Claude; Anthropic Messages
                                                                   with anthropic_version
                                                                   "vertex-2023-10-16", no model)

Location ``global`` uses ``aiplatform.googleapis.com``.  ``base_url``, when set,
replaces only the host (tests point it at the mock).  Models whose id starts
with ``claude`` are Anthropic's; every other model is Google's.
"""

from __future__ import annotations

import logging
import re

import msgspec

from helix.errors import ErrorKind, HelixError, Source
from helix.providers.anthropic import (
    AnthropicAdapter,
    client_headers,
    default_max_tokens,
    openai_to_anthropic_request,
)
from helix.providers.base import Deployment, UpstreamRequest
from helix.providers.catalog import ProviderSpec
from helix.providers.features import capabilities
from helix.providers.gemini import (
    GeminiAdapter,
    _decode_body,
    _embedding_inputs,
    gemini_error,
    google_error,
    model_path,
    openai_embeddings,
)
from helix.providers.openai import base_headers
from helix.schema.body import set_members
from helix.schema.gemini import vertex_predict_decoder

__all__ = [
    "DEFAULT_LOCATION",
    "SPECS",
    "VertexAdapter",
    "VertexAuth",
    "VertexClaudeAdapter",
    "adapter_for",
    "vertex_base_url",
]

log = logging.getLogger("helix.providers.vertex")

DEFAULT_LOCATION = "us-central1"
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
_LOCATION_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_encode = msgspec.json.Encoder().encode


def vertex_host(location: str) -> str:
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def vertex_base_url(cfg) -> str:
    """The provider's base URL: ``base_url`` when set, else the location's host."""
    return cfg.base_url or vertex_host(cfg.location or DEFAULT_LOCATION)


def is_anthropic(model_id: str) -> bool:
    return model_id.startswith("claude")


class VertexAuth:
    """The signer of one ``type: vertex`` provider: adds ``authorization: Bearer <token>``.

    It also carries the provider's resource path (``/v1/projects/.../locations/...``),
    which the stateless adapter reads from ``dep.signer``.  Credentials are
    read when the signer is built (in the worker); a problem there is logged
    and every request to this provider fails with it, the rest of the gateway
    keeps serving.  The token endpoint is reached through :meth:`bind`'s pool,
    or a small pool of the signer's own, created on first use.
    """

    def __init__(self, cfg, env=None) -> None:
        from helix.providers.google_auth import TokenSource, load_service_account

        self.provider = cfg.name
        self.project = cfg.project
        self.location = cfg.location or DEFAULT_LOCATION
        self.resource = f"/v1/projects/{self.project}/locations/{self.location}"
        self.source: TokenSource | None = None
        self.problem: str | None = None
        try:
            sa = load_service_account(cfg.credentials_json, cfg.credentials_file, env)
            self.source = TokenSource(
                sa, token_url=cfg.token_url, verify_tls=cfg.tls_verify, label=cfg.name
            )
        except (ValueError, HelixError) as exc:
            self.problem = f"{cfg.name}: {getattr(exc, 'message', exc)}"
            log.error("vertex provider %s is unusable: %s", cfg.name, self.problem)

    def bind(self, pool) -> None:
        if self.source is not None:
            self.source.bind(pool)

    async def sign(self, dep: Deployment, up: UpstreamRequest) -> UpstreamRequest:
        source = self.source
        if source is None:
            raise HelixError(
                ErrorKind.INTERNAL,
                f"Vertex AI provider misconfigured: {self.problem}",
                status=500,
                source=Source.INTERNAL,
            )
        token = await source.token()
        headers = [*up.headers, (b"authorization", b"Bearer " + token.encode("latin-1"))]
        return UpstreamRequest(up.method, up.target, headers, up.body)


def _resource(dep: Deployment) -> str:
    signer = dep.signer
    resource = getattr(signer, "resource", None)
    if resource is None:
        raise HelixError(ErrorKind.INTERNAL, f"{dep.provider}: Vertex deployment without signer")
    return resource


class VertexAdapter(GeminiAdapter):
    """Gemini models on Vertex AI: the Gemini translation on Vertex URLs."""

    def _model_url(self, dep: Deployment, publisher: str, method: str, stream: bool) -> bytes:
        model = model_path(dep.model_id)
        path = f"{dep.base_path}{_resource(dep)}/publishers/{publisher}/models/{model}:{method}"
        return (path + "?alt=sse" if stream else path).encode()

    def _target(self, dep: Deployment, method: str, stream: bool = False) -> bytes:
        return self._model_url(dep, "google", method, stream)

    def embeddings_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        doc = _decode_body(body)
        texts, _single = _embedding_inputs(doc)
        out: dict = {"instances": [{"content": t} for t in texts]}
        if doc.get("dimensions") is not None:
            out["parameters"] = {"outputDimensionality": doc["dimensions"]}
        target = self._target(dep, "predict")
        return UpstreamRequest(b"POST", target, dep.static_headers, _encode(out))

    def embeddings_response(self, dep: Deployment, body: bytes) -> bytes:
        try:
            resp = vertex_predict_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL,
                f"{dep.provider} returned embeddings Helix could not read ({exc}).",
            ) from None
        vectors = []
        tokens = 0
        for pred in resp.predictions:
            if pred.embeddings is None:
                raise HelixError(
                    ErrorKind.UPSTREAM_PROTOCOL, f"{dep.provider} returned a prediction without "
                    "embeddings (is the model an embedding model?)."
                )
            vectors.append(pred.embeddings.values)
            if pred.embeddings.statistics is not None:
                tokens += int(pred.embeddings.statistics.token_count)
        return _encode(openai_embeddings(vectors, dep.model, False, tokens))

    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError:
        _drop_rejected_token(dep, status)
        return gemini_error(dep.provider, status, headers, body)


def _drop_rejected_token(dep: Deployment, status: int) -> None:
    if status == 401 and dep.signer is not None and dep.signer.source is not None:
        # A token Google no longer accepts (revoked, rotated key): the next request
        # fetches a fresh one instead of reusing it until its expiry.
        dep.signer.source.invalidate()


class VertexClaudeAdapter(AnthropicAdapter):
    """Claude models on Vertex AI: Anthropic's Messages format at ``rawPredict``.

    The body carries ``anthropic_version: vertex-2023-10-16`` and no model (the
    URL names it).  OpenAI clients are translated by the Anthropic translation;
    Anthropic clients are native: their body goes upstream with only that
    envelope changed (``anthropic-beta`` headers ride along), and the answer,
    stream and Anthropic-shaped errors come back as sent.
    """

    def _model_url(self, dep: Deployment, method: str, model: str | None = None) -> bytes:
        model = model_path(model or dep.model_id)
        path = f"{dep.base_path}{_resource(dep)}/publishers/anthropic/models/{model}:{method}"
        return path.encode()

    def chat_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        return self.chat_request_doc(dep, view, _decode_body(body))

    def chat_request_doc(self, dep: Deployment, view, doc: dict) -> UpstreamRequest:
        out = openai_to_anthropic_request(doc, None, default_max_tokens(dep.model_id),
                                          capabilities(dep.model_id, "anthropic"))
        out["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        target = self._model_url(dep, "streamRawPredict" if view.stream else "rawPredict")
        return UpstreamRequest(b"POST", target, dep.static_headers, _encode(out))

    def native_request(self, api: str, dep: Deployment, view, request) -> UpstreamRequest:
        headers = client_headers(dep.static_headers, request.headers, ("anthropic-beta",))
        if api == "count_tokens":
            # Vertex counts at a model of its own, with the real model named in the body.
            body = set_members(request.body, {"model": dep.model_id,
                                              "anthropic_version": VERTEX_ANTHROPIC_VERSION})
            target = self._model_url(dep, "rawPredict", "count-tokens")
            return UpstreamRequest(b"POST", target, headers, body)
        body = set_members(request.body, {"anthropic_version": VERTEX_ANTHROPIC_VERSION},
                           drop=("model",))
        target = self._model_url(dep, "streamRawPredict" if view.stream else "rawPredict")
        return UpstreamRequest(b"POST", target, headers, body)

    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError:
        _drop_rejected_token(dep, status)
        if google_error(body) is None:
            # Not Google's envelope: Anthropic's own error shape, relayed by Vertex.
            return super().error(dep, status, headers, body)
        return gemini_error(dep.provider, status, headers, body)


_GEMINI = VertexAdapter()
_CLAUDE = VertexClaudeAdapter()


def adapter_for(model_id: str):
    """Claude models speak Anthropic's format on Vertex; every other model Gemini's."""
    return _CLAUDE if is_anthropic(model_id) else _GEMINI


def vertex_headers(cfg) -> list[tuple[bytes, bytes]]:
    return base_headers(cfg.headers)  # the bearer token is added per request by VertexAuth


def _validate(cfg, where: str) -> None:
    from helix.config import ConfigError
    from helix.providers.google_auth import load_service_account

    if not cfg.project:
        raise ConfigError(f"{where}.project: required for type 'vertex' (the GCP project id)")
    location = cfg.location or DEFAULT_LOCATION
    if not _LOCATION_RE.match(location):
        raise ConfigError(
            f"{where}.location: expected a Vertex AI location such as 'us-central1' or "
            f"'global', got {cfg.location!r}"
        )
    if cfg.credentials_json and cfg.credentials_file:
        raise ConfigError(f"{where}: set credentials_json or credentials_file, not both")
    if cfg.credentials_json or cfg.credentials_file:
        # Explicit credentials are checked now; GOOGLE_APPLICATION_CREDENTIALS when the
        # signer is built (validation never reads the environment).
        try:
            load_service_account(cfg.credentials_json, cfg.credentials_file, {})
        except ValueError as exc:
            key = "credentials_json" if cfg.credentials_json else "credentials_file"
            raise ConfigError(f"{where}.{key}: {exc}") from None
    if cfg.token_url is not None and not re.match(r"^https?://[^/]+", cfg.token_url):
        raise ConfigError(f"{where}.token_url: expected an http(s) URL, got {cfg.token_url!r}")


def _from_env(env: dict[str, str]) -> dict | None:
    creds = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    project = env.get("VERTEX_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT")
    if not (creds and project):
        return None
    location = env.get("VERTEX_LOCATION") or env.get("GOOGLE_CLOUD_LOCATION") or DEFAULT_LOCATION
    return {
        "name": "vertex",
        "type": "vertex",
        "project": project,
        "location": location,
        "credentials_file": creds,
        "base_url": vertex_host(location),
        "models": list(DEFAULT_MODELS),
    }


DEFAULT_MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.0-flash", "text-embedding-005")

SPECS: dict[str, ProviderSpec] = {
    "vertex": ProviderSpec(
        type="vertex",
        adapter=_GEMINI,
        adapter_for=adapter_for,
        headers=vertex_headers,
        base_url_for=vertex_base_url,  # {location}-aiplatform.googleapis.com
        key_env=None,
        key_required=False,
        default_models=DEFAULT_MODELS,
        validate=_validate,
        signer=VertexAuth,
        from_env=_from_env,
        notes={
            "auth": "service account -> OAuth2 bearer token (cached, refreshed before expiry)",
            "anthropic": "model ids starting with 'claude' use the Anthropic Messages format",
        },
    )
}
