"""Async test support without pytest-asyncio: each ``async def`` test runs in a
fresh uvloop event loop under a hard timeout."""

from __future__ import annotations

import asyncio
import inspect

import pytest
import uvloop

TEST_TIMEOUT = 10.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def main():
        await asyncio.wait_for(func(**kwargs), TEST_TIMEOUT)

    uvloop.run(main())
    return True


def _protocol_builds():
    from helix import _fast
    from helix.server import protocol

    builds = [pytest.param(protocol, id="pure")]
    if not _fast.NO_EXTENSIONS and _fast.COMPILED["protocol"] is not None:
        builds.append(pytest.param(_fast.pick_module("protocol_c", protocol), id="compiled"))
    return builds


@pytest.fixture(autouse=True, params=_protocol_builds())
def protocol_build(request, monkeypatch):
    """Every test here runs against both builds of the protocol: the pure module and the
    typed one compiled from it (helix/_fast/protocol_c.pxd), when it is built."""
    import helix.server.server
    import tests.protocol.mock
    import tests.protocol.test_protocol_limits

    cls = request.param.HttpProtocol
    for module in (helix.server.server, tests.protocol.mock, tests.protocol.test_protocol_limits):
        monkeypatch.setattr(module, "HttpProtocol", cls)
    return request.param
