"""Build golden.json once, from the code as it is (``python -m tests.golden.build``).

Run it only to record a new baseline on purpose: the point of golden.json is
that refactors of the stream relays and response builders leave these bytes
exactly as they were.
"""

from __future__ import annotations

import json

from helix.providers.eventstream import encode_message
from tests.golden.cases import FIX, GOLDEN, b64, record


def _split(data: bytes, step: int | None) -> list[str]:
    if step is None:
        return [b64(data)]
    return [b64(data[i : i + step]) for i in range(0, len(data), step)]


def _sse(obj, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


def frame(event, payload):
    return encode_message(
        {":event-type": event, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode(),
    )


def streams() -> list[tuple[str, str, bytes]]:
    out = []
    for name in ("text", "thinking", "tool_use", "error"):
        out.append(("anthropic", "claude-sonnet-4-0", (FIX / f"{name}.sse").read_bytes()))
        out.append(("vertex", "claude-sonnet-4@20250514", (FIX / f"{name}.sse").read_bytes()))
    gem = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
         "modelVersion": "gemini-2.5-flash", "responseId": "r1"},
        {"candidates": [{"content": {"role": "model", "parts": [
            {"text": "hmm", "thought": True}, {"text": "lo é"}]}, "index": 0}],
         "responseId": "r1"},
        {"candidates": [{"content": {"role": "model", "parts": [
            {"text": " there"},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "lookup", "args": {"q": [1, 2]}}},
        ]}, "finishReason": "STOP", "index": 0}],
         "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7,
                           "thoughtsTokenCount": 2, "cachedContentTokenCount": 1,
                           "totalTokenCount": 14},
         "responseId": "r1"},
    ]
    gem_bytes = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in gem)
    out.append(("gemini", "gemini-2.5-flash", gem_bytes))
    out.append(("vertex", "gemini-2.5-flash", gem_bytes))
    multi = [
        {"candidates": [{"content": {"parts": [{"text": "a"}]}, "index": 0},
                        {"content": {"parts": [{"text": "b"}]}, "index": 1}]},
        {"candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "MAX_TOKENS",
                         "index": 1}],
         "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3}},
    ]
    out.append(("gemini", "gemini-2.5-pro",
                 b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in multi)))
    blocked = {"promptFeedback": {"blockReason": "SAFETY"},
               "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}
    out.append(("gemini", "gemini-2.5-pro", b"data: " + json.dumps(blocked).encode() + b"\n\n"))
    out.append(("gemini", "gemini-2.5-pro",
                b'data: [{"error": {"code": 429, "message": "quota", "status": '
                b'"RESOURCE_EXHAUSTED"}}]\n\n'))
    bed = b"".join([
        frame("messageStart", {"role": "assistant"}),
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me "}}),
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "check."}}),
        frame("contentBlockStop", {"contentBlockIndex": 0}),
        frame("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
            "toolUseId": "tu1", "name": "get_weather"}}}),
        frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {
            "input": '{"x":'}}}),
        frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {
            "input": "1}"}}}),
        frame("contentBlockStop", {"contentBlockIndex": 1}),
        frame("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {
            "toolUseId": "tu2", "name": "noop"}}}),
        frame("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {
            "input": "{}"}}}),
        frame("messageStop", {"stopReason": "tool_use"}),
        frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7,
                                     "cacheReadInputTokens": 2},
                           "metrics": {"latencyMs": 5}}),
    ])
    out.append(("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", bed))
    bed_text = b"".join([
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        frame("messageStop", {"stopReason": "max_tokens"}),
        frame("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}}),
    ])
    out.append(("bedrock", "meta.llama3-70b-instruct-v1:0", bed_text))
    exc = encode_message(
        {":exception-type": "throttlingException", ":content-type": "application/json",
         ":message-type": "exception"}, b'{"message":"slow down"}')
    out.append(("bedrock", "meta.llama3-70b-instruct-v1:0",
                frame("messageStart", {"role": "assistant"}) + exc))
    coh = b"".join([
        _sse({"id": "m1", "type": "message-start", "delta": {"message": {"role": "assistant"}}},
             "message-start"),
        _sse({"type": "content-start", "index": 0,
              "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
        _sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {
            "text": "Hel"}}}}),
        _sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {
            "text": "lo"}}}}),
        _sse({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
            "id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}}}}),
        _sse({"type": "tool-call-delta", "index": 0,
              "delta": {"message": {"tool_calls": {"function": {"arguments": '{"a":'}}}}}),
        _sse({"type": "tool-call-delta", "index": 0,
              "delta": {"message": {"tool_calls": {"function": {"arguments": "1}"}}}}}),
        _sse({"type": "tool-call-start", "index": 1, "delta": {"message": {"tool_calls": {
            "id": "t2", "type": "function", "function": {"name": "g", "arguments": "{}"}}}}}),
        _sse({"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
            "tokens": {"input_tokens": 4, "output_tokens": 6}}}}),
    ])
    out.append(("cohere", "command-a-03-2025", coh))
    oai = b"".join([
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n',
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n',
        b"data: [DONE]\n\n",
    ])
    out.append(("openai", "gpt-4o-mini", oai))
    out.append(("groq", "llama-3.3-70b-versatile", oai))
    return out


