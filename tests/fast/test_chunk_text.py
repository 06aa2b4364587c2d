"""``chunk_text`` (helix/_fast/scan_c.pyx) reads the text of a text-only OpenAI stream chunk
without decoding it.  It may decline anything (None: the reader decodes the chunk as
before), but a text it returns must be what the Struct decoder would have made of the same
bytes: one choice, index 0, that content, no role, tool calls, reasoning, finish, usage or
error.  Checked on generated chunks in many spellings, on their corruptions, and on real
providers' chunk shapes (which it must not decline)."""

from __future__ import annotations

import json
from unittest import mock

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix._fast import chunk_text
from helix.providers import openai as openai_mod
from tests.unit.test_sink_text import SINKS, _chunks, _run, _sinks, _stream, fixed_ids

pytestmark = pytest.mark.skipif(chunk_text is None, reason="helix._fast.scan_c is not built")

_decode = openai_mod._chunk_decoder.decode


def agrees(payload: bytes) -> str | None:
    """chunk_text's answer, checked against the Struct decoder's reading."""
    text = chunk_text(payload)
    if text is None:
        return None
    chunk = _decode(payload)  # must not raise: the bytes were a valid chunk
    assert chunk.error is None and chunk.usage is None
    assert len(chunk.choices) == 1
    c = chunk.choices[0]
    assert c.index == 0 and not c.finish_reason and c.delta is not None
    d = c.delta
    assert d.content == text and text
    assert d.role is None and d.tool_calls is None
    assert not d.reasoning_content and not d.reasoning
    return text


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
_json = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)
_text = st.text(min_size=0, max_size=20)
_delta = st.fixed_dictionaries(
    {"content": st.one_of(_text, st.none(), st.integers())},
    optional={"role": st.sampled_from([None, "assistant"]),
              "refusal": st.sampled_from([None, "no"]),
              "reasoning_content": st.sampled_from([None, "", "hmm"]),
              "tool_calls": st.sampled_from([None, [{"index": 0, "id": "c"}]]),
              "audio": _json})
_choice = st.fixed_dictionaries(
    {"delta": _delta},
    optional={"index": st.sampled_from([0, 0, 1, -0.0, 0.0]),
              "logprobs": st.sampled_from([None, {"content": []}]),
              "finish_reason": st.sampled_from([None, None, "stop"]),
              "content_filter_results": _json})
_chunk = st.fixed_dictionaries(
    {"choices": st.lists(_choice, min_size=0, max_size=2)},
    optional={"id": st.text(max_size=10), "object": st.just("chat.completion.chunk"),
              "created": st.integers(0, 2**40), "model": st.text(max_size=10),
              "system_fingerprint": st.one_of(st.none(), st.text(max_size=6)),
              "usage": st.sampled_from([None, {"total_tokens": 3}]),
              "error": st.sampled_from([None, {"message": "x"}]),
              "x_groq": _json})


def spell(doc, indent, ascii_only, compact) -> bytes:
    seps = (",", ":") if compact else (", ", ": ")
    return json.dumps(doc, indent=indent, ensure_ascii=ascii_only, separators=seps).encode()


@settings(max_examples=1500, deadline=None)
@given(_chunk, st.sampled_from([None, 0, 2]), st.booleans(), st.booleans())
def test_a_text_returned_is_the_decoders(doc, indent, ascii_only, compact):
    payload = spell(doc, indent, ascii_only, compact)
    got = agrees(payload)
    choices = doc["choices"]
    plain = (len(choices) == 1 and set(choices[0]) == {"delta"}
             and set(choices[0]["delta"]) == {"content"}
             and isinstance(choices[0]["delta"]["content"], str)
             and choices[0]["delta"]["content"]
             and doc.get("usage") is None and doc.get("error") is None)
    if plain:  # the usual chunk, however it is spelled: never declined
        assert got == choices[0]["delta"]["content"]


@settings(max_examples=1500, deadline=None)
@given(_chunk, st.booleans(), st.data())
def test_corrupted_chunks_never_give_a_wrong_text(doc, ascii_only, data):
    payload = bytearray(spell(doc, None, ascii_only, True))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(0, len(payload) - 1)))
        if op == "flip" and payload:
            payload[at] = data.draw(st.sampled_from(b'{}[]",:\\ 0u\x00\x1f\x80\xff}'))
        elif op == "cut":
            del payload[at:]
        elif op == "insert":
            payload[at:at] = data.draw(st.sampled_from([b",", b'"', b"}", b"\\", b" ", b"\xc3"]))
        elif payload:
            del payload[at]
    try:
        agrees(bytes(payload))
    except msgspec.DecodeError:  # pragma: no cover - the assertion's message
        pytest.fail(f"chunk_text read a chunk the decoder rejects: {bytes(payload)!r}")


