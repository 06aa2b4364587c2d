"""Google wire formats for the mock provider: the Gemini API, Vertex AI and an OAuth token endpoint.

* ``POST /v1beta/models/{model}:generateContent`` / ``:streamGenerateContent?alt=sse`` /
  ``:embedContent`` / ``:batchEmbedContents`` -- Gemini API (``x-goog-api-key``); the same
  under ``/v1/models/`` (google-genai's default).
* ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent`` /
  ``:streamGenerateContent?alt=sse`` / ``:predict`` -- Vertex AI, and
  ``.../publishers/anthropic/models/{model}:rawPredict`` / ``:streamRawPredict`` (Claude on
  Vertex: the Anthropic mock's answer, when that route module exists).  Vertex calls need
  ``authorization: Bearer <token>`` with a token this mock issued.
* ``POST /token`` -- Google's OAuth2 JWT-bearer grant.  The assertion's structure and
  claims are checked (RS256, ``iss``, ``scope``, ``aud``, ``iat``, ``exp``, at most one hour);
  its signature too when the account's public key was registered with
  ``POST /token/keys`` ``{"client_email": ..., "public_key": "<PEM>"}``.

Replies are deterministic: ``mock reply to: <last user text>``; ``call tool`` in the last
user text makes the model call the first declared function; a function response is
answered with ``tool said: <response JSON>``; JSON mode (``responseMimeType:
application/json``) answers a minimal instance of ``responseSchema`` or ``responseJsonSchema``
(``instance.py``; both at once, or a schema without JSON mode, is Google's 400), and forced
function calls (mode ``ANY``) get arguments valid for the declaration's schema.
``thinkingConfig`` (``thinkingBudget`` other than 0, or ``thinkingLevel``) reports
``thoughtsTokenCount`` and puts a ``thoughtSignature`` on the answer's first part; with
``includeThoughts`` the thought summary comes first as a ``{"text", "thought": true}`` part.
As Google's models do: Gemini 3 always thinks (so always signs), takes ``thinkingLevel``
and refuses a function-call turn of the current turn sent back without its
``thoughtSignature``; Gemini 2.5 refuses ``thinkingLevel``; Gemini 2.0 does not think (any
thinking config is a 400).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import time
from typing import Any
from urllib.parse import parse_qs

import orjson

from .base import BadRequest, Controls, MockRequest, Reply, StreamReply, count_tokens, split_text
from .instance import instance
from .openai_routes import embedding_vector

NAME = "gemini"

DEFAULT_EMBEDDING_DIM = 16
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

_ids = itertools.count(1)
_id_prefix = os.urandom(3).hex()
_issued: dict[str, float] = {}  # access token -> expiry (time.time())
_public_keys: dict[str, bytes] = {}  # client_email -> PEM public key
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_reply(
    status: int, message: str | None = None, code: str | None = None, param: str | None = None
) -> Reply:
    if message is None:
        message = f"mock error (status {status})"
        if status == 429:
            message = "Resource has been exhausted (e.g. check quota). (mock)"
    body = {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}
    return Reply(status, orjson.dumps(body))


def check_auth(req: MockRequest, key: str) -> bool:
    if req.path.startswith("/token"):
        return True
    if req.path.startswith("/v1/projects/"):
        return _bearer_ok(req)
    return req.headers.get("x-goog-api-key") == key or parse_qs(req.query).get("key") == [key]


def _bearer_ok(req: MockRequest) -> bool:
    auth = req.headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        return False
    expiry = _issued.get(auth[7:])
    return expiry is not None and expiry > time.time()


def _new_id() -> str:
    return f"{_id_prefix}{next(_ids):08d}"


# --------------------------------------------------------------------------- validation


def _body(req: MockRequest) -> dict[str, Any]:
    if not isinstance(req.json, dict):
        raise BadRequest("Invalid JSON payload received.")
    return req.json


_PART_KEYS = frozenset(
    {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought",
     "thoughtSignature"}
)
_REQUEST_KEYS = frozenset(
    {"contents", "systemInstruction", "generationConfig", "tools", "toolConfig",
     "safetySettings", "cachedContent", "labels"}
)


def _validate(body: dict[str, Any]) -> list[dict[str, Any]]:
    for key in body:
        if key not in _REQUEST_KEYS:
            raise BadRequest(f'Invalid JSON payload received. Unknown name "{key}": '
                             "Cannot find field.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role") not in ("user", "model"):
            raise BadRequest(f"* GenerateContentRequest.contents[{i}].role: must be user or model")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise BadRequest(f"* GenerateContentRequest.contents[{i}].parts: must not be empty")
        for part in parts:
            if not isinstance(part, dict) or not part or not set(part) <= _PART_KEYS:
                raise BadRequest(f"* GenerateContentRequest.contents[{i}].parts: invalid part")
    return contents


def _last_user(contents: list[dict[str, Any]]) -> dict[str, Any]:
    for content in reversed(contents):
        if content.get("role") == "user":
            return content
    return {"parts": []}


def _text(content: dict[str, Any]) -> str:
    return " ".join(p["text"] for p in content.get("parts", []) if isinstance(p.get("text"), str))


def _wants_tool(body: dict[str, Any], last: dict[str, Any]) -> dict[str, Any] | None:
    mode = (((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode"))
    if mode == "NONE":
        return None
    decls = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    if not decls:
        return None
    allowed = (((body.get("toolConfig") or {}).get("functionCallingConfig") or {})
               .get("allowedFunctionNames"))
    if allowed:
        decls = [d for d in decls if d.get("name") in allowed] or decls
    if mode == "ANY" or "call tool" in _text(last).lower():
        return decls[0]
    return None


def _json_schema(gen: dict[str, Any]) -> dict[str, Any] | None:
    """The schema JSON mode must follow (``responseSchema`` or ``responseJsonSchema``)."""
    schema, json_schema = gen.get("responseSchema"), gen.get("responseJsonSchema")
    if schema is not None and json_schema is not None:
        raise BadRequest("* GenerationConfig: response_schema and response_json_schema cannot "
                         "both be set.")
    chosen = schema if schema is not None else json_schema
    if chosen is not None and gen.get("responseMimeType") != "application/json":
        raise BadRequest("* GenerationConfig.response_mime_type: must be application/json when "
                         "a response schema is set.")
    return chosen


_SNAKE = {"thinking_budget": "thinkingBudget", "include_thoughts": "includeThoughts",
          "thinking_level": "thinkingLevel"}


def _thinking(gen: dict[str, Any]) -> dict[str, Any] | None:
    """``thinkingConfig`` when it turns thinking on (budget -1 = dynamic, 0 = off)."""
    cfg = gen.get("thinkingConfig", gen.get("thinking_config"))
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise BadRequest("* GenerationConfig.thinking_config: invalid thinking config")
    # Proto JSON: lowerCamel or the proto's own snake_case names (google-genai sends those).
    cfg = {_SNAKE.get(k, k): v for k, v in cfg.items()}
    if not set(cfg) <= {"thinkingBudget", "includeThoughts", "thinkingLevel"}:
        raise BadRequest("* GenerationConfig.thinking_config: invalid thinking config")
    budget, level = cfg.get("thinkingBudget"), cfg.get("thinkingLevel")
    if budget is not None and level is not None:
        raise BadRequest("* GenerationConfig.thinking_config: thinking_budget and thinking_level "
                         "are not supported together.")
    if budget is not None and (not isinstance(budget, int) or budget < -1):
        raise BadRequest("* GenerationConfig.thinking_config.thinking_budget: must be -1, 0 or "
                         "a positive number of tokens")
    if level is not None and str(level).lower() not in ("minimal", "low", "medium", "high"):
        raise BadRequest("* GenerationConfig.thinking_config.thinking_level: invalid value")
    if budget == 0:
        return None
    return cfg


def _model_thinking(model: str, thinking: dict[str, Any] | None,
                    given: bool) -> dict[str, Any] | None:
    """The model's own rules on top of the request's ``thinkingConfig``."""
    if model.startswith(("gemini-1", "gemini-2.0")) and given:
        raise BadRequest(f"* GenerationConfig.thinking_config: thinking is not supported by "
                         f"models/{model}.")
    if model.startswith("gemini-2.5") and thinking and "thinkingLevel" in thinking:
        raise BadRequest("* GenerationConfig.thinking_config.thinking_level: thinking level "
                         f"is not supported by models/{model}; use thinking_budget.")
    if model.startswith("gemini-3") and thinking is None:
        return {}  # Gemini 3 cannot stop thinking
    return thinking


_BYPASS = frozenset({"skip_thought_signature_validator",
                     base64.b64encode(b"skip_thought_signature_validator").decode()})


def _check_signatures(model: str, contents: list[dict[str, Any]]) -> None:
    """Gemini 3: in the current turn (since the last user text), each model step's first
    function call must carry the thought signature it was answered with."""
    if not model.startswith("gemini-3"):
        return
    start = max((i for i, c in enumerate(contents)
                 if c["role"] == "user" and any("text" in p for p in c["parts"])), default=0)
    for i, content in enumerate(contents[start:], start):
        calls = [p for p in content["parts"] if "functionCall" in p]
        if content["role"] != "model" or not calls:
            continue
        sig = calls[0].get("thoughtSignature")
        ok = isinstance(sig, str)
        if sig in _BYPASS:  # Google's documented stand-in, as JSON or as the SDKs send bytes
            continue
        if ok:
            try:
                ok = base64.b64decode(sig).startswith(b"mock-thought:")
            except (binascii.Error, ValueError):
                ok = False
        if not ok:
            name = calls[0]["functionCall"].get("name")
            raise BadRequest(
                "Function call is missing a thought_signature in functionCall parts. This is "
                "required for tools to work correctly, and missing thought_signature may lead "
                f"to degraded model performance. Additional data, function call `{name}` , "
                f"position {i + 1}. Please refer to "
                "https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")


def _answer(body: dict[str, Any], contents: list[dict[str, Any]]) -> tuple[str, dict | None]:
    """(text, functionCall or None) for a request."""
    last = _last_user(contents)
    responses = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
    if responses:
        text = "tool said: " + orjson.dumps(responses[0].get("response")).decode()
    else:
        tool = _wants_tool(body, last)
        if tool is not None:
            schema = next((tool[k] for k in ("parametersJsonSchema", "parameters_json_schema",
                                              "parameters") if tool.get(k) is not None), None)
            return "", {"name": tool["name"], "args": instance(schema) if schema else {}}
        text = f"mock reply to: {_text(last)[:40]}"
    gen = body.get("generationConfig") or {}
    schema = _json_schema(gen)
    if gen.get("responseMimeType") == "application/json":
        value = instance(schema) if schema else {"reply": text}
        text = orjson.dumps(value).decode()
    return text, None


def _usage(body: dict[str, Any], contents: list[dict[str, Any]], out_tokens: int,
           thoughts: int = 0) -> dict:
    prompt = sum(count_tokens(_text(c)) for c in contents)
    system = body.get("systemInstruction")
    if isinstance(system, dict):
        prompt += count_tokens(_text(system))
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": out_tokens,
        "totalTokenCount": prompt + out_tokens + thoughts,
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def thought_signature(text: str) -> str:
    """The opaque signature Gemini attaches to the first part after thinking."""
    return base64.b64encode(b"mock-thought:" + text.encode()[:32]).decode()


def _generate(req: MockRequest, ctl: Controls, model: str, stream: bool) -> Reply | StreamReply:
    body = _body(req)
    contents = _validate(body)
    text, call = _answer(body, contents)
    gen = body.get("generationConfig") or {}
    given = "thinkingConfig" in gen or "thinking_config" in gen
    thinking = _model_thinking(model, _thinking(gen), given)
    _check_signatures(model, contents)
    n = gen.get("candidateCount") or 1
    max_out = gen.get("maxOutputTokens")
    finish = "STOP"
    if call is None and isinstance(max_out, int) and count_tokens(text) > max_out:
        text = " ".join(text.split()[:max_out])
        finish = "MAX_TOKENS"
    out_tokens = count_tokens(orjson.dumps(call).decode()) if call else count_tokens(text)
    thought_text = ""
    thoughts = 0
    if thinking is not None:
        thought_text = f"mock thoughts about: {_text(_last_user(contents))[:40]}"
        thoughts = count_tokens(thought_text)
    usage = _usage(body, contents, out_tokens * n, thoughts * n)
    rid = _new_id()
    head = {"modelVersion": model, "responseId": rid}
    answer: dict = {"functionCall": call} if call else {"text": text}
    if thinking is not None:
        answer["thoughtSignature"] = thought_signature(thought_text)
    shown = [{"text": thought_text, "thought": True}] \
        if thinking is not None and thinking.get("includeThoughts") else []
    if not stream:
        cands = [
            {"content": {"role": "model", "parts": [*shown, answer]}, "finishReason": finish,
             "index": i}
            for i in range(n)
        ]
        return Reply(200, orjson.dumps({"candidates": cands, "usageMetadata": usage, **head}))
    events = []
    pieces = [] if call else split_text(text, ctl.chunks)
    for i in range(n):
        for part in shown:
            for piece in split_text(part["text"], 2):
                cand = {"content": {"role": "model", "parts": [{"text": piece, "thought": True}]},
                        "index": i}
                events.append({"candidates": [cand], **head})
        for k, piece in enumerate(pieces[:-1]):
            first = {"text": piece}
            if k == 0 and "thoughtSignature" in answer:
                first["thoughtSignature"] = answer["thoughtSignature"]
            cand = {"content": {"role": "model", "parts": [first]}, "index": i}
            events.append({"candidates": [cand], **head})
        if call:
            last_parts = [answer]
        else:
            last_part = {"text": pieces[-1] if pieces else ""}
            if len(pieces) <= 1 and "thoughtSignature" in answer:
                last_part["thoughtSignature"] = answer["thoughtSignature"]
            last_parts = [last_part]
        cand = {"content": {"role": "model", "parts": last_parts}, "finishReason": finish,
                "index": i}
        ev: dict = {"candidates": [cand], **head}
        if i == n - 1:
            ev["usageMetadata"] = usage
        events.append(ev)
    return StreamReply(200, [b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events])


def _embed_text(content: Any) -> str:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        raise BadRequest("* EmbedContentRequest.content: content is not specified")
    return _text(content)


def _dim(value: Any) -> int:
    dim = value or DEFAULT_EMBEDDING_DIM
    if not isinstance(dim, int) or not 1 <= dim <= 3072:
        raise BadRequest("* outputDimensionality: must be between 1 and 3072")
    return dim


def _embed(req: MockRequest, model: str, batch: bool) -> Reply:
    body = _body(req)
    if not batch:
        text = _embed_text(body.get("content"))
        vec = embedding_vector(text, _dim(body.get("outputDimensionality")))
        return Reply(200, orjson.dumps({"embedding": {"values": vec}}))
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise BadRequest("* BatchEmbedContentsRequest.requests: requests is not specified")
    out = []
    for r in requests:
        if r.get("model") != f"models/{model}":
            raise BadRequest(f"* BatchEmbedContentsRequest.model: model must be models/{model}")
        out.append(
            {"values": embedding_vector(_embed_text(r.get("content")),
                                        _dim(r.get("outputDimensionality")))}
        )
    return Reply(200, orjson.dumps({"embeddings": out}))


def _predict(req: MockRequest) -> Reply:
    body = _body(req)
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise BadRequest("instances must be a non-empty list")
    dim = _dim((body.get("parameters") or {}).get("outputDimensionality"))
    preds = []
    for inst in instances:
        text = inst.get("content") if isinstance(inst, dict) else None
        if not isinstance(text, str):
            raise BadRequest("instances[].content must be a string")
        stats = {"token_count": count_tokens(text), "truncated": False}
        preds.append({"embeddings": {"values": embedding_vector(text, dim), "statistics": stats}})
    return Reply(200, orjson.dumps({"predictions": preds}))


def _split_method(tail: str) -> tuple[str, str]:
    model, sep, method = tail.rpartition(":")
    if not sep or not model or "/" in model:
        raise BadRequest(f"Invalid model path {tail!r}", status=404)
    return model, method


def _dispatch(req: MockRequest, ctl: Controls, model: str, method: str, vertex: bool):
    if method == "generateContent":
        return _generate(req, ctl, model, False)
    if method == "streamGenerateContent":
        if "alt=sse" not in req.query:
            raise BadRequest("mock only streams with ?alt=sse")
        return _generate(req, ctl, model, True)
    if vertex and method == "predict":
        return _predict(req)
    if not vertex and method in ("embedContent", "batchEmbedContents"):
        return _embed(req, model, method == "batchEmbedContents")
    return error_reply(404, f"Method {method} not found for models/{model}.")


def gemini_model(req: MockRequest, ctl: Controls) -> Reply | StreamReply:
    # /v1beta/models/... and /v1/models/... (Google serves both; google-genai uses v1)
    model, method = _split_method(req.path.split("/models/", 1)[1])
    return _dispatch(req, ctl, model, method, False)


def vertex_model(req: MockRequest, ctl: Controls) -> Reply | StreamReply:
    # /v1/projects/{p}/locations/{l}/publishers/{pub}/models/{model}:{method}
    segs = req.path.split("/")
    if len(segs) != 10 or segs[4] != "locations" or segs[6] != "publishers" or segs[8] != "models":
        return error_reply(404, f"Invalid Vertex AI resource path {req.path}")
    if not _bearer_ok(req):
        return error_reply(
            401, "Request had invalid authentication credentials. Expected OAuth 2 access token."
        )
    publisher = segs[7]
    model, method = _split_method(segs[9])
    if publisher == "google":
        return _dispatch(req, ctl, model, method, True)
    if publisher == "anthropic" and model == "count-tokens" and method == "rawPredict":
        return _claude_count(req)
    if publisher == "anthropic" and method in ("rawPredict", "streamRawPredict"):
        return _claude(req, ctl, model, method == "streamRawPredict")
    return error_reply(404, f"Publisher model {publisher}/{model}:{method} not found.")


def _claude(req: MockRequest, ctl: Controls, model: str, stream: bool) -> Reply | StreamReply:
    try:
        from . import anthropic_routes
    except ImportError:
        return error_reply(501, "the Anthropic mock is not available")
    body = _body(req)
    if body.get("anthropic_version") != "vertex-2023-10-16":
        raise BadRequest("anthropic_version: must be vertex-2023-10-16")
    if "model" in body:
        raise BadRequest("model: Extra inputs are not permitted (the model is in the URL)")
    if bool(body.get("stream")) != stream:
        raise BadRequest("stream must match rawPredict / streamRawPredict")
    inner = {k: v for k, v in body.items() if k != "anthropic_version"}
    inner["model"] = model
    sub = MockRequest(req.method, req.path, req.query, req.headers, orjson.dumps(inner), inner)
    return anthropic_routes.messages_create(sub, ctl)


def _claude_count(req: MockRequest) -> Reply:
    """Vertex's Claude token counter: the model is named in the body."""
    from . import anthropic_routes

    body = _body(req)
    if not isinstance(body.get("model"), str):
        raise BadRequest("model: Field required")
    inner = {k: v for k, v in body.items() if k != "anthropic_version"}
    return Reply(200, orjson.dumps(anthropic_routes.count_tokens_reply(inner)))


