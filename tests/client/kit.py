"""Helpers for the upstream client tests: a tiny scriptable HTTP/1.1 server on
127.0.0.1 and a throw-away CA + server certificates made with ``openssl``."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import subprocess
from collections.abc import Awaitable, Callable

# --------------------------------------------------------------- test server


class Request:
    __slots__ = ("body", "conn_id", "headers", "method", "reader", "target")

    def __init__(self, method, target, headers, body, conn_id):
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.conn_id = conn_id
        self.reader: asyncio.StreamReader | None = None

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


async def read_request(reader: asyncio.StreamReader, conn_id: int) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head[:-4].split(b"\r\n")
    method, target, _version = lines[0].split(b" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    length = 0
    for k, v in headers:
        if k == b"content-length":
            length = int(v)
    body = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, body, conn_id)


def response(body: bytes = b"ok", status: int = 200, headers: list[bytes] | None = None) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers or [])
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), extra, body)


def rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# handler(request, writer, server) -> False to close the connection afterwards
Handler = Callable[[Request, asyncio.StreamWriter, "Upstream"], Awaitable[bool | None]]


async def default_handler(req: Request, writer: asyncio.StreamWriter, srv: Upstream):
    writer.write(response(b"hello " + req.target))


class Upstream:
    def __init__(self, handler: Handler = default_handler, ssl_ctx: ssl.SSLContext | None = None):
        self.handler = handler
        self.ssl_ctx = ssl_ctx
        self.connections = 0
        self.requests: list[Request] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.closed_connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.state: dict = {}

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await asyncio.wait_for(self.server.wait_closed(), 5)

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        conn_id = self.connections
        self.writers.add(writer)
        try:
            while True:
                req = await read_request(reader, conn_id)
                if req is None:
                    break
                req.reader = reader
                self.requests.append(req)
                keep = await self.handler(req, writer, self)
                await writer.drain()
                if keep is False:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError, RuntimeError):
            pass
        finally:
            self.writers.discard(writer)
            self.closed_connections += 1
            writer.transport.abort() if writer.transport.is_closing() else writer.close()


class Certs:
    def __init__(self, ca: str, cert: str, key: str, other_cert: str, other_key: str):
        self.ca = ca
        self.cert = cert
        self.key = key
        self.other_cert = other_cert  # signed by the CA but for another host name
        self.other_key = other_key

    def server_context(self, *, other: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if other:
            ctx.load_cert_chain(self.other_cert, self.other_key)
        else:
            ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def client_factory(self):
        """An ssl_context_factory trusting only the test CA (verify on)."""
        contexts = {}

        def factory(verify: bool) -> ssl.SSLContext:
            if verify not in contexts:
                ctx = ssl.create_default_context(cafile=self.ca)
                if not verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                ctx.set_alpn_protocols(["http/1.1"])
                contexts[verify] = ctx
            return contexts[verify]

        return factory


def openssl_cli(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)