@pytest.mark.parametrize("payload,text", [
    # OpenAI
    (b'{"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1733000000,'
     b'"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":'
     b'"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,'
     b'"finish_reason":null}],"usage":null}', " world"),
    # vLLM / DeepSeek: reasoning_content null beside the text
    (b'{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":'
     b'[{"index":0,"delta":{"content":"Hi","reasoning_content":null},"logprobs":null,'
     b'"finish_reason":null}]}', "Hi"),
    # Groq: an x_groq object
    (b'{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":'
     b'"fp","choices":[{"index":0,"delta":{"content":"ok"},"logprobs":null,"finish_reason":null}],'
     b'"x_groq":{"id":"req_1"}}', "ok"),
    # escapes and non-ASCII
    (b'{"choices":[{"index":0,"delta":{"content":'
     b'"line\\nnext \\u00e9 \\ud83d\\ude00 \xe2\x82\xac"}}]}',
     "line\nnext \u00e9 \U0001f600 \u20ac"),
    # Mistral: spaces after separators
    (b'{"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": '
     b'[{"index": 0, "delta": {"content": "Bonjour"}, "finish_reason": null}]}', "Bonjour"),
])
def test_providers_usual_chunks_are_read(payload, text):
    assert agrees(payload) == text


@pytest.mark.parametrize("payload", [
    b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
    b'{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}',
    b'{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}',
    b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}',
    b'{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}',
    b'{"error":{"message":"overloaded"}}',
    b'{"choices":[{"index":0,"delta":{"content":"a"}}],"choices":[]}',
    b'{"choices":[{"index":0,"delta":{"cont\\u0065nt":"a"}}]}',
    b'{"choices":[{"index":0,"delta":{"content":"a"}}]} x',
    b'{"choices":[{"index":00,"delta":{"content":"a"}}]}',
    b'{"choices":[{"index":0,"delta":{"content":"a\x01"}}]}',
    b'{"choices":[{"index":0,"delta":{"content":"\xff"}}]}',
    # a UTF-16 surrogate outside a pair, even in a value only skipped: the decoder rejects it
    b'{"id":"\\udc00","choices":[{"index":0,"delta":{"content":"a"}}]}',
    b'{"id":"\\ud800x","choices":[{"index":0,"delta":{"content":"a"}}]}',
    b'{"choices":[{"index":0,"delta":{"content":"\\ud83d"}}]}',
    b"[]",
    b"",
])
def test_anything_else_is_declined(payload):
    assert chunk_text(payload) is None


_SPECIAL = [bytes([b]) for b in range(32)] + [b'"', b"\\", b"\\n", b'\\"', b"\\u00e9",
                                              b"\\ud83d\\ude00", b"\\ud83d", b"\\x"]


@pytest.mark.parametrize("where", ["id", "content"])
def test_every_special_byte_at_every_offset_of_a_string(where):
    """The string scanner skips plain bytes eight at a time: a quote, a backslash (each
    escape, valid or not) or any control byte must stop it wherever it sits in a word,
    and the answer must still be the decoder's (a control byte: declined)."""
    for special in _SPECIAL:
        for k in range(0, 24):
            for tail in (b"", b"abcdefghij"):
                s = b"x" * k + special + tail
                ident, content = (s, b"hi") if where == "id" else (b"chatcmpl-1", s)
                payload = (b'{"id":"' + ident + b'","choices":[{"index":0,"delta":{"content":"'
                           + content + b'"}}]}')
                try:
                    chunk = _decode(payload)
                except msgspec.DecodeError:
                    assert chunk_text(payload) is None, payload
                    continue
                got = agrees(payload)
                assert got is not None or b'"' in special, payload  # a bare quote ends it
                if got is not None:
                    assert got == chunk.choices[0].delta.content


def test_deep_nesting_is_declined_not_a_crash():
    rest = b',"choices":[{"delta":{"content":"a"}}]}'
    assert chunk_text(b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + rest) is None
    ok = b'{"x":' + b"[" * 60 + b"]" * 60 + rest
    assert chunk_text(ok) == "a"


