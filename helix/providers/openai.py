"""The OpenAI wire format: OpenAI itself and every OpenAI-compatible API.

Groq, Together, Mistral, Perplexity, DeepSeek, Fireworks, xAI, OpenRouter,
Ollama, vLLM and any ``openai_compatible`` endpoint speak this format; Azure
OpenAI differs only in its URL (deployment + ``api-version``) and its
``api-key`` header.  The request body is passed through unchanged except for
``model``, which is rewritten to the provider's id only when it differs.
"""

from __future__ import annotations

import time

import msgspec

from helix._fast import ScanRelay, SSEParser, chunk_text
from helix.errors import ErrorKind, HelixError
from helix.providers.base import Deployment, UpstreamRequest
from helix.providers.catalog import ProviderSpec
from helix.schema.body import replace_model
from helix.schema.stream import ABSENT
from helix.schema.usage import Usage, read_openai_usage

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
        return HelixError.upstream(
            status, e.message, type=e.type or "upstream_error", code=e.code, param=e.param,
            headers=extra,
        )
    if env is not None:
        text = env.error if isinstance(env.error, str) else (env.message or env.detail)
    else:
        text = None
    if not text:
        text = body[:300].decode("utf-8", "replace").strip() or "(empty body)"
    return HelixError.upstream(status, f"{provider} returned HTTP {status}: {text}", headers=extra)


class _UsageOnly(msgspec.Struct):
    """Any OpenAI response or stream chunk, reduced to its ``usage`` object."""

    usage: dict | None = None


_usage_decoder = msgspec.json.Decoder(_UsageOnly)


def decode_usage(body: bytes) -> dict | None:
    """The OpenAI ``usage`` dict of a JSON response body or chunk; None when absent or bad.

    Only ``usage`` is built: every other field is skipped by the decoder.
    """
    try:
        usage = _usage_decoder.decode(body).usage
    except msgspec.DecodeError:  # ValidationError included: ``usage`` of the wrong type
        return None
    return usage


# Searched with ``payload.find(key) >= 0``, not ``key in payload``: on 3.11 ``bytes in bytes``
# first tries the needle as an int and formats the TypeError it gets (about 2,000
# instructions an event, a streamed request's every event).
_USAGE_KEY = b'"usage"'
_JSON_SPACE = b" \t\r\n:"


def _has_usage(data: bytes) -> bool:
    """Cheap pre-check: a top-level-looking ``"usage":`` that is not ``null``."""
    i = data.find(_USAGE_KEY)
    if i < 0:
        return False
    i += len(_USAGE_KEY)
    n = len(data)
    while i < n and data[i] in _JSON_SPACE:
        i += 1
    return i < n and data[i] != 110  # "n": null


class OpenAIStreamRelay(ScanRelay):
    """Relays OpenAI SSE bytes unchanged, as they arrive, and notes the usage.

    The relay does not wait for whole events: a byte that reached Helix goes
    to the client in the same loop turn.  The bytes also run through an SSE
    parser so that a chunk carrying ``usage`` (the last one, when the client
    asked for ``stream_options.include_usage``) is decoded -- only that one:
    other events cost a substring search, in C (:class:`ScanRelay`).
    """

    __slots__ = ("usage",)
    passthrough = True  # bytes go out exactly as the provider sent them

    def __init__(self) -> None:
        super().__init__((_USAGE_KEY,))
        self.usage: Usage | None = None

    def see(self, _event, payload: bytes) -> None:
        if _has_usage(payload):
            usage = read_openai_usage(payload)
            if usage is not None:
                self.usage = usage


class _ToolCallDelta(msgspec.Struct):
    index: int = 0
    id: str | None = None
    type: str | None = None
    function: dict | None = None


class _Delta(msgspec.Struct):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # vLLM, OpenRouter, Groq
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []
    usage: dict | None = None
    error: _ProviderError | str | None = None


class _FirstChunk(_Chunk):
    """The first chunk: its id and time start the client's stream (later chunks repeat
    them, and are read without them: two strings fewer to make per chunk)."""

    id: str | None = None
    created: int | None = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)
_first_decoder = msgspec.json.Decoder(_FirstChunk)


