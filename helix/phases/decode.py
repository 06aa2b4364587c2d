"""decode: the client's JSON body -> a view Struct (strict, typed, one pass)."""

from __future__ import annotations

from helix.errors import ErrorKind, HelixError
from helix.pipeline.context import RequestContext
from helix.schema.openai import (
    chat_request_decoder,
    decode_request,
    embeddings_request_decoder,
)

_DECODERS = {"chat": chat_request_decoder, "embeddings": embeddings_request_decoder}


def decode(ctx: RequestContext) -> None:
    view = decode_request(_DECODERS[ctx.endpoint], ctx.exchange.request.body)
    if ctx.endpoint == "chat" and not view.messages:
        raise HelixError(
            ErrorKind.INVALID_REQUEST,
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array",
        )
    ctx.view = view