@settings(max_examples=300, deadline=None)
@given(choice_lists=st.data())
def test_the_reader_gives_the_same_bytes_with_and_without_it(choice_lists):
    """Through OpenAIChunkReader into each client's sink: the shortcut changes no byte."""
    data = _stream(choice_lists.draw(_chunks))
    for cls in SINKS:
        with fixed_ids():
            fast = _run(_sinks(cls), data)
        with fixed_ids(), mock.patch.object(openai_mod, "chunk_text", None):
            slow = _run(_sinks(cls), data)
        assert fast == slow, cls


# -- event_text: the same for Anthropic's text_delta events (chat and Responses clients of Claude)

from helix._fast import event_text  # noqa: E402
from helix.providers.anthropic.stream import AnthropicStreamRelay  # noqa: E402
from helix.schema.anthropic import event_decoder  # noqa: E402


def event_agrees(payload: bytes) -> str | None:
    text = event_text(payload)
    if text is None:
        return None
    ev = event_decoder.decode(payload)  # must not raise
    assert ev.type == "content_block_delta" and ev.delta is not None
    assert ev.delta.type == "text_delta" and ev.delta.text == text and text
    return text


_event = st.fixed_dictionaries(
    {"type": st.sampled_from(["content_block_delta", "content_block_delta", "ping"]),
     "delta": st.fixed_dictionaries(
         {"type": st.sampled_from(["text_delta", "text_delta", "input_json_delta"]),
          "text": st.one_of(_text, st.none(), st.integers())},
         optional={"partial_json": st.text(max_size=5), "x": _json})},
    optional={"index": st.one_of(st.integers(-5, 10**12), st.none(), st.floats(0, 2)),
              "usage": _json})


@settings(max_examples=1500, deadline=None)
@given(_event, st.sampled_from([None, 1]), st.booleans(), st.booleans(), st.data())
def test_event_text_is_the_decoders(doc, indent, ascii_only, compact, data):
    payload = bytearray(spell(doc, indent, ascii_only, compact))
    plain = (doc["type"] == "content_block_delta" and set(doc) == {"type", "delta", "index"}
             and type(doc["index"]) is int and set(doc["delta"]) == {"type", "text"}
             and doc["delta"]["type"] == "text_delta" and isinstance(doc["delta"]["text"], str)
             and doc["delta"]["text"])
    got = event_agrees(bytes(payload))
    if plain:
        assert got == doc["delta"]["text"]
    for _ in range(data.draw(st.integers(0, 3))):  # and its corruptions
        at = data.draw(st.integers(0, max(0, len(payload) - 1)))
        if data.draw(st.booleans()) and payload:
            payload[at] = data.draw(st.sampled_from(b'{}[]",:\\ 0-u\x00\x80}'))
        else:
            del payload[at:at + data.draw(st.integers(0, 3))]
        event_agrees(bytes(payload))


def test_anthropic_usual_event_is_read():
    payload = (b'{"type":"content_block_delta","index":0,'
               b'"delta":{"type":"text_delta","text":"Hello \\u00e9\\n"}}')
    assert event_agrees(payload) == "Hello \u00e9\n"
    for declined in (
        b'{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"a"}}',
        b'{"type":"content_block_delta","index":01,"delta":{"type":"text_delta","text":"a"}}',
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}',
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"},"x":1}',
        b'{"type":"content_block_delta","type":"ping","index":0,"delta":{"type":"text_delta"}}',
    ):
        assert event_text(declined) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=10), min_size=1, max_size=6), st.booleans())
def test_the_anthropic_relay_gives_the_same_bytes_with_and_without_it(texts, ascii_only):
    def ev(name, doc):
        return (f"event: {name}\ndata: " + json.dumps(doc, ensure_ascii=ascii_only)
                + "\n\n").encode()

    stream = b"".join([
        ev("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [], "stop_reason": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}}),
        *(ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": t}}) for t in texts),
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                             "usage": {"output_tokens": 5}}),
        ev("message_stop", {"type": "message_stop"}),
    ])
    import helix.providers.anthropic.stream as stream_mod

    def run(cls):
        relay = AnthropicStreamRelay("claude", 1, _sinks(cls))
        return relay.feed(stream) + relay.close()

    for cls in SINKS:
        with fixed_ids():
            fast = run(cls)
        with fixed_ids(), mock.patch.object(stream_mod, "event_text", None):
            slow = run(cls)
        assert fast == slow, cls
