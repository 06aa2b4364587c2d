"""The fuzz targets, bounded, in the test suite: the kept corpus replayed, then Hypothesis
(random bytes plus structured seeds) for a few hundred examples per target.

The long, coverage-guided run is ``python tests/fuzz/run.py TARGET`` (atheris); see
tests/fuzz/README.md."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import TARGETS

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")
EXAMPLES = int(os.environ.get("HELIX_FUZZ_EXAMPLES", "150"))


def corpus(name: str) -> list[bytes]:
    d = os.path.join(CORPUS, name)
    if not os.path.isdir(d):
        return []
    out = []
    for entry in sorted(os.listdir(d)):
        with open(os.path.join(d, entry), "rb") as fh:
            out.append(fh.read())
    return out


def seeds(name: str):
    """Random bytes, and mutations of the corpus (bytes spliced in, cut, repeated)."""
    kept = corpus(name)
    raw = st.binary(max_size=2048)
    if not kept:
        return raw

    def mutate(base: bytes, at: int, insert: bytes, cut: int) -> bytes:
        i = at % (len(base) + 1)
        return base[:i] + insert + base[i + cut:]

    mutated = st.builds(mutate, st.sampled_from(kept), st.integers(0, 1 << 16),
                        st.binary(max_size=64), st.integers(0, 64))
    return st.one_of(raw, mutated)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_corpus_replays_cleanly(name):
    for data in corpus(name):
        TARGETS[name](data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target(name):
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(seeds(name))
    def run(data: bytes) -> None:
        target(data)

    run()
