"""A request's context made by the compiled factory is the one ``RequestContext(...)`` makes
(helix/_fast/access_c.pyx ContextFactory, twin in access_py.py): every slot the same, fresh
lists, the right references held; a class whose ``__init__`` is not plain stores is simply
called."""

from __future__ import annotations

import gc
import os
import sys

import pytest

from helix._fast import ContextFactoryC, ContextFactoryPy
from helix.pipeline.context import RequestContext

FACTORIES = [ContextFactoryPy] + ([ContextFactoryC] if ContextFactoryC is not None else [])
SLOTS = RequestContext.__slots__


def test_compiled_twin_is_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert ContextFactoryC is not None
        assert ContextFactoryC(RequestContext).compiled  # the request path's context: in C


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__module__)
def test_every_slot_as_init_sets_it(factory):
    new = factory(RequestContext).new
    exchange, api = object(), object()
    made, called = new(exchange, api, 12.5), RequestContext(exchange, api, 12.5)
    assert type(made) is RequestContext
    for name in SLOTS:
        assert getattr(made, name) == getattr(called, name), name
        assert type(getattr(made, name)) is type(getattr(called, name)), name
    assert made.exchange is exchange and made.api is api and made.started == 12.5
    other = new(exchange, api, 1.0)
    assert made.response_headers is not other.response_headers  # a new list each time
    assert made.candidates is not other.candidates
    made.response_headers.append(1)
    assert other.response_headers == [] and new(None, None, 0.0).response_headers == []
    assert gc.is_tracked(made)


@pytest.mark.skipif(ContextFactoryC is None, reason="extensions not built")
def test_references_are_held_and_released():
    new = ContextFactoryC(RequestContext).new
    exchange, api, started = object(), object(), 3.25
    before = sys.getrefcount(exchange), sys.getrefcount(api), sys.getrefcount(started)
    made = [new(exchange, api, started) for _ in range(100)]
    assert sys.getrefcount(exchange) == before[0] + 100
    assert sys.getrefcount(started) == before[2] + 100
    del made
    gc.collect()
    assert (sys.getrefcount(exchange), sys.getrefcount(api), sys.getrefcount(started)) == before


class Computed:
    __slots__ = ("a", "b", "c", "d")

    def __init__(self, a, b, c):
        self.a, self.b, self.c = a, b, c
        self.d = {}  # not a constant nor an empty list: __init__ must run


class Unset:
    __slots__ = ("a", "b", "c", "d")

    def __init__(self, a, b, c):
        self.a, self.b, self.c = a, b, c  # d left unset


class FromArg:
    __slots__ = ("a", "b", "c")

    def __init__(self, a, b, c):
        self.a, self.b = a, b
        self.c = (c, 1)


class WithDict:
    def __init__(self, a, b, c):
        self.a, self.b, self.c = a, b, c


class Plain:
    __slots__ = ("a", "b", "c", "d", "e")

    def __init__(self, a, b, c):
        self.a, self.b, self.c = c, a, b  # any order
        self.d = "x"
        self.e = []


@pytest.mark.skipif(ContextFactoryC is None, reason="extensions not built")
@pytest.mark.parametrize("cls", [Computed, Unset, FromArg, WithDict])
def test_a_class_with_more_than_plain_stores_is_called(cls):
    f = ContextFactoryC(cls)
    assert not f.compiled
    made = f.new(1, 2, 3)
    assert type(made) is cls and made.a == 1 and made.b == 2


@pytest.mark.skipif(ContextFactoryC is None, reason="extensions not built")
def test_arguments_land_where_init_puts_them():
    f = ContextFactoryC(Plain)
    assert f.compiled
    made = f.new(1, 2, 3)
    assert (made.a, made.b, made.c, made.d, made.e) == (3, 1, 2, "x", [])
