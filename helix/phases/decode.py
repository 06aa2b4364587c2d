"""decode: the client's JSON body -> its API's view Struct (strict, typed, one pass)."""

from __future__ import annotations

from helix.pipeline.context import RequestContext


def decode(ctx: RequestContext) -> None:
    ctx.view = ctx.api.decode(ctx.exchange.request.body)