class OpenAIChunkReader:
    """OpenAI ``chat.completion.chunk`` SSE in, the calls of another client's sink out.

    For a client that does not speak chat completions (an Anthropic or a
    Responses client) in front of an OpenAI-compatible provider.  Reasoning
    arrives as ``reasoning_content`` (DeepSeek, vLLM) or ``reasoning``
    (OpenRouter, Groq); a refusal is passed on as content.  The stream must end
    with ``data: [DONE]``; an in-band ``{"error": ...}`` raises HelixError.
    """

    __slots__ = ("_dep", "_done", "_parser", "_sink", "_started", "usage")
    passthrough = False

    def __init__(self, dep: Deployment, sink) -> None:
        self._dep = dep
        self._sink = sink
        self._parser = SSEParser()
        self._started = False
        self._done = False
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for _event, payload in self._parser.feed(data):
            if self._done:
                break
            if payload == b"[DONE]":
                self._done = True
                if not self._started:
                    raise HelixError(ErrorKind.UPSTREAM_PROTOCOL,
                                     f"{self._dep.provider} ended the stream without a chunk")
                out.append(self._sink.end())
                continue
            if self._started and chunk_text is not None:
                text = chunk_text(payload)  # most chunks: more text, read without a decode
                if text is not None:
                    out.append(self._sink.text(0, text))
                    continue
            try:
                chunk = (_chunk_decoder if self._started else _first_decoder).decode(payload)
            except msgspec.DecodeError as exc:
                raise HelixError(
                    ErrorKind.UPSTREAM_PROTOCOL,
                    f"{self._dep.provider} sent a malformed stream chunk ({exc})",
                ) from None
            if chunk.error is not None:
                raise upstream_error(self._dep.provider, 500, [], payload)
            self._chunk(chunk, out)
        return b"".join(out)

    def _chunk(self, chunk: _Chunk, out: list[bytes]) -> None:
        sink = self._sink
        if not self._started:
            self._started = True
            out.append(sink.start(chunk.id or "chatcmpl-helix", self._dep.model,
                                  chunk.created or int(time.time())))
        for c in chunk.choices:
            d = c.delta
            if d is not None:
                text = d.content
                if (text and d.role is None and d.tool_calls is None  # most chunks: text only
                        and not d.reasoning_content and not d.reasoning):
                    out.append(sink.text(c.index, text))
                    if c.finish_reason:
                        out.append(sink.finish(c.index, c.finish_reason))
                    continue
                if text is None:
                    text = d.refusal
                reasoning = d.reasoning_content or d.reasoning
                tools = None
                if d.tool_calls:
                    tools = []
                    for t in d.tool_calls:
                        call: dict = {"index": t.index}
                        if t.id is not None:
                            call["id"] = t.id
                            call["type"] = t.type or "function"
                        if t.function is not None:
                            call["function"] = t.function
                        tools.append(call)
                if text or reasoning or tools or d.role:
                    out.append(sink.delta(c.index, role=bool(d.role),
                                          content=text if text is not None else ABSENT,
                                          reasoning=reasoning or None, tools=tools))
            if c.finish_reason:
                out.append(sink.finish(c.index, c.finish_reason))
        if chunk.usage is not None:
            usage = Usage.from_openai(chunk.usage)
            if usage is not None:
                self.usage = usage
                out.append(sink.usage(usage))

    def close(self) -> bytes:
        self._parser.close()
        if not self._done:
            raise HelixError(ErrorKind.UPSTREAM_PROTOCOL,
                             f"{self._dep.provider} ended the stream before [DONE]")
        return b""


class _ResponseEvent(msgspec.Struct):
    type: str = ""
    response: _ResponseUsage | None = None


class _ResponseUsage(msgspec.Struct):
    id: str | None = None
    usage: dict | None = None


_response_event_decoder = msgspec.json.Decoder(_ResponseEvent)
_RESPONSE_ID = b'"response.created"'


class ResponsesPassthroughRelay(ScanRelay):
    """The Responses API's SSE bytes out exactly as they came in; the response id (from
    ``response.created``) and the usage (inside ``response.completed`` /
    ``.incomplete`` / ``.failed``) read on the way."""

    __slots__ = ("response_id", "usage")
    passthrough = True

    def __init__(self) -> None:
        super().__init__((_USAGE_KEY, _RESPONSE_ID))
        self.usage: Usage | None = None
        self.response_id: str | None = None

    def see(self, _event, payload: bytes) -> None:
        if (payload.find(_USAGE_KEY) >= 0 and _has_usage(payload)) or (
                self.response_id is None and payload.find(_RESPONSE_ID) >= 0):
            try:
                ev = _response_event_decoder.decode(payload)
            except msgspec.DecodeError:
                return
            if ev.response is not None:
                if self.response_id is None:
                    self.response_id = ev.response.id
                if ev.response.usage is not None:
                    self.usage = Usage.from_responses(ev.response.usage)


class _PlainRelay:
    """Relays bytes unchanged and keeps no state: for streams that carry no usage."""

    __slots__ = ()
    usage = None
    passthrough = True

    def feed(self, data: bytes) -> bytes:
        return data

    def close(self) -> bytes:
        return b""


_RELAY = _PlainRelay()
# OpenAI and Azure send usage in a stream only when the client asked for it;
# compatible servers (Mistral, Together, vLLM ...) may send it unasked.
_USAGE_ONLY_WHEN_ASKED = frozenset({"openai", "azure"})


