"""Google service-account auth: a signed JWT (RS256) exchanged for an OAuth2 access token.

The flow (RFC 7523, Google's "service account" OAuth): the JWT claims
``iss`` (the account's e-mail), ``scope``, ``aud`` (the key's ``token_uri``),
``iat`` and ``exp`` are signed with the account's RSA key, POSTed as
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`` to
the token endpoint, which answers ``{"access_token", "expires_in"}``.

:class:`TokenSource` keeps the token per worker and refreshes it before it
expires.  Refreshes are single-flight: concurrent callers share one request.
Inside the refresh window (the last ~5 minutes of a token's life) callers keep
using the still-valid token while one background refresh runs, so no request
waits on the token endpoint except the very first ones and after a failure.

``cryptography`` is imported only here, and only when a token is first
signed: a gateway without Vertex providers never loads it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import msgspec

from helix.client import Origin, Timeouts, UpstreamPool, parse_url
from helix.errors import ErrorKind, HelixError, Retry, Source

__all__ = [
    "CLOUD_PLATFORM_SCOPE",
    "DEFAULT_TOKEN_URI",
    "JWT_BEARER",
    "ServiceAccount",
    "TokenSource",
    "load_service_account",
    "make_jwt",
    "parse_service_account",
]

log = logging.getLogger("helix.providers.google_auth")

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3600  # seconds asked for in the JWT (Google's maximum)
REFRESH_MARGIN = 300.0  # start refreshing this long before expiry
HARD_MARGIN = 10.0  # below this, a token is not used any more
RETRY_BACKOFF = 10.0  # after a failed background refresh, keep the valid token this long

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    private_key: str  # PEM
    private_key_id: str | None = None
    token_uri: str = DEFAULT_TOKEN_URI
    project_id: str | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"<ServiceAccount {self.client_email}>"


def parse_service_account(text: str | bytes) -> ServiceAccount:
    """A service-account key file's JSON; ValueError naming what is wrong."""
    try:
        doc = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object (a service-account key)")
    kind = doc.get("type")
    if kind is not None and kind != "service_account":
        raise ValueError(f"expected a service-account key, got type {kind!r}")
    missing = [k for k in ("client_email", "private_key") if not isinstance(doc.get(k), str)]
    if missing:
        raise ValueError(f"the service-account key has no {' or '.join(missing)}")
    if "PRIVATE KEY" not in doc["private_key"]:
        raise ValueError("private_key is not a PEM private key")
    return ServiceAccount(
        client_email=doc["client_email"],
        private_key=doc["private_key"],
        private_key_id=doc.get("private_key_id") or None,
        token_uri=doc.get("token_uri") or DEFAULT_TOKEN_URI,
        project_id=doc.get("project_id") or None,
    )


def load_service_account(
    credentials_json: str | None,
    credentials_file: str | None,
    env: dict[str, str] | os._Environ | None = None,
) -> ServiceAccount:
    """From inline JSON, else a file, else ``GOOGLE_APPLICATION_CREDENTIALS``."""
    if credentials_json:
        return parse_service_account(credentials_json)
    path = credentials_file
    if not path:
        path = (os.environ if env is None else env).get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        raise ValueError(
            "no service-account credentials: set credentials_file or credentials_json, "
            "or the GOOGLE_APPLICATION_CREDENTIALS environment variable"
        )
    try:
        with open(path, "rb") as fh:
            text = fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read credentials file {path}: {exc.strerror}") from None
    try:
        return parse_service_account(text)
    except ValueError as exc:
        raise ValueError(f"credentials file {path}: {exc}") from None


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def load_private_key(pem: str):
    """The RSA key object (cryptography); ValueError if it is not one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the service-account private key is not an RSA key")
    return key


def make_jwt(
    sa: ServiceAccount,
    now: float,
    *,
    scope: str = CLOUD_PLATFORM_SCOPE,
    audience: str | None = None,
    lifetime: int = TOKEN_LIFETIME,
    key=None,
) -> str:
    """The signed assertion (``header.claims.signature``, RS256)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = {"alg": "RS256", "typ": "JWT"}
    if sa.private_key_id:
        header["kid"] = sa.private_key_id
    iat = int(now)
    claims = {
        "iss": sa.client_email,
        "scope": scope,
        "aud": audience or sa.token_uri,
        "iat": iat,
        "exp": iat + lifetime,
    }
    signing_input = _b64url(_encode(header)) + b"." + _b64url(_encode(claims))
    if key is None:
        key = load_private_key(sa.private_key)
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return (signing_input + b"." + _b64url(signature)).decode("ascii")


class _TokenReply(msgspec.Struct):
    access_token: str | None = None
    expires_in: float | None = None
    token_type: str | None = None
    error: str | None = None
    error_description: str | None = None


_reply_decoder = msgspec.json.Decoder(_TokenReply)
_TOKEN_TIMEOUTS = Timeouts(connect=10.0, first_byte=30.0, read=30.0, total=60.0)


