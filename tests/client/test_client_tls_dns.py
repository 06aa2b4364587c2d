"""TLS against a local server with a throw-away CA, the shared client
contexts, and the caching resolver."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from helix.client import Origin, Timeouts, UpstreamPool
from helix.client.resolver import Resolver, literal_address
from helix.client.tls import client_context
from helix.errors import ErrorKind, HelixError
from tests.client.kit import Upstream


async def get(pool, o, **kw):
    resp = await pool.request(o, b"GET", b"/tls", [(b"authorization", b"sk-x")], b"", **kw)
    return resp, await resp.read()


# ---------------------------------------------------------------------- TLS


def test_tls_verified_with_custom_ca(run, certs):
    async def go():
        async with Upstream(ssl_ctx=certs.server_context()) as srv:
            pool = UpstreamPool(ssl_context_factory=certs.client_factory())
            for host in ("127.0.0.1", "localhost"):
                for _ in range(3):
                    resp, body = await get(pool, Origin("https", host, srv.port))
                    assert resp.status == 200 and body == b"hello /tls"
            assert srv.connections == 2  # one per origin, reused
            assert srv.requests[-1].header(b"host") == b"localhost:%d" % srv.port
            await pool.close()

    run(go)


def test_tls_verification_failure_is_tls_kind(run, certs):
    async def go():
        async with Upstream(ssl_ctx=certs.server_context()) as srv:
            pool = UpstreamPool()  # default context: certifi + system CAs, not ours
            with pytest.raises(HelixError) as ei:
                await get(pool, Origin("https", "127.0.0.1", srv.port))
            err = ei.value
            assert err.kind is ErrorKind.TLS
            assert f"127.0.0.1:{srv.port}" in err.message and "sk-x" not in err.message
            assert pool.stats()[f"https://127.0.0.1:{srv.port}"]["active"] == 0
            await pool.close()

    run(go)


def test_tls_hostname_mismatch_is_tls_kind(run, certs):
    async def go():
        async with Upstream(ssl_ctx=certs.server_context(other=True)) as srv:
            pool = UpstreamPool(ssl_context_factory=certs.client_factory())
            with pytest.raises(HelixError) as ei:
                await get(pool, Origin("https", "localhost", srv.port))
            assert ei.value.kind is ErrorKind.TLS
            await pool.close()

    run(go)


def test_tls_verify_off_accepts_untrusted_cert(run, certs):
    async def go():
        async with Upstream(ssl_ctx=certs.server_context(other=True)) as srv:
            pool = UpstreamPool()  # the real default factory, verify=False variant
            o = Origin("https", "localhost", srv.port)
            _, body = await get(pool, o, verify_tls=False)
            assert body == b"hello /tls"
            # A verify=True request must not reuse the unverified socket.
            with pytest.raises(HelixError) as ei:
                await get(pool, o)
            assert ei.value.kind is ErrorKind.TLS
            stats = pool.stats()
            assert stats[f"https://localhost:{srv.port} (insecure)"]["idle"] == 1
            assert stats[f"https://localhost:{srv.port}"]["active"] == 0
            await pool.close()

    run(go)


def test_plain_http_server_behind_https_origin_is_tls(run):
    async def plain(reader, writer):
        await reader.read(100)  # the ClientHello
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    async def go():
        server = await asyncio.start_server(plain, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            pool = UpstreamPool()
            with pytest.raises(HelixError) as ei:
                await get(pool, Origin("https", "127.0.0.1", port), timeouts=Timeouts(connect=2))
            assert ei.value.kind is ErrorKind.TLS
            await pool.close()
        finally:
            server.close()

    run(go)


def test_client_context_cached_and_configured():
    strict = client_context(True)
    assert client_context(True) is strict
    loose = client_context(False)
    assert loose is client_context(False) and loose is not strict
    assert strict.verify_mode is ssl.CERT_REQUIRED and strict.check_hostname
    assert loose.verify_mode is ssl.CERT_NONE and not loose.check_hostname
    assert strict.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert strict.cert_store_stats()["x509_ca"] > 10  # certifi bundle loaded


# ----------------------------------------------------------------- resolver


class FakeLoop:
    """Wraps the running loop; getaddrinfo is scripted and counted."""

    def __init__(self, answers):
        self.real = asyncio.get_running_loop()
        self.answers = answers
        self.calls = 0
        self.now = 0.0
        self.gate = asyncio.Event()
        self.gate.set()

    def time(self):
        return self.now

    def create_task(self, coro):
        return self.real.create_task(coro)

    async def getaddrinfo(self, host, port, **kw):
        self.calls += 1
        await self.gate.wait()
        answer = self.answers[host]
        if isinstance(answer, BaseException):
            raise answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answer]


def test_resolver_caches_with_ttl(run_uv):
    async def go():
        loop = FakeLoop({"api.test": ["10.0.0.1", "10.0.0.2", "10.0.0.1"]})
        r = Resolver(ttl=60, loop=loop)
        addrs = await r.resolve("api.test", 443)
        assert addrs == [
            (socket.AF_INET, ("10.0.0.1", 443)),
            (socket.AF_INET, ("10.0.0.2", 443)),
        ]
        assert await r.resolve("api.test", 443) == addrs
        assert loop.calls == 1
        loop.now = 61
        await r.resolve("api.test", 443)
        assert loop.calls == 2

    run_uv(go)


def test_resolver_shares_inflight_lookup(run_uv):
    async def go():
        loop = FakeLoop({"api.test": ["10.0.0.1"]})
        loop.gate.clear()
        r = Resolver(loop=loop)
        tasks = [asyncio.create_task(r.resolve("api.test", 80)) for _ in range(10)]
        await asyncio.sleep(0.01)
        tasks[0].cancel()  # one impatient caller must not break the others
        loop.gate.set()
        results = await asyncio.gather(*tasks[1:])
        assert loop.calls == 1
        assert all(res == [(socket.AF_INET, ("10.0.0.1", 80))] for res in results)

    run_uv(go)


def test_resolver_failure_cached_briefly(run_uv):
    async def go():
        loop = FakeLoop({"nx.test": socket.gaierror(-2, "Name or service not known")})
        r = Resolver(negative_ttl=1.0, loop=loop)
        for _ in range(2):
            with pytest.raises(HelixError) as ei:
                await r.resolve("nx.test", 443)
            assert ei.value.kind is ErrorKind.CONNECT_REFUSED
            assert "nx.test:443" in ei.value.message
        assert loop.calls == 1
        loop.now = 1.5
        loop.answers["nx.test"] = ["10.1.1.1"]
        assert await r.resolve("nx.test", 443) == [(socket.AF_INET, ("10.1.1.1", 443))]

    run_uv(go)


def test_resolver_ip_literals_skip_dns():
    assert literal_address("127.0.0.1", 80) == [(socket.AF_INET, ("127.0.0.1", 80))]
    assert literal_address("::1", 8080) == [(socket.AF_INET6, ("::1", 8080, 0, 0))]
    assert literal_address("[2001:db8::1]", 1) == [(socket.AF_INET6, ("2001:db8::1", 1, 0, 0))]
    assert literal_address("api.openai.com", 443) is None
    assert literal_address("1.example", 443) is None


def test_resolver_real_localhost(run_uv):
    async def go():
        r = Resolver()
        addrs = await r.resolve("localhost", 80)
        assert addrs and all(fam in (socket.AF_INET, socket.AF_INET6) for fam, _ in addrs)
        assert await r.resolve("127.0.0.1", 80) == [(socket.AF_INET, ("127.0.0.1", 80))]

    run_uv(go)


def test_pool_ipv6_loopback(run_uv):
    async def go():
        async def handler(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nv6")
            await writer.drain()
            writer.close()

        try:
            server = await asyncio.start_server(handler, "::1", 0)
        except OSError:
            pytest.skip("no IPv6 loopback")
        port = server.sockets[0].getsockname()[1]
        try:
            pool = UpstreamPool()
            resp = await pool.request(Origin("http", "::1", port), b"GET", b"/", [], b"")
            assert await resp.read() == b"v6"
            await pool.close()
        finally:
            server.close()

    run_uv(go)