def wants_usage(dep: Deployment, view) -> bool:
    opts = view.stream_options
    if opts is not None and opts.include_usage:
        return True
    return dep.provider_type not in _USAGE_ONLY_WHEN_ASKED


_ENDPOINTS = {"chat": "chat/completions", "embeddings": "embeddings", "responses": "responses"}


class OpenAIAdapter:
    """Adapter for the OpenAI wire format (stateless: one instance per process)."""

    # Bodies go both ways as the provider speaks them (only ``model`` may be rewritten).
    passthrough = True
    native = frozenset(_ENDPOINTS)

    def _target(self, dep: Deployment, endpoint: str) -> bytes:
        path = f"{dep.base_path}/{endpoint}"
        return (f"{path}?{dep.query}" if dep.query else path).encode()

    def _request(self, dep: Deployment, view, body: bytes, endpoint: str) -> UpstreamRequest:
        if view.model != dep.model_id:
            body = replace_model(body, view.model, dep.model_id)
        target = dep.targets.get(endpoint)
        if target is None:  # once per deployment and endpoint
            target = dep.targets[endpoint] = self._target(dep, endpoint)
        return UpstreamRequest(b"POST", target, dep.static_headers, body)

    def chat_request_doc(self, dep: Deployment, view, doc: dict) -> UpstreamRequest:
        return self._request(dep, view, _encode(doc), "chat/completions")

    def chat_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        return self._request(dep, view, body, "chat/completions")

    def embeddings_request(self, dep: Deployment, view, body: bytes) -> UpstreamRequest:
        return self._request(dep, view, body, "embeddings")

    def chat_document(self, dep: Deployment, body: bytes) -> tuple[dict, Usage | None]:
        """A chat completion as a document, for clients that speak another API."""
        try:
            doc = _decode(body)
        except msgspec.DecodeError as exc:
            raise HelixError(
                ErrorKind.UPSTREAM_PROTOCOL,
                f"{dep.provider} returned a completion Helix could not read ({exc})",
            ) from None
        if not isinstance(doc, dict):
            raise HelixError(ErrorKind.UPSTREAM_PROTOCOL,
                             f"{dep.provider} returned a completion that is not an object")
        return doc, Usage.from_openai(doc.get("usage"))

    def embeddings_response(self, dep: Deployment, body: bytes) -> bytes:
        return body

    def stream_relay(self, dep: Deployment, view, sink) -> OpenAIChunkReader:
        return OpenAIChunkReader(dep, sink)

    def error(self, dep: Deployment, status: int, headers, body: bytes) -> HelixError:
        return upstream_error(dep.provider, status, headers, body)

    # -- native: OpenAI clients ----------------------------------------------------------
    def native_request(self, api: str, dep: Deployment, view, request) -> UpstreamRequest:
        return self._request(dep, view, request.body, _ENDPOINTS[api])

    def native_relay(self, api: str, dep: Deployment, view):
        if api == "responses":
            return ResponsesPassthroughRelay()
        # Usage is never injected into the request: the client gets what it asked for.
        return OpenAIStreamRelay() if wants_usage(dep, view) else _RELAY

    def resource_target(self, dep: Deployment, path: str, query: str = "") -> bytes:
        """A stored resource at the provider (``responses/<id>``), for GET and DELETE."""
        target = f"{dep.base_path}/{path}"
        query = "&".join(q for q in (dep.query, query) if q)
        return (f"{target}?{query}" if query else target).encode()

    def native_error(self, api: str, dep: Deployment, status: int, headers,
                     body: bytes) -> HelixError:
        return upstream_error(dep.provider, status, headers, body)

    def native_response(self, api: str, dep: Deployment, body: bytes) -> bytes:
        return body


class AzureOpenAIAdapter(OpenAIAdapter):
    """Azure OpenAI: ``/openai/deployments/{deployment}/{endpoint}?api-version=``; the
    Responses API at ``/openai/v1/responses`` with the deployment as ``model``."""

    def _target(self, dep: Deployment, endpoint: str) -> bytes:
        if endpoint == "responses":
            return f"{dep.base_path}/openai/v1/responses".encode()
        return f"{dep.base_path}/openai/deployments/{dep.model_id}/{endpoint}?{dep.query}".encode()

    def _request(self, dep: Deployment, view, body: bytes, endpoint: str) -> UpstreamRequest:
        if endpoint == "responses" and view.model != dep.model_id:
            body = replace_model(body, view.model, dep.model_id)  # the deployment's name
        # Chat and embeddings route by the deployment in the URL and ignore ``model``.
        return UpstreamRequest(b"POST", self._target(dep, endpoint), dep.static_headers, body)

    def resource_target(self, dep: Deployment, path: str, query: str = "") -> bytes:
        target = f"{dep.base_path}/openai/v1/{path}"
        return (f"{target}?{query}" if query else target).encode()