def _auth_error(message: str, status: int = 502, retry: Retry = Retry.YES) -> HelixError:
    return HelixError(
        ErrorKind.UPSTREAM_STATUS,
        message,
        status=status,
        type="upstream_error",
        code="upstream_auth_error",
        source=Source.UPSTREAM,
        retry=retry,
    )


def _consume(task: asyncio.Task) -> None:
    # A background refresh nobody awaited must not log "exception never retrieved".
    if not task.cancelled():
        task.exception()


class TokenSource:
    """OAuth2 access tokens for one service account, cached and refreshed early.

    ``pool`` is the HTTP client used for the token endpoint: the worker's pool
    when given (:meth:`bind`), else a small pool of its own, created on first
    use (so it belongs to the worker's event loop, after fork).
    """

    def __init__(
        self,
        sa: ServiceAccount,
        *,
        token_url: str | None = None,
        scope: str = CLOUD_PLATFORM_SCOPE,
        pool: UpstreamPool | None = None,
        clock: Callable[[], float] = time.time,
        verify_tls: bool = True,
        label: str = "vertex",
    ) -> None:
        self.sa = sa
        self.token_url = token_url or sa.token_uri
        self.origin: Origin
        self.origin, path = parse_url(self.token_url)
        self.target = (path or "/").encode()
        self.scope = scope
        self.clock = clock
        self.verify_tls = verify_tls
        self.label = label
        self._pool = pool
        self._key = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._refresh_at = 0.0
        self._retry_at = 0.0
        self._inflight: asyncio.Task | None = None
        self.fetches = 0  # token endpoint round trips (for tests and stats)

    def bind(self, pool: UpstreamPool) -> None:
        """Use this (the worker's) pool for the token endpoint."""
        self._pool = pool

    def invalidate(self) -> None:
        """Forget the cached token (e.g. after the provider answered 401)."""
        self._token = None
        self._expires_at = self._refresh_at = 0.0

    async def token(self) -> str:
        now = self.clock()
        token = self._token
        if token is not None and now < self._refresh_at:
            return token
        valid = token is not None and now < self._expires_at - HARD_MARGIN
        task = self._inflight
        if task is None or task.done():
            if valid and now < self._retry_at:
                return token  # a background refresh failed a moment ago: not again yet
            task = self._inflight = asyncio.get_running_loop().create_task(self._refresh())
            task.add_done_callback(_consume)
        if valid:
            return token  # still valid: the refresh runs in the background
        return await asyncio.shield(task)

    async def _refresh(self) -> str:
        try:
            token, lifetime = await self._fetch()
        except HelixError as err:
            self._retry_at = self.clock() + RETRY_BACKOFF
            if self._token is not None:
                log.warning("%s: token refresh failed: %s", self.label, err.message)
            raise
        except Exception as exc:  # a bad key, an unexpected answer: a clear 5xx, not a crash
            self._retry_at = self.clock() + RETRY_BACKOFF
            raise _auth_error(
                f"{self.label}: could not get a Google access token: {exc}", 500, Retry.NO
            ) from exc
        finally:
            self._inflight = None
        now = self.clock()
        self._token = token
        self._expires_at = now + lifetime
        self._refresh_at = now + max(lifetime - REFRESH_MARGIN, lifetime / 2)
        return token

    async def _fetch(self) -> tuple[str, float]:
        if self._key is None:
            self._key = load_private_key(self.sa.private_key)
        assertion = make_jwt(self.sa, self.clock(), scope=self.scope, key=self._key)
        body = f"grant_type={quote(JWT_BEARER, safe='')}&assertion={assertion}".encode()
        headers = [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"accept", b"application/json"),
            (b"accept-encoding", b"identity"),
            (b"user-agent", b"helix-gateway"),
        ]
        if self._pool is None:
            self._pool = UpstreamPool()
        self.fetches += 1
        resp = await self._pool.request(
            self.origin, b"POST", self.target, headers, body, _TOKEN_TIMEOUTS,
            verify_tls=self.verify_tls,
        )
        try:
            data = await resp.read()
        finally:
            resp.close()
        try:
            reply = _reply_decoder.decode(data)
        except msgspec.DecodeError:
            reply = None
        if resp.status != 200 or reply is None or not reply.access_token:
            if reply is not None and reply.error:
                why = reply.error
                if reply.error_description:
                    why += f": {reply.error_description}"
            else:
                why = data[:200].decode("utf-8", "replace").strip() or "(empty body)"
            retry = Retry.YES if resp.status in (429,) or resp.status >= 500 else Retry.NO
            raise _auth_error(
                f"{self.label}: the Google token endpoint refused the service account "
                f"(HTTP {resp.status}): {why}",
                retry=retry,
            )
        lifetime = float(reply.expires_in) if reply.expires_in else float(TOKEN_LIFETIME)
        return reply.access_token, lifetime
