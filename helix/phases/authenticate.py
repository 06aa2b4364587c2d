"""authenticate: the gateway key the client presented -> its :class:`GatewayKey`, or a 401.

The key is read the way the client's API sends credentials (``ctx.api.credential``:
``Authorization: Bearer <key>`` for OpenAI clients; ``x-api-key`` or the bearer
for Anthropic clients).  Present in the pipelines only when gateway keys are
configured (with none, Helix is open and says so at start-up).  Runs first,
before the body is decoded; the key goes to ``ctx.principal`` for the limits
and the cache tenant.  :func:`guard` puts the same check in front of a plain
handler (``/v1/models``); ``/health`` stays open.
"""

from __future__ import annotations

from helix.api.base import any_credential
from helix.errors import ErrorKind, HelixError
from helix.limit.keys import KeyTable
from helix.pipeline.context import RequestContext

__all__ = ["guard", "make_authenticate", "unauthorized"]


def unauthorized(token: str | None, how: str = "Authorization: Bearer YOUR_KEY") -> HelixError:
    if not token:
        return HelixError(
            ErrorKind.AUTH,
            "You didn't provide an API key. You need to provide your API key "
            f"({how}).",
        )
    return HelixError(
        ErrorKind.AUTH,
        f"Incorrect API key provided. Use a key issued for this Helix gateway ({how}).",
    )


def make_authenticate(table: KeyTable):
    verify = table.verify_token

    def authenticate(ctx: RequestContext) -> None:
        api = ctx.api
        token = api.credential(ctx.exchange.request.headers)
        key = verify(token)
        if key is None:
            raise unauthorized(token, api.credential_hint)
        ctx.principal = key

    return authenticate


def guard(table: KeyTable, handler, credential=None):
    """``handler`` (an ``async (exchange)``) behind the same key check; ``credential``
    reads the key from the headers (default: the bearer token or ``x-api-key``)."""
    verify = table.verify_token
    read = credential or any_credential

    async def guarded(exchange) -> None:
        token = read(exchange.request.headers)
        if verify(token) is None:
            raise unauthorized(token)
        await handler(exchange)

    guarded.__name__ = getattr(handler, "__name__", "guarded")
    return guarded
