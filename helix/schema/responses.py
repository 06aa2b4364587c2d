"""The Responses API (``POST /v1/responses``): the view of a request Helix needs."""

from __future__ import annotations

import msgspec

__all__ = ["ResponsesRequestView", "responses_request_decoder"]


class ResponsesRequestView(msgspec.Struct):
    model: str
    input: msgspec.Raw = msgspec.Raw(b"")
    instructions: msgspec.Raw = msgspec.Raw(b"")
    tools: list[msgspec.Raw] | None = None
    stream: bool | None = None
    max_output_tokens: int | None = None
    previous_response_id: str | None = None
    store: bool | None = None

    def tokens(self) -> tuple[int, int | None]:
        """(prompt, most completion) tokens: ~4 bytes a prompt token (earlier turns of a
        stored conversation are not seen here), ``max_output_tokens``."""
        size = len(self.input) + len(self.instructions)
        if self.tools:
            size += sum(len(t) for t in self.tools)
        return size // 4, self.max_output_tokens


responses_request_decoder = msgspec.json.Decoder(ResponsesRequestView)
