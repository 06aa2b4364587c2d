"""Coverage-guided fuzzing of one target with atheris (libFuzzer for Python).

    pip install atheris
    python tests/fuzz/run.py server_protocol -max_total_time=600
    python tests/fuzz/run.py --list

New interesting inputs go into tests/fuzz/corpus/<target>/ (keep the ones that
add coverage; ``-merge=1`` minimises a folder).  A crash writes
``crash-<sha1>`` in the current directory: replay it with
``python tests/fuzz/run.py TARGET crash-<sha1>``, fix, then add it to the corpus.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["helix"]):
        from tests.fuzz.targets import TARGETS

        for fn in TARGETS.values():  # import what each target loads lazily, instrumented
            fn(b"")

    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "--list"):
        print("targets:", " ".join(sorted(TARGETS)))
        return
    name = sys.argv[1]
    target = TARGETS[name]
    corpus = os.path.join(CORPUS, name)
    os.makedirs(corpus, exist_ok=True)
    args = [sys.argv[0], *sys.argv[2:]]
    for a in args[1:]:
        if not a.startswith("-") and not os.path.exists(a):
            os.makedirs(a)  # an output corpus folder
    if not any(not a.startswith("-") for a in sys.argv[2:]):
        args.append(corpus)  # no corpus or crash file given: use (and grow) the kept one
    if not any(a.startswith("-timeout") for a in args):
        args.append("-timeout=10")  # a hang is a bug too
    if not any(a.startswith("-rss_limit_mb") for a in args):
        args.append("-rss_limit_mb=2048")
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
