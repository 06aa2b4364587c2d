"""Compiled code reads the request's slots by offset (helix/_fast/slots.pxd): the same
values and errors as ``getattr``, for a real RequestContext and slotted request, deployment
and usage objects, for objects of other types in between, for an unset slot, for a type
changed after it was read, and for types whose attributes are not plain slots."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
from hypothesis import given, settings

from helix._fast import (
    text_line_c,
    text_line_py,
    timing_value_c,
    timing_value_py,
    usage_cost_c,
    usage_cost_py,
)
from helix.pipeline.context import RequestContext
from helix.routing.models import ModelInfo
from helix.schema.usage import Usage

from .test_access_parity import contexts as access_contexts
from .test_access_parity import outcome
from .test_hist_parity import RECORDERS, record
from .test_hist_parity import ctxs as hist_contexts
from .test_price_parity import COUNT, INFO
from .test_price_parity import outcome as price_outcome
from .test_timing_parity import contexts as timing_contexts

pytestmark = pytest.mark.skipif(timing_value_c is None, reason="extensions not built")

HEAD = " INFO    [42] helix.access: "


def slotted(name, ns):
    """An object of a fresh ``__slots__`` class with ``ns``'s attributes."""
    cls = type(name, (), {"__slots__": tuple(vars(ns))})
    obj = cls()
    for k, v in vars(ns).items():
        setattr(obj, k, v)
    return obj


def real_ctx(ns):
    ctx = RequestContext(None, None, 0.0)
    for k, v in vars(ns).items():
        setattr(ctx, k, v)
    return ctx


def access_ctx(ns):
    ctx = real_ctx(ns)
    req = ns.exchange.request
    ctx.exchange = NS(request=slotted("Request", req))
    if ns.deployment is not None:
        ctx.deployment = slotted("Deployment", ns.deployment)
    if ns.usage is not None:
        ctx.usage = slotted("Usage", ns.usage)
    return ctx


@settings(max_examples=300, deadline=None)
@given(ns=timing_contexts())
def test_timing_value_reads_a_real_context_as_getattr_does(ns):
    # Each example also alternates the type the reader last saw (NS, then RequestContext).
    for ctx in (ns, real_ctx(ns)):
        assert outcome(timing_value_c, ctx, 5.0) == outcome(timing_value_py, ctx, 5.0)


@settings(max_examples=300, deadline=None)
@given(ns=access_contexts())
def test_access_line_reads_slotted_objects_as_getattr_does(ns):
    for ctx in (ns, access_ctx(ns)):
        assert outcome(text_line_c, "t", HEAD, ctx, 7.0) == \
            outcome(text_line_py, "t", HEAD, ctx, 7.0)


def timing_ctx():
    ctx = RequestContext(None, None, 1.0)
    ctx.waited = 0.25
    ctx.upstream_started = 1.1
    ctx.head_at = 1.2
    ctx.first_chunk_at = 1.3
    return ctx


def test_an_unset_slot_is_the_same_attribute_error():
    ctx = timing_ctx()
    del ctx.waited
    with pytest.raises(AttributeError) as c_err:
        timing_value_c(ctx, 2.0)
    with pytest.raises(AttributeError) as py_err:
        timing_value_py(ctx, 2.0)
    assert str(c_err.value) == str(py_err.value)


def test_a_type_changed_after_it_was_read_is_read_again():
    cls = type("Ctx", (), {"__slots__": ("queued", "started", "waited", "upstream_started",
                                         "head_at", "first_chunk_at")})
    ctx = cls()
    ctx.queued, ctx.started, ctx.waited = 0.0, 1.0, 0.0
    ctx.upstream_started = ctx.head_at = ctx.first_chunk_at = 0.0
    assert timing_value_c(ctx, 2.0) == b"helix;dur=1000.000"
    cls.waited = 0.5  # the class attribute replaces the slot's descriptor
    assert timing_value_py(ctx, 2.0) == b"helix;dur=500.000"
    assert timing_value_c(ctx, 2.0) == b"helix;dur=500.000"


def test_attributes_that_are_not_plain_slots_go_through_getattr():
    class Prop(RequestContext):
        __slots__ = ()

        @property
        def waited(self):
            return 0.5

        @waited.setter
        def waited(self, value):
            pass

    class Custom(RequestContext):
        __slots__ = ()

        def __getattribute__(self, name):
            return 0.25 if name == "waited" else object.__getattribute__(self, name)

    for cls, dur in ((Prop, b"500.000"), (Custom, b"750.000")):
        ctx = cls(None, None, 1.0)
        assert timing_value_c(ctx, 2.0) == timing_value_py(ctx, 2.0)
        assert timing_value_c(ctx, 2.0).startswith(b"helix;dur=" + dur)
    assert timing_value_c(timing_ctx(), 2.0) == \
        b"helix;dur=750.000, upstream;dur=100.000, ttft;dur=200.000"


