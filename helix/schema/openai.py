"""OpenAI wire-format Structs: the *view* of a request Helix needs, nothing more.

Requests are decoded once into a view Struct holding only the fields Helix
routes on; the body bytes themselves are what goes upstream, so vendor
extensions and fields Helix has never heard of pass through untouched.
Decoders and encoders are module globals (built once, reused per request).
"""

from __future__ import annotations

import base64
import hashlib
import struct

import msgspec

from helix.errors import ErrorKind, HelixError
from helix.schema.jsonsafe import decode_client, depth_exceeds, too_deep_client


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatRequestView(msgspec.Struct):
    """What routing needs from ``POST /v1/chat/completions``."""

    model: str
    messages: list[msgspec.Raw]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    user: str | None = None

    def tokens(self) -> tuple[int, int | None]:
        """(prompt, most completion) tokens this request may use: ~4 bytes a prompt token;
        the completion limit the client set (None: none set).  Limits and the cost-based
        balancer read this one estimate."""
        prompt = sum(len(m) for m in self.messages) // 4
        return prompt, self.max_completion_tokens or self.max_tokens


class EmbeddingsRequestView(msgspec.Struct):
    model: str
    input: msgspec.Raw
    encoding_format: str | None = None
    user: str | None = None

    def tokens(self) -> tuple[int, int | None]:
        return len(self.input) // 4, 0


chat_request_decoder = msgspec.json.Decoder(ChatRequestView)
embeddings_request_decoder = msgspec.json.Decoder(EmbeddingsRequestView)
json_decode = msgspec.json.decode
json_encode = msgspec.json.Encoder().encode


# --- building OpenAI responses (for translating adapters) ---------------------------------


def chunk_prefix(chunk_id: str, created: int, model: str, backend: str | None = None) -> bytes:
    """Everything of a ``chat.completion.chunk`` before its choices, with the fields OpenAI
    sends on every chunk (``service_tier``, ``system_fingerprint`` of ``backend``, the
    upstream model version, as in :func:`chat_completion`): encoded once per stream."""
    return (
        b'{"id":' + json_encode(chunk_id) + b',"object":"chat.completion.chunk","created":'
        + str(created).encode() + b',"model":' + json_encode(model)
        + b',"service_tier":"' + SERVICE_TIER.encode() + b'","system_fingerprint":"'
        + system_fingerprint(backend or model).encode() + b'","choices":'
    )


def sse_chunk(prefix: bytes, delta: dict, finish: str | None = None) -> bytes:
    """One SSE event carrying choice 0's ``delta`` (and ``finish_reason`` when given)."""
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return b"data: " + prefix + json_encode([choice]) + b"}\n\n"


def sse_usage_chunk(prefix: bytes, usage: dict) -> bytes:
    """The ``stream_options.include_usage`` event: no choices, the stream's usage."""
    return b"data: " + prefix + b'[],"usage":' + json_encode(usage) + b"}\n\n"


# A translated answer is processed at the provider's standard tier, OpenAI's "default".
SERVICE_TIER = "default"


_FINGERPRINTS: dict[str, str] = {}


def system_fingerprint(backend: str | None) -> str:
    """``system_fingerprint`` of a translated answer: ``fp_`` + 10 hex of the upstream model
    version (Anthropic's ``model``, Gemini's ``modelVersion``, the Bedrock or Cohere model id),
    so, like OpenAI's, it changes when the backend serving the model changes."""
    key = backend or ""
    fp = _FINGERPRINTS.get(key)
    if fp is None:
        fp = "fp_" + hashlib.sha256(key.encode()).hexdigest()[:10]
        if len(_FINGERPRINTS) < 256:  # the upstreams' model versions: a handful, kept bounded
            _FINGERPRINTS[key] = fp
    return fp


def chat_completion(
    cid: str,
    created: int,
    model: str,
    message: dict,
    finish_reason: str,
    usage: dict | None,
    *,
    backend: str | None = None,
) -> dict:
    """A one-choice ``chat.completion`` object, with the fields OpenAI always sends
    (``message.refusal``, ``logprobs``, ``service_tier``, ``system_fingerprint``); usage left
    out when unknown.  ``backend`` is the upstream model version (default: ``model``)."""
    message.setdefault("refusal", None)
    out = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
    }
    if usage is not None:
        out["usage"] = usage
    out["service_tier"] = SERVICE_TIER
    out["system_fingerprint"] = system_fingerprint(backend or model)
    return out


def embeddings_as_base64(body: bytes) -> bytes:
    """An OpenAI embedding list with float vectors -> the same with base64 vectors.

    ``encoding_format: "base64"`` means little-endian float32 bytes, base64-encoded, as
    OpenAI sends them.  Translating adapters produce floats; this one step turns them into
    what the client asked for.  Vectors that are already strings are left alone.
    """
    doc = json_decode(body)
    for item in doc.get("data") or ():
        vec = item.get("embedding")
        if isinstance(vec, list):
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
    return json_encode(doc)


def _param_of(exc: msgspec.ValidationError) -> str | None:
    text = str(exc)
    marker = " - at `$."
    i = text.rfind(marker)
    return text[i + len(marker) : -1] if i >= 0 else None


def decode_request(decoder: msgspec.json.Decoder, body: bytes):
    """Decode a client body into a view Struct; failures become OpenAI-shaped 400s."""
    if not body:
        raise HelixError(ErrorKind.INVALID_REQUEST, "The request body is empty; expected JSON.")
    try:
        # Nesting bounded here, once, for everything downstream (translators, cache key):
        # decode_client's work, its usual case inline (one frame fewer a request).
        view = decoder.decode(body)
        if depth_exceeds(body):
            raise too_deep_client()
        return view
    except (RecursionError, msgspec.DecodeError) as exc:
        if isinstance(exc, msgspec.ValidationError):
            raise _invalid(exc) from None
        return decode_client(body, decoder)  # raises the 400 this body deserves


def _invalid(exc: msgspec.ValidationError) -> HelixError:
    """The 400 for a body that is JSON but not the request's shape, naming the parameter."""
    msg = str(exc)
    param = _param_of(exc)
    if msg.startswith("Object missing required field"):
        field = msg.split("`")[1]
        prefix = f"{param}." if param else ""
        return_param = f"{prefix}{field}"
        return HelixError(
            ErrorKind.INVALID_REQUEST,
            f"Missing required parameter: '{return_param}'.",
            param=return_param,
            code="missing_required_parameter",
        )
    if msg.startswith("Expected `object`, got") and param is None:
        return HelixError(ErrorKind.INVALID_REQUEST, "The request body must be a JSON object.")
    return HelixError(
        ErrorKind.INVALID_REQUEST,
        f"Invalid value for '{param}': {msg.split(' - at ')[0]}." if param else msg,
        param=param,
        code="invalid_type" if msg.startswith("Expected") else None,
    )
