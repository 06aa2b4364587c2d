"""The Anthropic stream sink's text-delta template gives the bytes the generic event
builder gives (helix/api/messages/response.py): any text, any block index, and a text block
that follows a thinking block."""

from hypothesis import given, settings
from hypothesis import strategies as st

from helix.api.messages.response import AnthropicSink, event, text_delta_event


def generic(index: int, text: str) -> bytes:
    return event(b"content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "text_delta", "text": text}})


@settings(max_examples=500, deadline=None)
@given(index=st.integers(0, 10_000), text=st.text(max_size=200))
def test_template_is_the_generic_event(index, text):
    assert text_delta_event(index, text) == generic(index, text)


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=6),
       think=st.booleans())
def test_sink_text_deltas(pieces, think):
    sink = AnthropicSink("m")
    sink.start("chatcmpl-1", "m", 1)
    expected = b""
    index = 0
    if think:
        got = sink.delta(0, role=True, reasoning="hmm")
        assert b'"thinking_delta"' in got
        index = 1
    first = sink.delta(0, content=pieces[0])
    start = event(b"content_block_start", {"type": "content_block_start", "index": index,
                                           "content_block": {"type": "text", "text": ""}})
    close = (event(b"content_block_stop", {"type": "content_block_stop", "index": 0})
             if think else b"")
    assert first == close + start + generic(index, pieces[0])
    for piece in pieces[1:]:
        expected += generic(index, piece)
    assert b"".join(sink.delta(0, content=p) for p in pieces[1:]) == expected
    assert sink.delta(0, content="") == b""
    assert sink.delta(1, content="other choice") == b""
