"""The Responses stream sink's text-delta template gives the bytes its generic event builder
gives (helix/api/responses/response.py): any text, after a reasoning item or not, and the
sequence numbers and the final text stay right."""

from hypothesis import given, settings
from hypothesis import strategies as st

from helix.api.responses.response import ResponsesSink, response_skeleton


def sink() -> ResponsesSink:
    return ResponsesSink(response_skeleton("resp_1", 1.0, "m", {"model": "m", "input": "hi"}))


def generic(s: ResponsesSink, seq: int, text: str) -> bytes:
    ref = sink()
    ref._seq = seq
    return ref._event("response.output_text.delta", {
        "item_id": s._item["id"], "output_index": s._index(), "content_index": 0,
        "delta": text, "logprobs": []})


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=6),
       think=st.booleans())
def test_text_deltas_are_the_generic_events(pieces, think):
    s = sink()
    s.start("resp_1", "m", 1)
    if think:
        s.delta(0, reasoning="hmm")
    first = s.delta(0, content=pieces[0])
    assert first.endswith(generic(s, s._seq - 1, pieces[0]))
    for piece in pieces[1:]:
        seq = s._seq
        assert s.delta(0, content=piece) == generic(s, seq, piece)
        assert s._seq == seq + 1
    s.finish(0, "stop")
    s.end()
    message = s.final["output"][-1]
    assert message["content"][0]["text"] == "".join(pieces)
