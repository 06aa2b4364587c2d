"""Fuzz targets: one function per entry point that takes bytes from outside.

Each target takes ``data: bytes`` and must return normally for *any* input:
Helix's own errors (``HelixError``, ``ConfigError``) are the expected way to
refuse garbage; any other exception escaping, or a hang, is a bug.  The same
targets run under atheris (coverage-guided, ``python tests/fuzz/run.py``) and
under Hypothesis in the test suite (``tests/fuzz/test_fuzz.py``, bounded).

Adapters are driven only through their public entry points
(``adapter.chat_response``, ``embeddings_response``, ``error``,
``stream_relay(dep, view).feed/close``) so the targets survive refactors of
the relay internals.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from functools import partial

from helix.client import Timeouts, parse_url
from helix.config import ConfigError
from helix.errors import HelixError
from helix.providers import catalog
from helix.providers.base import Deployment
from helix.schema.jsonsafe import check_json_object, too_deep_upstream, upstream_error
from helix.schema.openai import chat_request_decoder, decode_request

__all__ = ["TARGETS"]

# provider type -> (model id, base URL) for a deployment the adapters accept.
PROVIDERS = {
    "openai": ("gpt-4o-mini", "https://api.openai.com/v1"),
    "azure": ("gpt-4o-mini", "https://x.openai.azure.com/openai"),
    "anthropic": ("claude-3-5-sonnet-20241022", "https://api.anthropic.com/v1"),
    "gemini": ("gemini-2.0-flash", "https://generativelanguage.googleapis.com/v1beta"),
    "vertex": ("gemini-2.0-flash", "https://us-central1-aiplatform.googleapis.com/v1"),
    "bedrock": ("anthropic.claude-3-5-sonnet-20241022-v2:0",
                "https://bedrock-runtime.us-east-1.amazonaws.com"),
    "cohere": ("command-r-plus", "https://api.cohere.com"),
}
_DEPS: dict[str, Deployment] = {}


def deployment(ptype: str) -> Deployment:
    dep = _DEPS.get(ptype)
    if dep is None:
        model, base = PROVIDERS[ptype]
        origin, path = parse_url(base)
        dep = _DEPS[ptype] = Deployment(
            provider=ptype, provider_type=ptype, model=model, model_id=model, origin=origin,
            base_path=path, static_headers=[], timeouts=Timeouts(), verify_tls=True,
            adapter=catalog.spec(ptype).adapter,
        )
    return dep


_VIEWS = {
    stream: decode_request(
        chat_request_decoder,
        b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":%s,'
        b'"stream_options":{"include_usage":true}}' % (b"true" if stream else b"false"),
    )
    for stream in (False, True)
}


def _split(data: bytes) -> list[bytes]:
    """Cut the input where its first byte says, so feeds see arbitrary boundaries."""
    if len(data) < 2:
        return [data]
    step = 1 + data[0] % 16
    body = data[1:]
    return [body[i : i + step] for i in range(0, len(body), step)]


# --- targets ------------------------------------------------------------------------------


def provider_response(ptype: str):
    def target(data: bytes) -> None:
        dep = deployment(ptype)
        adapter = dep.adapter
        try:
            # What forward does first with a 2xx body read whole (resp.check_answer/read).
            check_json_object(data)
            ok = True
        except HelixError:
            ok = False
        calls = [adapter.chat_document, adapter.embeddings_response]
        calls += [partial(adapter.native_response, api) for api in sorted(adapter.native)]
        for call in calls if ok else ():
            try:
                out = call(dep, data)
            except HelixError:
                continue
            assert out is not None
        status = 400 + (data[0] % 200 if data else 0)
        headers = [(b"content-type", b"application/json")]
        errors = [adapter.error]
        errors += [partial(adapter.native_error, a) for a in sorted(adapter.native)]
        for make in errors:
            err = upstream_error(make, dep, status, headers, data)
            assert isinstance(err, HelixError)
            err.to_json()

    target.__name__ = f"response_{ptype}"
    return target


def _sinks():
    from helix.api.chat import OpenAIChunkSink
    from helix.api.messages.response import AnthropicSink

    return [lambda: OpenAIChunkSink(True), lambda: AnthropicSink("m")]


def provider_stream(ptype: str):
    def target(data: bytes) -> None:
        dep = deployment(ptype)
        adapter = dep.adapter
        sinks = _sinks()
        natives = sorted(adapter.native)
        pick = data[0] if data else 0
        # The first byte picks the client dialect: a sink of each, or a native relay.
        n = len(sinks) + len(natives)
        k = pick % n
        if k < len(sinks):
            relay = adapter.stream_relay(dep, _VIEWS[True], sinks[k]())
        else:
            relay = adapter.native_relay(natives[k - len(sinks)], dep, _VIEWS[True])
        try:
            for piece in _split(data):
                out = relay.feed(piece)
                assert isinstance(out, bytes | bytearray)
            out = relay.close()
            assert isinstance(out, bytes | bytearray)
        except RecursionError:  # forward's _relay answers this with too_deep_upstream()
            too_deep_upstream().to_json()
        except HelixError as err:
            err.to_json()

    target.__name__ = f"stream_{ptype}"
    return target


def sse_parser(data: bytes) -> None:
    from helix._fast import SSEParserC, SSEParserPy

    results = []
    for cls in [c for c in (SSEParserPy, SSEParserC) if c is not None]:
        parser = cls()
        events = []
        for piece in _split(data):
            events += parser.feed(piece)
        events += parser.close()
        results.append(events)
    assert all(r == results[0] for r in results), "SSE parser twins disagree"


def eventstream(data: bytes) -> None:
    from helix.providers.eventstream import EventStreamDecoder

    decoder = EventStreamDecoder()
    try:
        for piece in _split(data):
            decoder.feed(piece)
    except HelixError:
        pass


_LOOP: asyncio.AbstractEventLoop | None = None


def server_protocol(data: bytes) -> None:
    """Raw bytes into the HTTP server (head, body, pipelining) through a mock transport."""
    global _LOOP
    from helix.server import ServerLimits
    from tests.protocol.mock import make_conn

    if _LOOP is None:
        import uvloop

        _LOOP = uvloop.new_event_loop()

    async def handler(ex):
        if ex.request.path.endswith("/stream"):
            ex.start_stream(200, [], b"a")
            await ex.send(ex.request.body[:64])
            ex.end_stream()
        else:
            ex.respond(200, [(b"content-type", b"text/plain")], ex.request.body[:64])

    async def run():
        limits = ServerLimits(max_body_bytes=4096, max_buffered_body_bytes=8192,
                              max_header_bytes=2048, max_headers=20)
        proto, transport, server = make_conn(handler, limits, loop=asyncio.get_running_loop())
        for piece in _split(data):
            proto.data_received(piece)
            await asyncio.sleep(0)
        for _ in range(4):
            await asyncio.sleep(0)
        out = transport.data
        assert not out or out.startswith(b"HTTP/1.1 "), out[:40]
        transport.close()
        await asyncio.sleep(0)
        assert server.buffered == 0, server.buffered

    _LOOP.run_until_complete(asyncio.wait_for(run(), 5))


_CONFIG_DIR = tempfile.mkdtemp(prefix="helix-fuzz-")


def config_loader(data: bytes) -> None:
    from helix.config import load_file

    path = os.path.join(_CONFIG_DIR, "helix.yaml")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        load_file(path, {"A": "1"})
    except ConfigError:
        pass


TARGETS = {
    "server_protocol": server_protocol,
    "sse_parser": sse_parser,
    "eventstream": eventstream,
    "config_loader": config_loader,
    **{f"response_{p}": provider_response(p) for p in PROVIDERS},
    **{f"stream_{p}": provider_stream(p) for p in PROVIDERS},
}
