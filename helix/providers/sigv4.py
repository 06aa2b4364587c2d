"""AWS Signature Version 4, computed with hashlib/hmac only.

Pure functions: the caller passes the clock (``now``) and the credentials, so
every signature is reproducible in tests.  Used by the Bedrock provider and,
later, the S3 cache.  Non-S3 rules: the canonical URI is the request path
(already percent-encoded on the wire) encoded once more, with dot segments and
empty segments removed.

``sign`` returns the request headers with ``host``, ``x-amz-date``,
``x-amz-security-token`` (session credentials), optionally
``x-amz-content-sha256``, and ``authorization`` set.  Every header passed in is
signed except the hop-by-hop ones and ``user-agent`` (the set AWS SDKs leave
out), so nothing a proxy may rewrite breaks the signature.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import quote, unquote

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "Credentials",
    "SigningKeyCache",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "parse_authorization",
    "sign",
    "signature",
    "signing_key",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# Headers never signed (hop-by-hop, or rewritten by proxies and SDKs).
UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
        "content-length",  # framed by the HTTP client after signing
    }
)
# Headers sign() sets itself (any value passed in is replaced).
_OWN_HEADERS = frozenset(
    {"authorization", "host", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
)


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None = None


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    for seg in path.split("/"):
        if not seg or seg == ".":
            continue
        if seg == "..":
            if out:
                out.pop()
        else:
            out.append(seg)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def canonical_uri(path: str) -> str:
    """The path as sent, normalized and percent-encoded again (non-S3 services)."""
    if not path:
        return "/"
    return quote(_remove_dot_segments(path), safe="/~")


def canonical_query(query: str) -> str:
    """``a=1&b=x y`` -> sorted, each key and value percent-encoded (RFC 3986 unreserved kept)."""
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def _canonical_headers(headers: list[tuple[str, str]]) -> tuple[str, str]:
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    names = sorted(grouped)
    block = "".join(f"{n}:{','.join(grouped[n])}\n" for n in names)
    return block, ";".join(names)


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    payload_hash: str,
) -> tuple[str, str]:
    """(canonical request, signed header names) for headers that are all to be signed."""
    block, signed = _canonical_headers(headers)
    text = "\n".join(
        (method.upper(), canonical_uri(path), canonical_query(query), block, signed, payload_hash)
    )
    return text, signed


def signing_key(secret_key: str, datestamp: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (datestamp, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


class SigningKeyCache:
    """The derived key changes once a day: keep the last one (four HMACs saved per request)."""

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[tuple[str, str, str, str], bytes] | None = None

    def get(self, secret_key: str, datestamp: str, region: str, service: str) -> bytes:
        ident = (secret_key, datestamp, region, service)
        entry = self._entry
        if entry is not None and entry[0] == ident:
            return entry[1]
        key = signing_key(secret_key, datestamp, region, service)
        self._entry = (ident, key)
        return key


def signature(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    payload_hash: str,
    amz_date: str,
    region: str,
    service: str,
    secret_key: str | None = None,
    *,
    key: bytes | None = None,
) -> tuple[str, str]:
    """(signed header names, hex signature) over exactly ``headers``."""
    creq, signed = canonical_request(method, path, query, headers, payload_hash)
    datestamp = amz_date[:8]
    scope = f"{datestamp}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        (ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest())
    )
    if key is None:
        key = signing_key(secret_key or "", datestamp, region, service)
    sig = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return signed, sig


def sign(
    method: str | bytes,
    url_host: str,
    path: str,
    query: str,
    headers: list[tuple[bytes | str, bytes | str]],
    body: bytes,
    region: str,
    service: str,
    credentials: Credentials,
    now: datetime,
    *,
    content_sha256_header: bool = False,
    key_cache: SigningKeyCache | None = None,
) -> list[tuple[bytes, bytes]]:
    """The headers to send: ``headers`` plus host, x-amz-* and authorization.

    ``url_host`` is the Host header value (``host`` or ``host:port`` for a
    non-default port); ``path`` is percent-encoded as it goes on the wire;
    ``query`` is the raw query string without ``?``.
    """
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    out: list[tuple[bytes, bytes]] = []
    to_sign: list[tuple[str, str]] = []
    for name, value in headers:
        lname = _text(name).lower()
        if lname in _OWN_HEADERS:
            continue
        bname = name if isinstance(name, bytes) else name.encode("latin-1")
        bvalue = value if isinstance(value, bytes) else value.encode("latin-1")
        out.append((bname, bvalue))
        if lname not in UNSIGNED_HEADERS:
            to_sign.append((lname, _text(value)))
    own = [("host", url_host), ("x-amz-date", amz_date)]
    if credentials.token:
        own.append(("x-amz-security-token", credentials.token))
    if content_sha256_header:
        own.append(("x-amz-content-sha256", payload_hash))
    to_sign.extend(own)
    key = None
    if key_cache is not None:
        key = key_cache.get(credentials.secret_key, amz_date[:8], region, service)
    signed, sig = signature(
        _text(method), path, query, to_sign, payload_hash, amz_date, region, service,
        credentials.secret_key, key=key,
    )
    auth = (
        f"{ALGORITHM} Credential={credentials.access_key}/{amz_date[:8]}/{region}/{service}/"
        f"aws4_request, SignedHeaders={signed}, Signature={sig}"
    )
    for name, value in own:
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    out.append((b"authorization", auth.encode("latin-1")))
    return out


class Authorization(NamedTuple):
    access_key: str
    datestamp: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> Authorization | None:
    """Split an ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` value."""
    algo, _, rest = value.strip().partition(" ")
    if algo != ALGORITHM:
        return None
    fields = {}
    for part in rest.split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    try:
        akid, datestamp, region, service, term = fields["Credential"].split("/")
        names = fields["SignedHeaders"].split(";")
        sig = fields["Signature"]
    except (KeyError, ValueError):
        return None
    if term != "aws4_request":
        return None
    return Authorization(akid, datestamp, region, service, names, sig)