def test_the_line_of_a_real_request():
    ns = NS(exchange=NS(request=NS(client=("127.0.0.1", 1), method="POST", path="/v1/x")),
            started=100.0, first_chunk_at=0.0, usage=NS(input=1, output=4), cost=None,
            deployment=NS(model_id="m", provider="p"), status=200, cache=None, attempts=1,
            request_id="r")
    line = text_line_c("t", HEAD, access_ctx(ns), 100.5)
    assert line == text_line_py("t", HEAD, ns, 100.5)
    assert line.endswith('"POST /v1/x" 200 500.0ms model=m provider=p tokens=1/4 cost=- '
                         'ttft=- cache=- attempts=1 rid=r')


@settings(max_examples=500, deadline=None)
@given(INFO, COUNT, COUNT, COUNT, COUNT)
def test_usage_cost_reads_the_structs_as_getattr_does(info, i, o, r, w):
    # msgspec Structs (Usage, ModelInfo) keep their fields in member slots too.
    usage = Usage(input=i, output=o, cache_read=r, cache_write=w)
    real = None if info is None else ModelInfo(id="m", provider="p", **vars(info))
    for args in ((info, usage), (real, usage), (real, NS(**{k: getattr(usage, k) for k in (
            "input", "output", "cache_read", "cache_write")}))):
        assert price_outcome(usage_cost_c, *args) == price_outcome(usage_cost_py, *args)


@settings(max_examples=200, deadline=None)
@given(hist_contexts)
def test_metrics_recorder_reads_a_real_context_as_getattr_does(ctxs):
    def real(ns):
        ctx = real_ctx(ns)
        ctx.deployment = None if ns.deployment is None else slotted("Deployment", ns.deployment)
        ctx.usage = None if ns.usage is None else Usage(**vars(ns.usage))
        return ctx

    mixed = [real(ns) if i % 2 == 0 else ns for i, ns in enumerate(ctxs)]
    assert record(RECORDERS[-1], mixed) == record(RECORDERS[0], ctxs)


def test_request_ids_set_and_append_on_a_real_context():
    from helix._fast import RequestIdsC, RequestIdsPy

    out = []
    for kind in (RequestIdsPy, RequestIdsC):
        got = []
        for rid in (None, "mine-1", "has space"):
            ctx = RequestContext(NS(request=NS(headers={} if rid is None else
                                               {"x-request-id": rid})), None, 0.0)
            ctx.response_headers.append(("a", "b"))
            kind("0badcafe-")(ctx)
            got.append((ctx.request_id, ctx.response_headers))
        out.append(got)
    assert out[0] == out[1]
    assert out[1][1] == ("mine-1", [("a", "b"), (b"x-request-id", b"mine-1")])
    ctx = RequestContext(NS(request=NS(headers={})), None, 0.0)
    del ctx.request_id  # an unset slot is set all the same
    RequestIdsC("p-")(ctx)
    assert ctx.request_id == "p-1"


def test_a_slot_descriptor_taken_from_another_class_is_not_read_by_offset():
    names = ("queued", "started", "waited", "upstream_started", "head_at", "first_chunk_at")
    donor = type("Donor", (), {"__slots__": (*names, "pad")})
    taker = type("Taker", (), {"__slots__": ("x",), **{n: donor.__dict__[n] for n in names}})
    obj = taker()
    assert outcome(timing_value_c, obj, 2.0) == outcome(timing_value_py, obj, 2.0)
    with pytest.raises(TypeError):  # the descriptor's own check, not a read of x's memory
        timing_value_c(obj, 2.0)


def test_a_struct_is_stored_through_its_own_setattr():
    import msgspec

    from helix._fast import RequestIdsC

    class Ctx(msgspec.Struct, gc=False):  # msgspec's setattr tracks GC on a store
        exchange: object = None
        response_headers: list = []
        request_id: object = None

    ctx = Ctx(exchange=NS(request=NS(headers={})))
    RequestIdsC("p-")(ctx)
    assert ctx.request_id == "p-1" and ctx.response_headers == [(b"x-request-id", b"p-1")]
