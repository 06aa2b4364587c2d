"""Regenerate the seed corpus: real answers of the mock (which speaks each provider's
wire format) to requests built by Helix's own adapters, plus HTTP requests, SSE
streams, event-stream frames and configs.  ``python tests/fuzz/make_corpus.py``.

atheris adds the inputs it finds interesting to the same folders during long runs."""

from __future__ import annotations

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from helix.mock import server as mock_server
from helix.mock.base import Controls, MockRequest, StreamReply
from helix.providers.eventstream import encode_message
from helix.schema.openai import chat_request_decoder, decode_request
from tests.fuzz.targets import PROVIDERS, deployment

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
ROUTER = mock_server.Router(mock_server.PROVIDERS)


def save(target: str, data: bytes) -> None:
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as fh:
        fh.write(data)


def mock_answer(ptype: str, stream: bool, tools: bool):
    dep = deployment(ptype)
    doc = {"model": "m", "messages": [{"role": "user", "content": "hello there"}],
           "stream": stream, "stream_options": {"include_usage": True} if stream else None}
    if tools:
        doc["tools"] = [{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}}}}}]
    body = json.dumps({k: v for k, v in doc.items() if v is not None}).encode()
    view = decode_request(chat_request_decoder, body)
    up = dep.adapter.chat_request(dep, view, body)
    target = up.target.decode()
    path, _, query = target.partition("?")
    headers = {k.decode().lower(): v.decode() for k, v in up.headers}
    req = MockRequest("POST", path, query, headers, up.body, json.loads(up.body or b"null"))
    found = ROUTER.lookup("POST", path)
    if not found or found is True:
        return None
    _, handler = found
    ctl = Controls(chunks=3)
    if tools:
        headers["x-mock-tool-call"] = "get_weather"
    return handler(req, ctl)


def main() -> None:
    for ptype in PROVIDERS:
        for stream in (False, True):
            for tools in (False, True):
                try:
                    reply = mock_answer(ptype, stream, tools)
                except Exception as exc:  # a provider the mock cannot answer this way
                    print(f"skip {ptype} stream={stream} tools={tools}: {exc}")
                    continue
                if reply is None:
                    continue
                if isinstance(reply, StreamReply):
                    save(f"stream_{ptype}", b"\x07" + b"".join(reply.events))
                    save(f"stream_{ptype}", b"\x00" + b"".join(reply.events))
                    if ptype != "bedrock":
                        save("sse_parser", b"\x03" + b"".join(reply.events))
                    else:
                        save("eventstream", b"\x05" + b"".join(reply.events))
                else:
                    save(f"response_{ptype}", reply.body)
        for mod in mock_server.PROVIDERS:
            if getattr(mod, "NAME", "") and ptype.startswith(mod.NAME[:4]):
                save(f"response_{ptype}", mod.error_reply(429, "slow down").body)
    save("eventstream", b"\x02" + encode_message({":event-type": "chunk", ":message-type": "event"},
                                                 b'{"bytes":"e30="}'))
    for req in (
        b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"
        b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"POST /stream HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        b"GET / HTTP/1.0\r\n\r\n",
    ):
        save("server_protocol", b"\x0f" + req)
    save("config_loader", b"providers:\n  - {name: o, type: openai, api_key: ${A}, "
                          b"models: [gpt-4o]}\nserver: {port: 0}\n")
    save("config_loader", b"rate_limits: {per_user: {requests_per_minute: 5}}\n"
                          b"caching: {backend: memory}\nresilience: {retries: {max_attempts: 2}}\n")


if __name__ == "__main__":
    main()