def responses() -> list[tuple[str, str, bytes]]:
    msgs = [(FIX / f"{n}.json").read_bytes() for n in ("message_text", "message_tool_use")]
    out = []
    for m in msgs:
        out.append(("anthropic", "claude-sonnet-4-0", m))
        out.append(("vertex", "claude-sonnet-4@20250514", m))
    out.append(("anthropic", "claude-sonnet-4-0", b'{"content": []}'))
    gem = {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": True}, {"text": "Hello "}, {"text": "world"},
            {"functionCall": {"name": "f", "args": {"a": 1}}}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4,
                          "thoughtsTokenCount": 3, "cachedContentTokenCount": 6,
                          "totalTokenCount": 17},
        "modelVersion": "gemini-2.5-flash-001", "responseId": "resp123",
    }
    out.append(("gemini", "gemini-2.5-flash", json.dumps(gem).encode()))
    out.append(("vertex", "gemini-2.5-flash", json.dumps(gem).encode()))
    out.append(("gemini", "gemini-2.5-flash", json.dumps(
        {"promptFeedback": {"blockReason": "SAFETY"},
         "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}).encode()))
    conv = {"output": {"message": {"role": "assistant", "content": [
        {"text": "Let me "}, {"text": "check"},
        {"toolUse": {"toolUseId": "tu1", "name": "f", "input": {"x": 1}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7,
                  "cacheReadInputTokens": 1, "cacheWriteInputTokens": 2},
        "metrics": {"latencyMs": 5}}
    out.append(("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", json.dumps(conv).encode()))
    out.append(("bedrock", "meta.llama3", b'{"output": 1}'))
    coh = {"id": "c1", "finish_reason": "TOOL_CALL", "message": {
        "role": "assistant", "content": [{"type": "text", "text": "Hi"}],
        "tool_calls": [{"id": "t1", "type": "function",
                        "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
        "usage": {"billed_units": {"input_tokens": 2, "output_tokens": 3},
                  "tokens": {"input_tokens": 5, "output_tokens": 3}}}
    out.append(("cohere", "command-a-03-2025", json.dumps(coh).encode()))
    out.append(("openai", "gpt-4o-mini", b'{"id":"x","object":"chat.completion","choices":[],'
                                        b'"usage":{"prompt_tokens":1}}'))
    return out


def errors() -> list[tuple[str, str, int, bytes, list]]:
    anth = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    return [
        ("anthropic", "claude-sonnet-4-0", 529, anth, [["retry-after", "3"],
                                                     ["anthropic-ratelimit-requests-reset", "x"]]),
        ("anthropic", "claude-sonnet-4-0", 400, b'{"type":"error","error":{"type":'
         b'"invalid_request_error","message":"max_tokens: too big"}}', []),
        ("anthropic", "claude-sonnet-4-0", 502, b"<html>bad gateway</html>", []),
        ("vertex", "claude-sonnet-4@20250514", 429, anth, []),
        ("vertex", "gemini-2.5-flash", 403, b'{"error":{"code":403,"message":"denied",'
         b'"status":"PERMISSION_DENIED"}}', []),
        ("gemini", "gemini-2.5-flash", 400, b'[{"error":{"code":400,"message":"bad",'
         b'"status":"INVALID_ARGUMENT"}}]', [["retry-after", "1"]]),
        ("bedrock", "meta.llama3", 429, b'{"message":"Too many requests"}',
         [["x-amzn-errortype", "ThrottlingException:http://internal"]]),
        ("bedrock", "meta.llama3", 400, b'{"Message":"bad input"}',
         [["x-amzn-errortype", "ValidationException:"]]),
        ("cohere", "command-a-03-2025", 401, b'{"message":"invalid api token"}', []),
        ("openai", "gpt-4o-mini", 400, b'{"error":{"message":"bad","type":"invalid_request_error",'
         b'"param":"messages","code":null}}', [["x-ratelimit-remaining-requests", "9"]]),
        ("groq", "llama", 503, b'{"detail":"down"}', []),
        ("openai", "gpt-4o-mini", 500, b"", []),
    ]


def cases() -> list[dict]:
    out = []
    for ptype, model_id, raw in streams():
        for include in (True, False):
            req = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            if include:
                req["stream_options"] = {"include_usage": True}
            for step in (None, 7) if include else (None,):
                out.append({"kind": "stream", "type": ptype, "model_id": model_id,
                            "request": req, "chunks": _split(raw, step)})
    for ptype, model_id, body in responses():
        out.append({"kind": "response", "type": ptype, "model_id": model_id, "body": b64(body)})
    for ptype, model_id, status, body, headers in errors():
        out.append({"kind": "error", "type": ptype, "model_id": model_id, "status": status,
                    "body": b64(body), "headers": headers})
    return out


if __name__ == "__main__":
    recorded = record(cases())
    GOLDEN.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"{len(recorded)} cases -> {GOLDEN}")
