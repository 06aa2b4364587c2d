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
