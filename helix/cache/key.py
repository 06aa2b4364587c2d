"""Cache keys: a pure function of the request body, the resolved model, the tenant and the seed.

The key is the SHA-256 of a canonical JSON document::

    {"b": {<fields>}, "e": <endpoint>, "m": <resolved model>, "t": <tenant>}

``<fields>`` are the request body's top-level fields named by the rule's
``cache_key_include`` -- or, by default, all of them minus those that do not
change the answer (``stream``, ``stream_options``, ``user``, ``store``,
``metadata``).  The body's ``model`` is never used as given: the resolved
model stands for it, so an alias and its target share entries.  Canonical
means: keys sorted at every depth (msgspec's ``order="sorted"``), ``null``
fields and fields equal to OpenAI's documented default dropped
(``temperature: 1`` is the same request as no temperature), and integral
floats written as integers (``1.0`` == ``1``) at the top level.

The storage key is ``<namespace>/<hash>``: the namespace is ``_`` without a
``Helicone-Cache-Seed`` and ``s<hash of the seed>`` with one, so a seed can be
purged as a prefix.  Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec

__all__ = [
    "DEFAULT_EXCLUDE",
    "NO_SEED",
    "canonical",
    "model_identity",
    "namespace",
    "storage_key",
]

# Fields that never change the answer.
DEFAULT_EXCLUDE = frozenset({"stream", "stream_options", "user", "store", "metadata"})


def _defaults(endpoint: str) -> dict[str, object]:
    """The API's documented defaults (``Api.cache_defaults``): a field given with its default
    value is the same request as the field left out.  Booleans only match booleans, numbers
    only numbers."""
    from helix.api import by_name

    try:
        return by_name(endpoint).cache_defaults
    except KeyError:
        return {}


NO_SEED = "_"
_MISSING = object()
_MAX_SAFE = 2**53

_decode = msgspec.json.decode
_encoder = msgspec.json.Encoder(order="sorted")


def _is_default(value: object, default: object) -> bool:
    if isinstance(default, bool):
        return value is default
    if isinstance(default, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool) and value == default
    return value == default


def _scalar(value: object) -> object:
    if isinstance(value, float) and value.is_integer() and -_MAX_SAFE < value < _MAX_SAFE:
        return int(value)
    return value


def canonical_fields(
    endpoint: str, body: dict, include: Iterable[str] | None = None
) -> dict[str, object]:
    """The body fields that make up the key, canonicalized (``model`` is never among them)."""
    defaults = _defaults(endpoint)
    if include is None:
        items = ((k, v) for k, v in body.items() if k not in DEFAULT_EXCLUDE)
    else:
        items = ((k, body[k]) for k in include if k in body)
    out: dict[str, object] = {}
    for name, value in items:
        if name == "model" or value is None:
            continue
        default = defaults.get(name, _MISSING)
        if default is not _MISSING and _is_default(value, default):
            continue
        out[name] = _scalar(value)
    return out



def canonical(
    endpoint: str,
    body: bytes | dict,
    model: str,
    tenant: str | None,
    include: Iterable[str] | None = None,
) -> bytes:
    """The canonical document hashed into the key (``tenant`` None: shared across tenants)."""
    doc = _decode(body) if isinstance(body, bytes | bytearray | memoryview) else body
    if not isinstance(doc, dict):
        raise ValueError("a request body must be a JSON object")
    return _encoder.encode(
        {
            "b": canonical_fields(endpoint, doc, include),
            "e": endpoint,
            "m": model,
            "t": tenant if tenant is not None else "*",
        }
    )


def namespace(seed: str | None) -> str:
    """``_`` without a seed; ``s`` + 32 hex digits of the seed's SHA-256 with one."""
    if not seed:
        return NO_SEED
    return "s" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


def storage_key(
    endpoint: str,
    body: bytes | dict,
    model: str,
    tenant: str | None,
    include: Iterable[str] | None = None,
    seed: str | None = None,
) -> str:
    """``<namespace>/<sha256 hex of the canonical document>``."""
    digest = hashlib.sha256(canonical(endpoint, body, model, tenant, include)).hexdigest()
    return f"{namespace(seed)}/{digest}"


def model_identity(deployments: Iterable) -> str:
    """The resolved model: the candidates' ``provider/model_id``, sorted, so the key does not
    depend on the order routing put them in."""
    ids = [f"{d.provider}/{d.model_id}" for d in deployments]
    if len(ids) == 1:
        return ids[0]
    return "|".join(sorted(set(ids)))
