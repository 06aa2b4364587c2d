"""authenticate: ``Authorization: Bearer <helix key>`` -> the gateway key, or a 401.

Present in the pipelines only when gateway keys are configured (with none,
Helix is open and says so at start-up).  Runs first, before the body is
decoded.  When limits are on, the key is handed to ``admit`` through
``principals`` (keyed by the request's context; the settle recorder removes
the entry whatever happens).  :func:`guard` puts the same check in front of a
plain handler (``/v1/models``); ``/health`` stays open.
"""

from __future__ import annotations

from helix.errors import ErrorKind, HelixError
from helix.limit.keys import KeyTable
from helix.pipeline.context import RequestContext

__all__ = ["guard", "make_authenticate", "unauthorized"]


def unauthorized(authorization: str | None) -> HelixError:
    if not authorization:
        return HelixError(
            ErrorKind.AUTH,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    return HelixError(
        ErrorKind.AUTH,
        "Incorrect API key provided. Use a key issued for this Helix gateway "
        "(Authorization: Bearer YOUR_KEY).",
    )


def make_authenticate(table: KeyTable, principals: dict | None = None):
    verify = table.verify

    def authenticate(ctx: RequestContext) -> None:
        authorization = ctx.exchange.request.headers.get("authorization")
        key = verify(authorization)
        if key is None:
            raise unauthorized(authorization)
        if principals is not None:
            principals[id(ctx)] = key

    return authenticate


def guard(table: KeyTable, handler):
    """``handler`` (an ``async (exchange)``) behind the same key check."""
    verify = table.verify

    async def guarded(exchange) -> None:
        authorization = exchange.request.headers.get("authorization")
        if verify(authorization) is None:
            raise unauthorized(authorization)
        await handler(exchange)

    guarded.__name__ = getattr(handler, "__name__", "guarded")
    return guarded
