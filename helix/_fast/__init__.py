"""Optional compiled accelerators, chosen in exactly this one place.

Each accelerator is one Python source (``<name>_py.py``) that the build also
compiles with Cython as ``<name>_c``.  Both are always importable under their
own names (``SSEParserPy``, ``SSEParserC``) so tests can compare them in one
process; the unsuffixed name is the one the rest of Helix uses.

``HELIX_NO_EXTENSIONS=1`` forces the pure-Python twins.
"""

from __future__ import annotations

import os

from helix._fast.ewma_py import LatencyTable as LatencyTablePy
from helix._fast.head_py import head as head_py
from helix._fast.scan_py import brackets as brackets_py
from helix._fast.shmlock_py import RowLocks as RowLocksPy
from helix._fast.sse_py import SSEParser as SSEParserPy

NO_EXTENSIONS = os.environ.get("HELIX_NO_EXTENSIONS", "") not in ("", "0")


def _load_compiled():
    try:
        from helix._fast import sse_c
    except ImportError as exc:  # not built: a source checkout, or the build fell back
        return None, f"not built ({exc})"
    # sse_c.py is a link to the pure source; only a real extension module counts.
    if not (sse_c.__file__ or "").endswith((".so", ".pyd")):
        return None, "not built (pure-Python source found instead of an extension)"
    return sse_c, None


_compiled, _why_not = _load_compiled()
SSEParserC = _compiled.SSEParser if _compiled is not None else None

if NO_EXTENSIONS or SSEParserC is None:
    SSEParser = SSEParserPy
    IMPLEMENTATION = "pure-python"
    REASON = "HELIX_NO_EXTENSIONS=1" if NO_EXTENSIONS else _why_not
else:
    SSEParser = SSEParserC
    IMPLEMENTATION = "compiled"
    REASON = None


def _load_shmlock():
    try:
        from helix._fast import shmlock_c
    except ImportError:
        return None
    return shmlock_c.RowLocks


# Owner-pid locks for the local rate limiter's shared table (helix/limit/local.py).
RowLocksC = _load_shmlock()
RowLocks = RowLocksPy if NO_EXTENSIONS or RowLocksC is None else RowLocksC



def _load_ewma():
    try:
        from helix._fast import ewma_c
    except ImportError:
        return None
    if not (ewma_c.__file__ or "").endswith((".so", ".pyd")):
        return None
    return ewma_c.LatencyTable


# The balancer's shared PeakEWMA table (helix/routing/balancer.py).
LatencyTableC = _load_ewma()
LatencyTable = LatencyTablePy if NO_EXTENSIONS or LatencyTableC is None else LatencyTableC


def _load_head():
    try:
        from helix._fast import head_c
    except ImportError:
        return None
    return head_c.head


# Response head bytes (helix/server/writer.py build_head).
head_c = _load_head()
head = head_py if NO_EXTENSIONS or head_c is None else head_c


def _load_scan():
    try:
        from helix._fast import scan_c
    except ImportError:
        return None
    return scan_c.brackets


# The JSON depth guard's bracket count (helix/schema/jsonsafe.py depth_exceeds).
brackets_c = _load_scan()
brackets = brackets_py if NO_EXTENSIONS or brackets_c is None else brackets_c


# Every accelerator's compiled build (None: not built).
COMPILED = {
    "sse": SSEParserC,
    "ewma": LatencyTableC,
    "shmlock": RowLocksC,
    "head": head_c,
    "scan": brackets_c,
}


def describe() -> str:
    """``compiled`` only when every accelerator is (the Docker build greps for it)."""
    if REASON is not None:
        return f"{IMPLEMENTATION} ({REASON})"
    missing = [name for name, impl in COMPILED.items() if impl is None]
    if missing:
        return f"partial (pure-Python: {', '.join(missing)})"
    return IMPLEMENTATION
