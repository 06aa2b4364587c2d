"""The compiled bracket count and its pure-Python twin agree (helix/_fast/scan_c.pyx,
scan_py.py), and the depth guard built on it still finds deep documents."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix._fast import brackets_c, brackets_py, depth_exceeds_c, depth_exceeds_py
from helix.schema.jsonsafe import MAX_DEPTH, depth_exceeds

IMPLS = [brackets_py] + ([brackets_c] if brackets_c is not None else [])
GUARDS = [depth_exceeds_py] + ([depth_exceeds_c] if depth_exceeds_c is not None else [])


def test_compiled_twin_is_built_when_extensions_are_expected():
    if os.environ.get("HELIX_EXPECT_EXTENSIONS") == "1":
        assert brackets_c is not None and depth_exceeds_c is not None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | st.text(alphabet='[]{}"\\a, ', max_size=300).map(str.encode))
def test_same_count(body):
    expected = body.count(b"[") + body.count(b"{")
    for impl in IMPLS:
        assert impl(body) == expected


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__module__)
def test_other_buffers(impl):
    assert impl(bytearray(b"[{x[")) == 3
    assert impl(b"") == 0


def test_depth_guard_on_the_count():
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert depth_exceeds(deep)
    assert not depth_exceeds(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    wide = b"[" + b"[]," * 500 + b"[]]"  # many brackets, shallow
    assert not depth_exceeds(wide)
    assert not depth_exceeds(b'{"a":"' + b"[" * 500 + b'"}')  # inside a string


@settings(max_examples=500, deadline=None)
@given(body=st.text(alphabet='[]{}"\\a, ', max_size=300).map(str.encode) | st.binary(max_size=200),
       limit=st.integers(0, 12))
def test_same_depth_verdict(body, limit):
    """The compiled guard (the count in C, the twin's exact scan past the limit) and the
    twin agree, bytearrays (the twin's path) included."""
    verdicts = {g(body, limit) for g in GUARDS} | {g(bytearray(body), limit) for g in GUARDS}
    assert len(verdicts) == 1