# ------------------------------------------------------------------------------- OAuth


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _token_error(error: str, description: str) -> Reply:
    return Reply(400, orjson.dumps({"error": error, "error_description": description}))


def token(req: MockRequest, ctl: Controls) -> Reply:
    form = parse_qs(req.body.decode("ascii", "replace"))
    if req.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
        return _token_error("invalid_request", "expected a form-encoded body")
    if form.get("grant_type") != [JWT_BEARER]:
        return _token_error("unsupported_grant_type", "Invalid grant_type")
    assertion = (form.get("assertion") or [""])[0]
    segs = assertion.split(".")
    if len(segs) != 3:
        return _token_error("invalid_grant", "Invalid JWT: not three segments")
    try:
        header = orjson.loads(_b64url(segs[0]))
        claims = orjson.loads(_b64url(segs[1]))
        signature = _b64url(segs[2])
    except (binascii.Error, ValueError):
        return _token_error("invalid_grant", "Invalid JWT: bad encoding")
    if header.get("alg") != "RS256" or not signature:
        return _token_error("invalid_grant", "Invalid JWT: alg must be RS256")
    now = time.time()
    iss = claims.get("iss")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iss, str) or "@" not in iss:
        return _token_error("invalid_grant", "Invalid JWT: iss")
    if claims.get("scope") != CLOUD_PLATFORM_SCOPE:
        return _token_error("invalid_scope", "Invalid JWT: scope")
    if not isinstance(claims.get("aud"), str) or not claims["aud"].startswith("http"):
        return _token_error("invalid_grant", "Invalid JWT: aud")
    if not (isinstance(iat, int) and isinstance(exp, int)) or not 0 < exp - iat <= 3600:
        return _token_error("invalid_grant", "Invalid JWT: iat/exp")
    if abs(iat - now) > 300 or exp < now:
        return _token_error("invalid_grant", "Invalid JWT: Token must be a short-lived token")
    pem = _public_keys.get(iss)
    if pem is not None and not _verify(pem, f"{segs[0]}.{segs[1]}".encode(), signature):
        return _token_error("invalid_grant", "Invalid JWT Signature.")
    lifetime = int(req.headers.get("x-mock-token-lifetime", "3600"))
    access = f"ya29.mock-{_new_id()}"
    _issued[access] = now + lifetime
    body = {"access_token": access, "expires_in": lifetime, "token_type": "Bearer"}
    return Reply(200, orjson.dumps(body))


def _verify(pem: bytes, data: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_public_key(pem)
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def register_key(req: MockRequest, ctl: Controls) -> Reply:
    body = _body(req)
    email, pem = body.get("client_email"), body.get("public_key")
    if not isinstance(email, str) or not isinstance(pem, str):
        raise BadRequest("client_email and public_key are required")
    _public_keys[email] = pem.encode()
    return Reply(200, b'{"ok":true}')


ROUTES = {("POST", "/token"): token, ("POST", "/token/keys"): register_key}
PREFIX_ROUTES = [
    ("POST", "/v1beta/models/", gemini_model),
    ("POST", "/v1/models/", gemini_model),
    ("POST", "/v1/projects/", vertex_model),
]
