"""S3 backend: any S3-compatible endpoint (AWS, MinIO, R2, moto ...), over Helix's own pool.

Requests go through the worker's ``UpstreamPool`` (keep-alive, TLS, DNS
cache) and are signed with SigV4 by :func:`helix.providers.sigv4.sign` --
the signer Bedrock uses -- with ``x-amz-content-sha256`` as S3 requires.
Object keys are ``<prefix><namespace>/<hash>``: only ``[A-Za-z0-9/_.-]``
(the prefix is checked at start-up), so the path is the same whether or not
it is percent-encoded and S3's single-encoding rule and SigV4's generic one
agree.

Addressing: ``path`` puts the bucket in the path (``endpoint/bucket/key``;
what MinIO and most S3-compatible servers want), ``virtual`` in the host
(``bucket.endpoint/key``; AWS's default).  S3 has no per-object TTL: every
answer carries its expiry and an expired one is a miss; a bucket lifecycle
rule should delete old objects.
"""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime
from urllib.parse import quote
from xml.etree import ElementTree

from helix.cache.store import Entry, decode_entry, encode_entry
from helix.client import Origin, Timeouts, parse_url
from helix.providers import sigv4

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(Exception):
    """An S3 status Helix does not expect; the message holds the status and S3's error code."""


def host_header(origin: Origin) -> str:
    host = origin.host
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    if origin.port != _DEFAULT_PORTS.get(origin.scheme):
        host = f"{host}:{origin.port}"
    return host


class S3Location:
    """Where objects live and how to address them; pure (no I/O), so tests can check URLs."""

    def __init__(self, endpoint: str, bucket: str, style: str, prefix: str) -> None:
        origin, base = parse_url(endpoint)
        if style == "virtual":
            self.origin = Origin(origin.scheme, f"{bucket}.{origin.host}", origin.port)
            self.base = base
        else:
            self.origin = origin
            self.base = f"{base}/{bucket}"
        self.host = host_header(self.origin)
        self.prefix = prefix

    def path(self, key: str = "") -> str:
        """The request path (percent-encoded) of object ``prefix + key`` (the bucket for "")."""
        if not key:
            return self.base or "/"
        return f"{self.base}/{quote(self.prefix + key, safe='/-_.~')}"


class S3Backend:
    name = "s3"
    local = False

    def __init__(
        self,
        pool,
        *,
        endpoint: str,
        bucket: str,
        region: str,
        style: str,
        prefix: str,
        credentials: sigv4.Credentials,
        timeout: float,
        verify_tls: bool = True,
    ) -> None:
        self.pool = pool
        self.loc = S3Location(endpoint, bucket, style, prefix)
        self.region = region
        self.credentials = credentials
        self.keys = sigv4.SigningKeyCache()
        self.timeouts = Timeouts(connect=timeout, first_byte=timeout, read=timeout, total=timeout)
        self.verify_tls = verify_tls

    def signed(self, method: str, path: str, query: str, body: bytes, now: datetime):
        headers = sigv4.sign(
            method, self.loc.host, path, query, [], body, self.region, "s3",
            self.credentials, now, content_sha256_header=True, key_cache=self.keys,
        )
        if method == "PUT":
            headers.append((b"content-type", b"application/octet-stream"))
        return headers

    async def _call(self, method: str, path: str, query: str = "", body: bytes = b""):
        headers = self.signed(method, path, query, body, datetime.now(UTC))
        target = f"{path}?{query}" if query else path
        resp = await self.pool.request(
            self.loc.origin, method.encode(), target.encode("ascii"), headers, body,
            self.timeouts, verify_tls=self.verify_tls,
        )
        try:
            data = await resp.read()
        finally:
            resp.close()
        return resp.status, data

    @staticmethod
    def _fail(method: str, status: int, data: bytes) -> S3Error:
        code = ""
        try:
            node = ElementTree.fromstring(data).find("Code")
            code = node.text or "" if node is not None else ""
        except ElementTree.ParseError:
            pass
        return S3Error(f"S3 {method} answered {status} {code}".rstrip())

    async def get(self, key: str) -> Entry | None:
        status, data = await self._call("GET", self.loc.path(key))
        if status == 404:
            return None
        if status != 200:
            raise self._fail("GET", status, data)
        return decode_entry(data)

    async def set(self, key: str, entry: Entry, ttl: float) -> None:
        status, data = await self._call("PUT", self.loc.path(key), body=encode_entry(entry))
        if status not in (200, 201, 204):
            raise self._fail("PUT", status, data)

    async def delete(self, key: str) -> int:
        exists, _ = await self._call("HEAD", self.loc.path(key))
        status, data = await self._call("DELETE", self.loc.path(key))
        if status not in (200, 204, 404):
            raise self._fail("DELETE", status, data)
        return 1 if exists == 200 else 0

    async def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (relative to the configured object prefix)."""
        keys: list[str] = []
        token = None
        full = self.loc.prefix + prefix
        while True:
            params = [("list-type", "2"), ("prefix", full)]
            if token:
                params.append(("continuation-token", token))
            query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params))
            status, data = await self._call("GET", self.loc.path(), query)
            if status != 200:
                raise self._fail("LIST", status, data)
            root = ElementTree.fromstring(data)
            for node in root.iter(f"{_NS}Key"):
                if node.text and node.text.startswith(self.loc.prefix):
                    keys.append(node.text[len(self.loc.prefix) :])
            truncated = root.findtext(f"{_NS}IsTruncated") == "true"
            token = root.findtext(f"{_NS}NextContinuationToken")
            if not truncated or not token:
                return keys

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list_keys(prefix)
        sem = asyncio.Semaphore(16)

        async def one(key: str) -> None:
            async with sem:
                status, data = await self._call("DELETE", self.loc.path(key))
                if status not in (200, 204, 404):
                    raise self._fail("DELETE", status, data)

        await asyncio.gather(*(one(k) for k in keys))
        return len(keys)

    async def close(self) -> None:
        return None  # the pool belongs to the app
