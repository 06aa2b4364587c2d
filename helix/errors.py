"""The one error type Helix raises, and how it is shown to a client.

Every failure inside Helix is a :class:`HelixError`. It says *what* went wrong
(:class:`ErrorKind`), *whose fault* it is (:class:`Source`) and *whether another
attempt may help* (:class:`Retry`) -- Pingora's error model carried into Python.
Foreign exceptions (``OSError``, ``ssl.SSLError``, ``msgspec.ValidationError``,
``httptools.HttpParserError``) are converted at the I/O boundary; phases never
see them.

:meth:`HelixError.to_json` renders OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}``; each client API
(``helix/api``) renders the errors it answers in its own dialect through its
``error_body``, OpenAI's clients through this one.
"""

from __future__ import annotations

import enum

import msgspec

from helix.secrets import scrub

__all__ = ["ErrorKind", "HelixError", "Retry", "Source", "error_body", "release"]


class Source(enum.IntEnum):
    CLIENT = 1
    UPSTREAM = 2
    INTERNAL = 3


class Retry(enum.IntEnum):
    NO = 0
    YES = 1
    # Retry only if the failure happened on a reused pooled connection
    # (the peer closed an idle keep-alive socket before we wrote).
    REUSED_ONLY = 2


class ErrorKind(enum.Enum):
    """Each kind carries its default status, OpenAI error ``type`` and ``code``."""

    INVALID_REQUEST = (400, "invalid_request_error", None)
    MALFORMED_HTTP = (400, "invalid_request_error", "malformed_request")
    AUTH = (401, "authentication_error", "invalid_api_key")
    PERMISSION = (403, "permission_error", None)
    NOT_FOUND = (404, "invalid_request_error", "not_found")
    MODEL_NOT_FOUND = (404, "invalid_request_error", "model_not_found")
    METHOD_NOT_ALLOWED = (405, "invalid_request_error", "method_not_allowed")
    REQUEST_TIMEOUT = (408, "invalid_request_error", "request_timeout")
    PAYLOAD_TOO_LARGE = (413, "invalid_request_error", "request_too_large")
    HEADERS_TOO_LARGE = (431, "invalid_request_error", "headers_too_large")
    RATE_LIMITED = (429, "rate_limit_error", "rate_limit_exceeded")
    BUDGET = (429, "insufficient_quota", "budget_exceeded")
    INTERNAL = (500, "server_error", "internal_error")
    NOT_IMPLEMENTED = (501, "invalid_request_error", "not_implemented")
    CONNECT_REFUSED = (502, "upstream_error", "upstream_connect_error")
    TLS = (502, "upstream_error", "upstream_tls_error")
    UPSTREAM_PROTOCOL = (502, "upstream_error", "upstream_protocol_error")
    UPSTREAM_STATUS = (502, "upstream_error", None)  # status usually the provider's own
    NO_DEPLOYMENT = (503, "service_unavailable", "no_deployment_available")
    UNAVAILABLE = (503, "service_unavailable", "unavailable")
    CONNECT_TIMEOUT = (504, "timeout_error", "upstream_connect_timeout")
    READ_TIMEOUT = (504, "timeout_error", "upstream_timeout")
    POOL_TIMEOUT = (504, "timeout_error", "upstream_pool_timeout")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def type(self) -> str:
        return self.value[1]

    @property
    def code(self) -> str | None:
        return self.value[2]


_DEFAULT_SOURCE = {
    ErrorKind.INTERNAL: Source.INTERNAL,
    ErrorKind.NO_DEPLOYMENT: Source.INTERNAL,
    ErrorKind.UNAVAILABLE: Source.INTERNAL,
    ErrorKind.NOT_IMPLEMENTED: Source.INTERNAL,
}
_UPSTREAM_KINDS = frozenset(
    {
        ErrorKind.CONNECT_REFUSED,
        ErrorKind.TLS,
        ErrorKind.UPSTREAM_PROTOCOL,
        ErrorKind.UPSTREAM_STATUS,
        ErrorKind.CONNECT_TIMEOUT,
        ErrorKind.READ_TIMEOUT,
        ErrorKind.POOL_TIMEOUT,
    }
)
# Failures where nothing reached the provider, or where the provider said
# "try again": another attempt (possibly elsewhere) may succeed.
_DEFAULT_RETRY = {
    ErrorKind.CONNECT_REFUSED: Retry.YES,
    ErrorKind.CONNECT_TIMEOUT: Retry.YES,
    ErrorKind.TLS: Retry.YES,
    ErrorKind.POOL_TIMEOUT: Retry.YES,
    ErrorKind.READ_TIMEOUT: Retry.YES,
    ErrorKind.UPSTREAM_PROTOCOL: Retry.YES,
}


