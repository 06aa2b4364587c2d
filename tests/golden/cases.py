"""Golden cases for the chat ingress: upstream bytes in, client bytes out, per provider.

``record()`` runs every case through the adapters' public entry points with the
clock and the random ids pinned, and returns what the client would get: each
``feed`` output of a stream relay, its ``close`` output (or the error it raised
and that error's OpenAI body), the relay's usage, non-stream bodies and error
bodies.  ``golden.json`` holds what the code produced before the ingress seam
was built; ``test_golden.py`` proves the code still produces exactly that.
The inputs are stored in the same file, so the cases never drift with the
provider tests they were taken from.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import secrets
import time

from helix.client import Timeouts, parse_url
from helix.errors import HelixError
from helix.providers import catalog
from helix.providers.base import Deployment

HERE = pathlib.Path(__file__).parent
GOLDEN = HERE / "golden.json"
FIX = HERE.parent / "providers" / "fixtures" / "anthropic"

_B = base64.b64encode


def b64(data: bytes) -> str:
    return _B(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def dep(ptype: str, model_id: str) -> Deployment:
    origin, path = parse_url("https://upstream.example")
    spec = catalog.spec(ptype)
    adapter = spec.adapter_for(model_id) if spec.adapter_for is not None else spec.adapter
    return Deployment(
        provider=ptype, provider_type=ptype, model="pub-" + model_id, model_id=model_id,
        origin=origin, base_path=path, static_headers=[(b"content-type", b"application/json")],
        timeouts=Timeouts(), verify_tls=True, adapter=adapter,
    )


def chat_view(body: dict):
    from helix.schema.openai import chat_request_decoder

    return chat_request_decoder.decode(json.dumps(body).encode())


class Pinned:
    """time.time, os.urandom and secrets.token_hex pinned: reproducible ids and ``created``."""

    def __enter__(self):
        self._saved = time.time, os.urandom, secrets.token_hex
        time.time = lambda: 1700000000.25
        os.urandom = lambda n: bytes(range(n))
        secrets.token_hex = lambda n=32: bytes(range(n)).hex()
        return self

    def __exit__(self, *exc):
        time.time, os.urandom, secrets.token_hex = self._saved


def _usage_plain(usage):
    if usage is None:
        return None
    if isinstance(usage, dict):
        return usage
    to_openai = getattr(usage, "to_openai", None)
    return to_openai() if to_openai is not None else usage


class _Ctx:
    def __init__(self, view) -> None:
        self.view = view


def run_stream(case: dict) -> dict:
    from helix.api import CHAT

    d = dep(case["type"], case["model_id"])
    view = chat_view(case["request"])
    if "chat" in d.adapter.native:  # as forward does: the provider's own bytes
        relay = d.adapter.native_relay("chat", d, view)
        sink = None
    else:
        sink = CHAT.sink(_Ctx(view), d)
        relay = d.adapter.stream_relay(d, view, sink)
    outs = []
    err = None
    try:
        for piece in case["chunks"]:
            outs.append(b64(relay.feed(unb64(piece))))
        outs.append(b64(relay.close()))
    except HelixError as exc:
        err = {"status": exc.status, "body": b64(CHAT.error_body(exc))}
    return {"outputs": outs, "error": err, "usage": _usage_plain(relay.usage),
            "passthrough": bool(getattr(relay, "passthrough", False))}


def run_response(case: dict) -> dict:
    from helix.api import CHAT

    d = dep(case["type"], case["model_id"])
    body = unb64(case["body"])
    try:
        if "chat" not in d.adapter.native:
            body = CHAT.translate_response(d, body)[0]
    except HelixError as exc:
        return {"error": {"status": exc.status, "body": b64(CHAT.error_body(exc))}}
    return {"body": b64(body)}


def run_error(case: dict) -> dict:
    from helix.api import CHAT

    d = dep(case["type"], case["model_id"])
    headers = [(k.encode(), v.encode()) for k, v in case.get("headers", [])]
    err = d.adapter.error(d, case["status"], headers, unb64(case["body"]))
    return {"status": err.status, "body": b64(CHAT.error_body(err)), "retry": int(err.retry),
            "headers": [[k.decode(), v.decode()] for k, v in err.headers]}


RUNNERS = {"stream": run_stream, "response": run_response, "error": run_error}


def record(cases: list[dict]) -> list[dict]:
    out = []
    with Pinned():
        for case in cases:
            out.append({**case, "expect": RUNNERS[case["kind"]](case)})
    return out
