"""The chat ingress's bytes, exactly as recorded before the ingress seam (see cases.py)."""

from __future__ import annotations

import json

import pytest

from tests.golden.cases import GOLDEN, RUNNERS, Pinned

CASES = json.loads(GOLDEN.read_text())


def _id(case: dict) -> str:
    extra = len(case.get("chunks", ())) if case["kind"] == "stream" else case.get("status", "")
    return f"{case['kind']}-{case['type']}-{case['model_id']}-{extra}"


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{_id(c)}" for i, c in enumerate(CASES)])
def test_same_bytes_as_recorded(case):
    with Pinned():
        got = RUNNERS[case["kind"]](case)
    assert got == case["expect"]
