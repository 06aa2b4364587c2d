"""Fixtures for the upstream client tests: an event-loop runner (uvloop and
the stdlib loop), the test server class, a free port and test certificates."""

from __future__ import annotations

import asyncio
import gc
import shutil
import socket
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from tests.client.kit import Certs, Upstream, openssl_cli

LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def _runner(factory):
    """``runner(coro_fn, timeout=10)`` runs ``coro_fn()`` on a fresh loop and
    fails if the loop reported any unhandled error (an exception never
    retrieved, a callback that raised ...)."""

    def runner(fn: Callable[[], Awaitable], timeout: float = 10.0):
        problems = []

        def handler(loop, context):
            if isinstance(context.get("exception"), asyncio.CancelledError):
                return  # a test server's handler task torn down with the loop
            problems.append(context.get("message"))
            loop.default_exception_handler(context)

        async def main():
            asyncio.get_running_loop().set_exception_handler(handler)
            async with asyncio.timeout(timeout):
                result = await fn()
            await asyncio.sleep(0.01)  # let closing transports finish
            gc.collect()
            return result

        with asyncio.Runner(loop_factory=factory) as r:
            result = r.run(main())
        assert not problems, problems
        return result

    return runner


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """Runs a test body on uvloop and on the stdlib loop."""
    return _runner(LOOPS[request.param])


@pytest.fixture
def run_uv():
    """Like ``run`` but uvloop only (for tests that do not need both loops)."""
    return _runner(uvloop.new_event_loop)


@pytest.fixture
def upstream():
    return Upstream


@pytest.fixture
def free_port():
    """A port nothing listens on (bound then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -------------------------------------------------------------------- certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    d = tmp_path_factory.mktemp("certs")
    cwd = str(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl_cli(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=Helix Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=cwd,
    )  # fmt: skip
    for name, san in (("srv", "DNS:localhost,IP:127.0.0.1"), ("other", "DNS:other.example")):
        openssl_cli("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=cwd)  # fmt: skip
        (d / f"{name}.ext").write_text(
            f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        )
        openssl_cli(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
            "-extfile", f"{name}.ext",
            cwd=cwd,
        )  # fmt: skip
    return Certs(
        str(d / "ca.pem"),
        str(d / "srv.pem"),
        str(d / "srv.key"),
        str(d / "other.pem"),
        str(d / "other.key"),
    )


def _client_builds():
    from helix import _fast
    from helix.client import connection, pool

    builds = [pytest.param((pool, connection), id="pure")]
    if not _fast.NO_EXTENSIONS and _fast.COMPILED["conn"] and _fast.COMPILED["pool"]:
        builds.append(pytest.param(
            (_fast.pick_module("pool_c", pool), _fast.pick_module("conn_c", connection)),
            id="compiled"))
    return builds


_POOL_NAMES = ("Origin", "PoolLimits", "Timeouts", "UpstreamPool", "UpstreamResponse",
               "parse_url", "_build_head", "HeaderBlock")
_CONN_NAMES = ("Connection", "open_connection", "connect_error", "DONE")


@pytest.fixture(autouse=True, params=_client_builds())
def client_build(request, monkeypatch):
    """Every test here runs against both builds of the upstream client: the pure modules
    (pool.py and connection.py) and the typed ones compiled from them (helix/_fast/pool_c.pxd
    and conn_c.pxd), when they are built.  The test modules' own imported names and the
    chosen pool's connection names are pointed at the build under test."""
    import tests.client.test_client_answers
    import tests.client.test_client_parsing
    import tests.client.test_client_pool
    import tests.client.test_client_push
    import tests.client.test_client_tls_dns

    pool, conn = request.param
    monkeypatch.setattr(pool, "_connection", conn)
    for name in _CONN_NAMES:
        monkeypatch.setattr(pool, name, getattr(conn, name))
    for module in (tests.client.test_client_answers, tests.client.test_client_parsing,
                   tests.client.test_client_pool, tests.client.test_client_push,
                   tests.client.test_client_tls_dns):
        for name in _POOL_NAMES:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(pool, name))
        for name in _CONN_NAMES:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(conn, name))
        if hasattr(module, "pool_mod"):
            monkeypatch.setattr(module, "pool_mod", pool)
    return request.param