class _ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | int | None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorDetail


_encode = msgspec.json.Encoder().encode


class HelixError(Exception):
    """A failure with enough structure to decide retries and render a reply.

    ``status`` defaults to the kind's status; provider errors keep the
    provider's own status.  ``native`` is ``(format, body)``: the provider's
    own error body in a client format (``"anthropic"``), which a client
    speaking that format gets verbatim.  ``headers`` are extra response headers
    (``Retry-After`` ...).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        code: str | int | None = None,
        type: str | None = None,
        source: Source | None = None,
        retry: Retry | None = None,
        native: tuple[str, bytes] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        cause: BaseException | None = None,
    ) -> None:
        # A provider's message or body may echo its key: configured secrets never
        # enter an error, whatever renders it later (helix/secrets.py).
        message = scrub(message)
        if native is not None:
            native = (native[0], scrub(native[1]))
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status if status is not None else kind.status
        self.param = param
        self.code = code if code is not None else kind.code
        self.type = type if type is not None else kind.type
        if source is None:
            if kind in _UPSTREAM_KINDS:
                source = Source.UPSTREAM
            else:
                source = _DEFAULT_SOURCE.get(kind, Source.CLIENT)
        self.source = source
        self.retry = retry if retry is not None else _DEFAULT_RETRY.get(kind, Retry.NO)
        self.native = native
        self.headers = headers or []
        if cause is not None:
            self.__cause__ = cause

    @classmethod
    def upstream(
        cls,
        status: int,
        message: str,
        *,
        type: str = "upstream_error",
        code: str | int | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        retry: Retry | None = None,
    ) -> HelixError:
        """A provider answered ``status``: its message passed on, in OpenAI's shape.

        429 is RATE_LIMITED; 408, 409, 429 and 5xx are worth another attempt,
        other 4xx are the client's fault -- unless the provider's adapter knows
        better and passes ``retry``.
        """
        if retry is None:
            retry = Retry.YES if status in (408, 409, 429) or status >= 500 else Retry.NO
        return cls(
            ErrorKind.RATE_LIMITED if status == 429 else ErrorKind.UPSTREAM_STATUS,
            message,
            status=status,
            param=param,
            code=code,
            type=type,
            source=Source.UPSTREAM,
            retry=retry,
            headers=headers,
        )

    def __repr__(self) -> str:
        return (
            f"HelixError({self.kind.name}, {self.message!r}, status={self.status}, "
            f"retry={self.retry.name})"
        )

    def to_json(self) -> bytes:
        """The OpenAI-shaped body for this error."""
        return error_body(self.message, self.type, self.param, self.code)


def release(err: BaseException | None) -> BaseException | None:
    """Drop the tracebacks of ``err`` and of every exception chained to it; return ``err``.

    A traceback holds the frames the exception went through, and their locals
    hold the request's context, exchange and body.  An error kept beyond its
    ``except`` block (``ctx.error``, the last failed attempt) therefore makes a
    reference cycle -- context -> error -> traceback -> frame -> context --
    that only the cycle collector frees, so every failed request's body stayed
    in memory until a full collection (issue 14.3).  Helix never prints the
    traceback of a HelixError, so once caught it is dropped.
    """
    stack = [err]
    seen = 0
    while stack and seen < 32:
        e = stack.pop()
        if e is None:
            continue
        seen += 1
        e.__traceback__ = None
        stack.append(e.__cause__)
        stack.append(e.__context__)
    return err


def error_body(
    message: str, type: str, param: str | None = None, code: str | int | None = None
) -> bytes:
    return _encode(_ErrorEnvelope(_ErrorDetail(message, type, param, code)))
