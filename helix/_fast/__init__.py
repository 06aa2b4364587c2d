"""Optional compiled accelerators, chosen in exactly this one place.

Each accelerator is one Python source (``<name>_py.py``) that the build also
compiles with Cython as ``<name>_c`` (or, where the point is C that pure-Python
mode cannot express, a hand-written ``<name>_c.pyx`` next to its twin).  Both
are always importable under their own names (``SSEParserPy``, ``SSEParserC``)
so tests can compare them in one process; the unsuffixed name is the one the
rest of Helix uses.

Four request-path modules are compiled the same way from their home outside this package:
``helix/server/protocol.py`` as ``protocol_c``, ``helix/server/exchange.py`` as
``exchange_c``, ``helix/client/connection.py`` as ``conn_c`` and ``helix/client/pool.py`` as
``pool_c`` (each ``.py`` here is a link; its ``.pxd`` makes their classes typed cdef
classes).  They import the server and the client, so they are not imported here: the
importer picks one with :func:`pick_module` (``helix/server/server.py``,
``helix/server/protocol.py``, ``helix/client/pool.py``, ``helix/client/__init__.py``).

``HELIX_NO_EXTENSIONS=1`` forces the pure-Python twins.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

# Bound before anything imports the module of the same name (head_c does, for its
# fallback), which would make ``helix._fast.head_py`` that module instead of this function.
from helix._fast.head_py import head as head_py

NO_EXTENSIONS = os.environ.get("HELIX_NO_EXTENSIONS", "") not in ("", "0")

# The other pure twins, by the name they are known by here: imported when first asked for
# (``_pick`` when the compiled one is missing or off, or a test comparing the two), so a
# compiled start does not also load every pure module.
_TWINS = {
    "text_line_py": ("access_py", "text_line"),
    "pick_headers_py": ("head_py", "pick_headers"),
    "frame_chunk_py": ("head_py", "frame_chunk"),
    "date_line_py": ("head_py", "date_line"),
    "length_line_py": ("head_py", "length_line"),
    "crlf_py": ("head_py", "crlf"),
    "split_target_py": ("head_py", "split_target"),
    "http11_line_py": ("head_py", "http11_line"),
    "timing_value_py": ("access_py", "timing_value"),
    "cost_value_py": ("access_py", "cost_value"),
    "RequestIdsPy": ("access_py", "RequestIds"),
    "AccessLinePy": ("access_py", "AccessLine"),
    "price_tokens_py": ("price_py", "price_tokens"),
    "usage_cost_py": ("price_py", "usage_cost"),
    "LatencyTablePy": ("ewma_py", "LatencyTable"),
    "RequestWindowPy": ("ewma_py", "RequestWindow"),
    "AttemptBookPy": ("ewma_py", "AttemptBook"),
    "LoneLimitPy": ("gate_py", "LoneLimit"),
    "RowWriterPy": ("hist_py", "RowWriter"),
    "RequestRecorderPy": ("hist_py", "RequestRecorder"),
    "ContextFactoryPy": ("access_py", "ContextFactory"),
    "brackets_py": ("scan_py", "brackets"),
    "depth_exceeds_py": ("scan_py", "depth_exceeds"),
    "RowLocksPy": ("shmlock_py", "RowLocks"),
    "SSEParserPy": ("sse_py", "SSEParser"),
    "ScanRelayPy": ("sse_py", "ScanRelay"),
}


def __getattr__(name: str):
    twin = _TWINS.get(name)
    if twin is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"helix._fast.{twin[0]}"), twin[1])
    globals()[name] = value
    return value


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
# The base of the relays that pass a provider's stream on as it came (helix/providers).
ScanRelayC = _compiled.ScanRelay if _compiled is not None else None

if NO_EXTENSIONS or SSEParserC is None:
    SSEParser = __getattr__("SSEParserPy")
    ScanRelay = __getattr__("ScanRelayPy")
    IMPLEMENTATION = "pure-python"
    REASON = "HELIX_NO_EXTENSIONS=1" if NO_EXTENSIONS else _why_not
else:
    SSEParser = SSEParserC
    ScanRelay = ScanRelayC
    IMPLEMENTATION = "compiled"
    REASON = None


def _compiled_origin(module: str) -> str | None:
    """Where ``helix._fast.<module>`` would load from if it is a built extension, else None;
    found without importing it (the request-path modules import the server)."""
    try:
        spec = importlib.util.find_spec(f"helix._fast.{module}")
    except ImportError:
        return None
    origin = spec.origin if spec is not None else None
    return origin if origin and origin.endswith((".so", ".pyd")) else None


def _compiled_attr(module: str, attr: str):
    """``helix._fast.<module>.<attr>`` from a real extension module, else None (a
    ``<name>_c.py`` link to the pure source would import too; only an extension counts)."""
    if _compiled_origin(module) is None:
        return None
    try:
        mod = importlib.import_module(f"helix._fast.{module}")
    except ImportError:
        return None
    return getattr(mod, attr, None)  # a stale build without it: the pure twin


def _pick(py: str, c):
    """``c`` when it is built and extensions are on, else the pure twin named ``py``."""
    return __getattr__(py) if NO_EXTENSIONS or c is None else c


# Owner-pid locks for the local rate limiter's shared table (helix/limit/local.py).
RowLocksC = _compiled_attr("shmlock_c", "RowLocks")
RowLocks = _pick("RowLocksPy", RowLocksC)
# The balancer's shared PeakEWMA table (helix/routing/balancer.py).
LatencyTableC = _compiled_attr("ewma_c", "LatencyTable")
LatencyTable = _pick("LatencyTablePy", LatencyTableC)
# The health table's per-worker attempt window (helix/routing/health.py HealthTable.record).
RequestWindowC = _compiled_attr("ewma_c", "RequestWindow")
RequestWindow = _pick("RequestWindowPy", RequestWindowC)
# The balancer's begin/end around each attempt (helix/routing/balancer.py).
AttemptBookC = _compiled_attr("ewma_c", "AttemptBook")
AttemptBook = _pick("AttemptBookPy", AttemptBookC)
# Response head bytes (helix/server/writer.py build_head).
head_c = _compiled_attr("head_c", "head")
head = head_py if NO_EXTENSIONS or head_c is None else head_c
# A streamed response's chunk framing (helix/server/writer.py frame_chunk).
frame_chunk_c = _compiled_attr("head_c", "frame_chunk")
frame_chunk = _pick("frame_chunk_py", frame_chunk_c)
# The response's date: line, formatted once a second (helix/server/writer.py date_header).
date_line_c = _compiled_attr("head_c", "date_line")
date_line = _pick("date_line_py", date_line_c)
# A request head's content-length line (helix/client/pool.py _build_head).
length_line_c = _compiled_attr("head_c", "length_line")
length_line = _pick("length_line_py", length_line_c)
# CR/LF in an upstream request's method or target (helix/client/pool.py _build_head).
crlf_c = _compiled_attr("head_c", "crlf")
crlf = _pick("crlf_py", crlf_c)
# A request target's path and query (helix/server/protocol.py on_headers_complete).
split_target_c = _compiled_attr("head_c", "split_target")
split_target = _pick("split_target_py", split_target_c)
# Whether a request line says HTTP/1.1 (helix/server/protocol.py data_received).
http11_line_c = _compiled_attr("head_c", "http11_line")
http11_line = _pick("http11_line_py", http11_line_c)
# A provider's response headers as the client gets them (helix/phases/forward.py).
pick_headers_c = _compiled_attr("head_c", "pick_headers")
pick_headers = _pick("pick_headers_py", pick_headers_c)
# The JSON depth guard's bracket count (helix/schema/jsonsafe.py depth_exceeds).
brackets_c = _compiled_attr("scan_c", "brackets")
brackets = _pick("brackets_py", brackets_c)
# The JSON depth guard itself (helix/schema/jsonsafe.py re-exports it).
depth_exceeds_c = _compiled_attr("scan_c", "depth_exceeds")
depth_exceeds = _pick("depth_exceeds_py", depth_exceeds_c)
# The text of a text-only OpenAI stream chunk, read without decoding it (helix/providers/
# openai.py OpenAIChunkReader). No pure twin: without the compiled build the reader decodes
# every chunk, which is what this only shortcuts.
chunk_text = None if NO_EXTENSIONS else _compiled_attr("scan_c", "chunk_text")
# The same for an Anthropic text_delta event (helix/providers/anthropic/stream.py).
event_text = None if NO_EXTENSIONS else _compiled_attr("scan_c", "event_text")
# A finished request's metrics row update (helix/observe/metrics.py recorder).
RowWriterC = _compiled_attr("hist_c", "RowWriter")
RowWriter = _pick("RowWriterPy", RowWriterC)
RequestRecorderC = _compiled_attr("hist_c", "RequestRecorder")
RequestRecorder = _pick("RequestRecorderPy", RequestRecorderC)
LoneLimitC = _compiled_attr("gate_c", "LoneLimit")
LoneLimit = _pick("LoneLimitPy", LoneLimitC)
text_line_c = _compiled_attr("access_c", "text_line")
text_line = _pick("text_line_py", text_line_c)
# The server-timing and x-helix-cost-usd values (helix/observe/timing.py,
# helix/phases/forward.py).
timing_value_c = _compiled_attr("access_c", "timing_value")
timing_value = _pick("timing_value_py", timing_value_c)
cost_value_c = _compiled_attr("access_c", "cost_value")
cost_value = _pick("cost_value_py", cost_value_c)
# The request id and the request_id phase (helix/observe/access.py).
RequestIdsC = _compiled_attr("access_c", "RequestIds")
RequestIds = _pick("RequestIdsPy", RequestIdsC)
# The text access-log recorder (helix/observe/access.py make_access_recorder).
AccessLineC = _compiled_attr("access_c", "AccessLine")
AccessLine = _pick("AccessLinePy", AccessLineC)
# A response's price (helix/routing/models.py cost, price_tokens).
usage_cost_c = _compiled_attr("price_c", "usage_cost")
usage_cost = _pick("usage_cost_py", usage_cost_c)
price_tokens_c = _compiled_attr("price_c", "price_tokens")
price_tokens = _pick("price_tokens_py", price_tokens_c)
# A request's context, made without running its __init__ (helix/pipeline/runner.py).
ContextFactoryC = _compiled_attr("access_c", "ContextFactory")
ContextFactory = _pick("ContextFactoryPy", ContextFactoryC)


def pick_module(module: str, pure):
    """The compiled ``helix._fast.<module>`` when it is built (and extensions are not off),
    else ``pure``, the module it was compiled from (or its name: then only the module picked
    is imported, and a compiled run does not also load the pure one at start-up)."""
    if NO_EXTENSIONS or COMPILED.get(module.removesuffix("_c")) is None:
        return importlib.import_module(pure) if isinstance(pure, str) else pure
    return importlib.import_module(f"helix._fast.{module}")


# Every accelerator's compiled build (None: not built).
COMPILED = {
    "sse": SSEParserC,
    "ewma": LatencyTableC,
    "shmlock": RowLocksC,
    "head": head_c,
    "scan": brackets_c,
    "hist": RowWriterC,
    "gate": LoneLimitC,
    "access": text_line_c,
    "price": usage_cost_c,
    # The client connection (helix/server/protocol.py) and the upstream connection
    # (helix/client/connection.py), typed: picked by their importers with pick_module.
    "protocol": _compiled_origin("protocol_c"),
    "conn": _compiled_origin("conn_c"),
    # Request and Exchange (helix/server/exchange.py), typed: picked by the protocol.
    "exchange": _compiled_origin("exchange_c"),
    # The upstream pool (helix/client/pool.py), typed: picked by helix/client/__init__.py.
    "pool": _compiled_origin("pool_c"),
}

# The typed core's .pxd files cimport each other's classes, and a module that cimports one
# loads only beside the other's build: pool_c needs conn_c; protocol_c and exchange_c need
# each other.  setup.py goes on when one extension fails to compile, so a module whose
# partner is missing counts as not built (its pure twin runs) instead of failing to import.
_NEEDS = {"pool": ("conn",), "protocol": ("exchange",), "exchange": ("protocol",)}


def _without_orphans(compiled: dict, needs: dict) -> dict:
    out = dict(compiled)
    for name, partners in needs.items():
        if any(compiled.get(p) is None for p in partners):
            out[name] = None
    return out


COMPILED = _without_orphans(COMPILED, _NEEDS)


def describe() -> str:
    """``compiled`` only when every accelerator is (the Docker build greps for it)."""
    if REASON is not None:
        return f"{IMPLEMENTATION} ({REASON})"
    missing = [name for name, impl in COMPILED.items() if impl is None]
    if missing:
        return f"partial (pure-Python: {', '.join(missing)})"
    return IMPLEMENTATION
