"""``StreamSink.text(choice, text)`` -- the text-only delta a relay sends for most chunks --
gives the bytes ``delta(choice, content=text)`` gives, for every client's sink, inside any
sequence an OpenAI-compatible provider may stream (text after reasoning or a tool call,
another choice, a role, a finish in the same chunk).  The reference run is the same reader
feeding sinks whose ``text`` is the generic ``delta``."""

from __future__ import annotations

import contextlib
import itertools
import json
from types import SimpleNamespace
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import helix.api.responses.response as responses_mod
from helix.api.chat import OpenAIChunkSink
from helix.api.messages.response import AnthropicSink
from helix.api.responses.response import ResponsesSink, response_skeleton
from helix.errors import HelixError
from helix.providers.openai import OpenAIChunkReader

SINKS = (OpenAIChunkSink, AnthropicSink, ResponsesSink)


def _generic(cls):
    class Generic(cls):
        def text(self, choice, text):
            return self.delta(choice, content=text)

    return Generic


def _sinks(cls):
    if issubclass(cls, OpenAIChunkSink):
        return cls(True)
    if issubclass(cls, AnthropicSink):
        return cls("m")
    return cls(response_skeleton("resp_1", 1.0, "m", {"model": "m", "input": "hi"}))


_text = st.text(max_size=12)
_delta = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["assistant", ""]),
    "content": st.one_of(st.none(), _text),
    "reasoning_content": st.one_of(st.none(), _text),
    "tool_calls": st.lists(st.fixed_dictionaries(
        {"index": st.integers(0, 1)},
        optional={"id": st.sampled_from(["call_a", "call_b"]),
                  "function": st.fixed_dictionaries({}, optional={
                      "name": st.sampled_from(["f", "g"]), "arguments": _text})}),
        max_size=1),
})
_choice = st.fixed_dictionaries(
    {"index": st.sampled_from([0, 0, 0, 1]), "delta": _delta},
    optional={"finish_reason": st.sampled_from(["stop", "length", "tool_calls"])})
_chunks = st.lists(st.lists(_choice, max_size=2), min_size=1, max_size=8)


def _stream(choice_lists) -> bytes:
    out = []
    for choices in choice_lists:
        doc = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
               "model": "m", "choices": choices}
        out.append(b"data: " + json.dumps(doc).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def _run(sink, data: bytes):
    reader = OpenAIChunkReader(SimpleNamespace(provider="p", model="m"), sink)
    try:
        return reader.feed(data) + reader.close()
    except HelixError as err:  # a shape the client's format cannot carry: the same error
        return ("error", err.message)


@contextlib.contextmanager
def fixed_ids():
    """Responses item ids numbered from 0 and a fixed clock (``completed_at``), so two runs
    can be compared byte for byte: two runs either side of a second's edge once differed."""
    count = itertools.count()
    clock = SimpleNamespace(time=lambda: 1_767_225_600.0)
    with mock.patch.object(responses_mod, "new_id", lambda prefix: f"{prefix}{next(count)}"), \
            mock.patch.object(responses_mod, "time", clock):
        yield


@pytest.mark.parametrize("cls", [OpenAIChunkSink, AnthropicSink, ResponsesSink])
@settings(max_examples=300, deadline=None)
@given(choice_lists=_chunks)
def test_text_is_the_generic_delta(cls, choice_lists):
    data = _stream(choice_lists)
    with fixed_ids():
        got = _run(_sinks(cls), data)
    with fixed_ids():
        want = _run(_sinks(_generic(cls)), data)
    assert got == want


@pytest.mark.parametrize("cls", [OpenAIChunkSink, AnthropicSink, ResponsesSink])
def test_text_chunks_take_the_text_call(cls):
    """The reader sends a text-only chunk through ``text``, and the client gets the text."""
    calls = []

    class Counting(cls):
        def text(self, choice, text):
            calls.append(text)
            return super().text(choice, text)

    data = _stream([[{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                    [{"index": 0, "delta": {"content": "Hel"}}],
                    [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]])
    out = _run(_sinks(Counting), data)
    assert calls == ["Hel", "lo"]
    assert b'"Hel"' in out and b'"lo"' in out