def base_headers(extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """What every upstream request carries, plus the provider's configured extras."""
    headers = [
        (b"content-type", _JSON),
        (b"accept-encoding", b"identity"),  # bodies are relayed as they come: never compressed
        (b"user-agent", b"helix-gateway"),
    ]
    for k, v in extra.items():
        headers.append((k.lower().encode("latin-1"), v.encode("latin-1")))
    return headers


def bearer_headers(cfg) -> list[tuple[bytes, bytes]]:
    headers = base_headers(cfg.headers)
    if cfg.api_key:
        headers.append((b"authorization", b"Bearer " + cfg.api_key.encode("latin-1")))
    if cfg.organization:
        headers.append((b"openai-organization", cfg.organization.encode("latin-1")))
    return headers


def azure_headers(cfg) -> list[tuple[bytes, bytes]]:
    headers = base_headers(cfg.headers)
    if cfg.api_key:
        headers.append((b"api-key", cfg.api_key.encode("latin-1")))
    return headers


def _azure_query(cfg) -> str:
    return f"api-version={cfg.api_version or AZURE_DEFAULT_API_VERSION}"


def _azure_from_env(env: dict[str, str]) -> dict | None:
    if not (env.get("AZURE_OPENAI_API_KEY") and env.get("AZURE_OPENAI_ENDPOINT")):
        return None
    names = env.get("AZURE_OPENAI_DEPLOYMENTS", "").split(",")
    return {
        "name": "azure",
        "type": "azure",
        "api_key": env["AZURE_OPENAI_API_KEY"],
        "base_url": env["AZURE_OPENAI_ENDPOINT"],
        "models": [m.strip() for m in names if m.strip()],
        "api_version": env.get("AZURE_OPENAI_API_VERSION") or None,
    }


def _url_from_env(ptype: str, url_var: str, key_var: str | None):
    def from_env(env: dict[str, str]) -> dict | None:
        if not env.get(url_var):
            return None
        doc = {"name": ptype, "type": ptype, "base_url": env[url_var], "models": []}
        if key_var and env.get(key_var):
            doc["api_key"] = env[key_var]
        return doc

    return from_env


_ADAPTER = OpenAIAdapter()


def _family(ptype, base_url, key_env, models=(), **kw) -> ProviderSpec:
    return ProviderSpec(
        type=ptype,
        adapter=_ADAPTER,
        headers=bearer_headers,
        default_base_url=base_url,
        key_env=key_env,
        default_models=tuple(models),
        **kw,
    )


SPECS: dict[str, ProviderSpec] = {
    s.type: s
    for s in (
        _family(
            "openai",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            [
                "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini",
                "o4-mini", "gpt-3.5-turbo", "text-embedding-3-small", "text-embedding-3-large",
                "text-embedding-ada-002",
            ],
        ),
        _family(
            "groq",
            "https://api.groq.com/openai/v1",
            "GROQ_API_KEY",
            ["llama-3.3-70b-versatile", "llama-3.1-8b-instant", "gemma2-9b-it"],
        ),
        _family(
            "together",
            "https://api.together.xyz/v1",
            "TOGETHER_API_KEY",
            ["meta-llama/Llama-3.3-70B-Instruct-Turbo", "Qwen/Qwen2.5-72B-Instruct-Turbo"],
        ),
        _family(
            "mistral",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            ["mistral-large-latest", "mistral-medium-latest", "mistral-small-latest",
             "mistral-embed"],
        ),
        _family("perplexity", "https://api.perplexity.ai", "PERPLEXITY_API_KEY",
                ["sonar", "sonar-pro", "sonar-reasoning"]),
        _family("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY",
                ["deepseek-chat", "deepseek-reasoner"]),
        _family("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY",
                ["accounts/fireworks/models/llama-v3p3-70b-instruct"]),
        _family("xai", "https://api.x.ai/v1", "XAI_API_KEY", ["grok-3", "grok-3-mini"]),
        _family("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        _family("ollama", "http://127.0.0.1:11434/v1", None, key_required=False,
                from_env=_url_from_env("ollama", "OLLAMA_BASE_URL", None)),
        _family("vllm", None, None, key_required=False,
                from_env=_url_from_env("vllm", "VLLM_BASE_URL", "VLLM_API_KEY")),
        _family("openai_compatible", None, None, key_required=False),
        ProviderSpec(
            type="azure",
            adapter=AzureOpenAIAdapter(),
            headers=azure_headers,
            default_base_url=None,
            key_env=None,
            query=_azure_query,
            from_env=_azure_from_env,
        ),
    )
}
