"""The typed request-path core: helix/server/protocol.py, helix/server/exchange.py,
helix/client/connection.py and helix/client/pool.py, compiled a second time as
helix._fast.protocol_c, exchange_c, conn_c and pool_c with the C types of their .pxd files.
tests/protocol and tests/client run every test against both builds of the protocol and the
client (their conftest's ``protocol_build`` / ``client_build`` fixtures; .ci/run runs them
once more with HELIX_NO_EXTENSIONS=1); this checks that the right build is picked and that
the compiled one is what its .pxd says."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helix import _fast
from helix.client import connection as connection_py
from helix.server import protocol as protocol_py

CORE = ("protocol", "exchange", "conn", "pool")
BUILT = not _fast.NO_EXTENSIONS and all(_fast.COMPILED[k] for k in CORE)


def test_compiled_core_is_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert _fast.COMPILED["protocol"] is not None
        assert _fast.COMPILED["conn"] is not None
        assert _fast.COMPILED["exchange"] is not None
        assert _fast.COMPILED["pool"] is not None


PURE = ["helix.server.protocol", "helix.client.connection", "helix.client.connection",
        "helix.server.exchange", "helix.server.exchange", "helix.client.pool", "helix.client.pool"]


def test_server_and_pool_use_the_compiled_core_when_it_is_built():
    code = (
        "import helix.server as h, helix.server.server as s, helix.client as c;"
        "import helix.routing.registry as r;"
        "p = __import__(c.UpstreamPool.__module__, fromlist=['x']);"
        "print(s.HttpProtocol.__module__, p.Connection.__module__, p.open_connection.__module__,"
        " h.Exchange.__module__, h.Request.__module__, c.UpstreamPool.__module__,"
        " r.HeaderBlock.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    if BUILT:
        assert out == ["helix._fast.protocol_c", "helix._fast.conn_c", "helix._fast.conn_c",
                       "helix._fast.exchange_c", "helix._fast.exchange_c",
                       "helix._fast.pool_c", "helix._fast.pool_c"]
    else:
        assert out == PURE
    env = dict(os.environ, HELIX_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env=env).stdout.split()
    assert out == PURE


def test_version_names_a_missing_core_module(monkeypatch):
    if _fast.REASON is not None:
        return
    monkeypatch.setitem(_fast.COMPILED, "protocol", None)
    assert _fast.describe().startswith("partial (pure-Python: ")
    assert "protocol" in _fast.describe()
    assert _fast.pick_module("protocol_c", protocol_py) is protocol_py


@pytest.mark.skipif(not BUILT, reason="the typed core is not built")
def test_compiled_classes_keep_the_pure_ones_attributes():
    from helix.server import exchange as exchange_py

    protocol_c = _fast.pick_module("protocol_c", protocol_py)
    conn_c = _fast.pick_module("conn_c", connection_py)
    exchange_c = _fast.pick_module("exchange_c", exchange_py)
    from helix.client import pool as pool_py

    pool_c = _fast.pick_module("pool_c", pool_py)
    for pure, typed in ((protocol_py.HttpProtocol, protocol_c.HttpProtocol),
                        (connection_py.Connection, conn_c.Connection),
                        (exchange_py.Exchange, exchange_c.Exchange),
                        (exchange_py.Request, exchange_c.Request),
                        (pool_py.UpstreamResponse, pool_c.UpstreamResponse),
                        (pool_py._OriginPool, pool_c._OriginPool)):
        assert typed is not pure
        # Every slot of the pure class is a (public) field of the typed one, and nothing
        # else can be set on either: a typo'd attribute fails the same way in both.
        for name in pure.__slots__:
            assert hasattr(typed, name), name
        assert not hasattr(typed, "__dict__") or "__dict__" not in dir(typed)
    conn = conn_c.Connection(None, "x:1")
    with pytest.raises(AttributeError):
        conn.no_such_attribute = 1
    # C-typed fields convert as the .pxd says: flags are bools, counters ints.
    conn.closed = 1
    assert conn.closed is True
    with pytest.raises(TypeError):
        conn.requests = "1"


def test_each_protocol_build_takes_the_exchange_of_its_own_build():
    # The typed exchange holds its connection typed (exchange_c.pxd): a pure protocol's
    # exchanges are the pure ones, a compiled protocol's the typed ones.
    from helix.server import exchange as exchange_py

    assert protocol_py.Exchange is exchange_py.Exchange
    assert protocol_py.Request is exchange_py.Request
    if BUILT:
        protocol_c = _fast.pick_module("protocol_c", protocol_py)
        exchange_c = _fast.pick_module("exchange_c", exchange_py)
        assert protocol_c.Exchange is exchange_c.Exchange
        assert protocol_c.Request is exchange_c.Request


@pytest.mark.skipif(not BUILT, reason="the typed core is not built")
@pytest.mark.parametrize("first", ["helix._fast.exchange_c", "helix.server", "helix.app",
                                   "helix.client", "helix._fast.conn_c"])
def test_the_typed_modules_load_whichever_is_imported_first(first):
    # protocol_c and exchange_c cimport each other (and pool_c cimports conn_c): loading
    # one loads the other, which must find what it reads already bound.
    code = (
        f"import {first}; import helix.server as h, helix.client as c;"
        "print(h.Exchange.__module__, h.server.HttpProtocol.__module__,"
        " c.UpstreamResponse.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["helix._fast.exchange_c", "helix._fast.protocol_c",
                                  "helix._fast.pool_c"]


def test_a_typed_module_whose_cimported_partner_is_not_built_counts_as_not_built():
    # setup.py goes on when one extension fails; pool_c without conn_c, or protocol_c
    # without exchange_c (and the reverse), would fail to import: their pure twins run.
    built = {"protocol": "p.so", "exchange": None, "conn": None, "pool": "pl.so", "sse": "s.so"}
    out = _fast._without_orphans(built, _fast._NEEDS)
    assert out == {"protocol": None, "exchange": None, "conn": None, "pool": None,
                   "sse": "s.so"}
    whole = {"protocol": "p.so", "exchange": "e.so", "conn": "c.so", "pool": "pl.so"}
    assert _fast._without_orphans(whole, _fast._NEEDS) == whole
