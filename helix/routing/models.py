"""What Helix knows about models: ids, aliases, limits and prices.

The packaged table (``helix/data/models.json``) is decoded once at import.
A :class:`Registry` indexes it in dicts, so a lookup is a dict hit; a name
that needs normalising (``openai/gpt-4o``, ``us.anthropic.claude-...``,
``models/gemini-2.0-flash``, ``claude-3.5-sonnet``, a date suffix) is
normalised once and the answer cached.  The config's top-level ``models:``
list is merged over the packaged table by :meth:`Registry.from_config`.

Prices are USD per million tokens: input, output, cache reads
(``cached_input_per_mtok``) and cache writes (``cache_write_per_mtok``:
Anthropic's and Bedrock's prompt-cache creation, 1.25x input for the 5-minute
cache).  The registry informs cost accounting; it never decides routing: a
model it does not know is still served, with an unknown (``None``) cost.
:func:`prices_as_of` says how old the packaged prices are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import msgspec

from helix._fast import price_tokens, usage_cost
from helix.schema.usage import Usage

if TYPE_CHECKING:
    from helix.config import Config, ModelOverride

__all__ = [
    "DEFAULT",
    "PRICES_AS_OF",
    "ModelInfo",
    "Registry",
    "cost",
    "lookup",
    "price_tokens",
    "prices_as_of",
]


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One model at one provider.  ``provider`` None: any provider (a config entry)."""

    id: str
    provider: str | None = None
    mode: Literal["chat", "embedding"] = "chat"
    context_window: int | None = None
    max_output: int | None = None
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    # Prompt-cache writes (Anthropic cache_creation_input_tokens, Bedrock
    # cacheWriteInputTokens); None: priced at the input price.
    cache_write_per_mtok: float | None = None
    aliases: tuple[str, ...] = ()
    # The same model under another provider type's id (bedrock, vertex, azure ...).
    provider_ids: dict[str, str] = {}
    # How the chat translation asks this model for JSON and for reasoning (None: the
    # provider family's default); see helix.providers.features.
    structured_output: Literal["native", "openapi", "tool", "prompt"] | None = None
    reasoning: Literal["budget", "adaptive", "level", "none"] | None = None
    notes: str | None = None


class _DataFile(msgspec.Struct, forbid_unknown_fields=True):
    prices_as_of: str
    source: str
    units: str
    models: list[ModelInfo]


def _load_packaged() -> _DataFile:
    # Beside this package on disk in every install form (wheel, bundle, image); a plain
    # open() spares every process the importlib.resources/zipfile imports.
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "models.json")
    with open(path, "rb") as f:
        raw = f.read()
    return msgspec.json.decode(raw, type=_DataFile)


_DATA = _load_packaged()
PRICES_AS_OF = _DATA.prices_as_of


def prices_as_of() -> str:
    """The date (``YYYY-MM-DD``) of the provider price pages the packaged prices come from."""
    return PRICES_AS_OF

# Provider types billed at another type's list prices for the same model.
_SAME_PRICES = {
    "azure": frozenset({"openai"}),
    "vertex": frozenset({"gemini"}),
    "gemini": frozenset({"vertex"}),
}
# Types that serve other vendors' models under those vendors' ids: the
# first-party price is the best estimate there is.  Self-hosted types
# (ollama, vllm) get no price unless the config gives one.
_RESELLERS = frozenset({"openai_compatible", "openrouter"})

_MISS = object()
_CACHE_MAX = 4096

_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|global|us-gov|ca|jp|au)\.(?=[a-z]+\.)")
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|20\d{6}|\d{4}|\d{3}|latest)$")
_VERSION_AT = re.compile(r"@[\w.-]+$")
_DOTTED = re.compile(r"(?<=\d)\.(?=\d)")


def _variants(model: str) -> list[str]:
    """The lower-cased name, then normalised forms to try in order."""
    name = model.strip().lower()
    out = [name]

    def add(v: str) -> None:
        if v and v not in out:
            out.append(v)

    if name.startswith("models/"):  # Gemini REST form
        add(name[7:])
    for v in list(out):
        if "/" in v:  # provider-prefixed: openai/gpt-4o, anthropic/claude-3.5-sonnet
            add(v.split("/", 1)[1])
    for v in list(out):
        m = _REGION_PREFIX.match(v)  # Bedrock cross-region inference profiles
        if m:
            add(v[m.end() :])
    for v in list(out):
        add(_VERSION_AT.sub("", v))
    for v in list(out):
        add(_DOTTED.sub("-", v))  # OpenRouter spells claude-3.5-sonnet
    for v in list(out):
        add(_DATE_SUFFIX.sub("", v))
    return out


class Registry:
    """Model name (+ provider type) -> :class:`ModelInfo`, in O(1)."""

    __slots__ = ("_by_name", "_by_provider", "_cache", "entries", "prices_as_of")

    def __init__(
        self,
        entries: Iterable[ModelInfo],
        overrides: Iterable[ModelInfo] = (),
        prices_as_of: str | None = PRICES_AS_OF,
    ) -> None:
        self.prices_as_of = prices_as_of
        self._by_name: dict[str, ModelInfo] = {}
        self._by_provider: dict[tuple[str, str], ModelInfo] = {}
        self._cache: dict[tuple[str, str | None], ModelInfo | None] = {}
        # (provider, id) -> entry; a config entry replaces the packaged one it merged over.
        self.entries: dict[tuple[str | None, str], ModelInfo] = {}
        for info in entries:
            self.entries.setdefault((info.provider, info.id.lower()), info)
            self._index(info, replace=False)
        for info in overrides:
            self.entries[(info.provider, info.id.lower())] = info
            self._index(info, replace=True)

    # --- building --------------------------------------------------------------------

    def _index(self, info: ModelInfo, *, replace: bool) -> None:
        names = [info.id.lower(), *(a.lower() for a in info.aliases)]
        keyed: list[tuple[str, str]] = []
        if info.provider is not None:
            keyed.extend((info.provider, n) for n in names)
        keyed.extend((ptype, pid.lower()) for ptype, pid in info.provider_ids.items())
        # A config entry for a provider the packaged model lives at too is a
        # price for that provider only: it must not re-price the others.
        general = info.provider is None or not replace or self._owner_of(info)
        if general:
            names.extend(pid.lower() for pid in info.provider_ids.values())
            for n in names:
                if replace:
                    self._by_name[n] = info
                else:
                    self._by_name.setdefault(n, info)
        for key in keyed:
            if replace:
                self._by_provider[key] = info
            else:
                self._by_provider.setdefault(key, info)

    def _owner_of(self, info: ModelInfo) -> bool:
        current = self._by_name.get(info.id.lower())
        return current is None or current.provider == info.provider

    @classmethod
    def from_config(cls, config: Config | None) -> Registry:
        """The packaged table with the config's ``models:`` entries merged over it."""
        overrides = getattr(config, "models", None) or []
        if not overrides:
            return DEFAULT
        base = Registry(_DATA.models)
        merged = [base._merge(ov) for ov in overrides]
        return Registry(_DATA.models, merged)

    def _merge(self, ov: ModelOverride) -> ModelInfo:
        """One config entry over the packaged entry it names (by id or alias), if any."""
        existing = self._by_name.get(ov.id.lower())
        if ov.provider is not None:
            at = self._by_provider.get((ov.provider, ov.id.lower()))
            if at is not None:
                existing = at
            elif existing is not None and not _compatible(ov.provider, existing):
                existing = None
        given = {
            f: getattr(ov, f)
            for f in (
                "mode", "context_window", "max_output", "input_per_mtok",
                "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok",
            )
            if getattr(ov, f) is not None
        }
        if existing is None:
            return ModelInfo(
                id=ov.id,
                provider=ov.provider,
                aliases=tuple(ov.aliases),
                provider_ids=dict(ov.provider_ids),
                **given,
            )
        same_provider = ov.provider is None or ov.provider == existing.provider
        if same_provider:
            aliases = tuple(dict.fromkeys([*existing.aliases, *ov.aliases]))
            return msgspec.structs.replace(
                existing,
                aliases=aliases,
                provider_ids={**existing.provider_ids, **ov.provider_ids},
                **given,
            )
        # The same model at another provider, priced differently there.
        return msgspec.structs.replace(
            existing,
            id=ov.id,
            provider=ov.provider,
            aliases=tuple(ov.aliases),
            provider_ids=dict(ov.provider_ids),
            **given,
        )

    # --- lookups ---------------------------------------------------------------------

    def lookup(self, model: str, provider_type: str | None = None) -> ModelInfo | None:
        """The model by id, alias, provider id or a normalised form; None if unknown."""
        key = (model, provider_type)
        hit = self._cache.get(key, _MISS)
        if hit is not _MISS:
            return hit
        info = self._resolve(model, provider_type) if isinstance(model, str) else None
        if len(self._cache) < _CACHE_MAX:
            self._cache[key] = info
        return info

    def _resolve(self, model: str, ptype: str | None) -> ModelInfo | None:
        by_provider = self._by_provider
        by_name = self._by_name
        for name in _variants(model):
            if ptype is not None:
                info = by_provider.get((ptype, name))
                if info is not None:
                    return info
            info = by_name.get(name)
            if info is not None and _compatible(ptype, info):
                return info
        return None

    def cost(
        self, model: str, provider_type: str | None, usage: Usage | dict | None
    ) -> float | None:
        if usage is None:
            return None
        return cost(self.lookup(model, provider_type), usage)

    def __len__(self) -> int:
        return len(self.entries)


def _compatible(ptype: str | None, info: ModelInfo) -> bool:
    """Whether ``info``'s prices apply to a deployment of provider type ``ptype``."""
    if ptype is None or info.provider is None or info.provider == ptype:
        return True
    if ptype in info.provider_ids or ptype in _RESELLERS:
        return True
    return info.provider in _SAME_PRICES.get(ptype, ())


def _tokens(usage) -> tuple[int, int, int, int] | None:
    """(input, output, cache_read, cache_write) of a usage; None when it is not one.

    ``usage`` is OpenAI's usage dict (``prompt_tokens``, ``completion_tokens``,
    ``prompt_tokens_details.cached_tokens`` / ``.cache_write_tokens``; DeepSeek's
    ``prompt_cache_hit_tokens``), or any object with ``input``, ``output``,
    ``cache_read``, ``cache_write`` attributes (a Usage struct).
    """
    if isinstance(usage, dict):
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens")
        if cached is None:
            cached = usage.get("prompt_cache_hit_tokens")
        return (
            usage.get("prompt_tokens") or 0,
            usage.get("completion_tokens") or 0,
            cached or 0,
            details.get("cache_write_tokens") or 0,
        )
    if usage is None or not hasattr(usage, "input"):
        return None
    return (
        getattr(usage, "input", 0) or 0,
        getattr(usage, "output", 0) or 0,
        getattr(usage, "cache_read", 0) or 0,
        getattr(usage, "cache_write", 0) or 0,
    )


def cost(info: ModelInfo | None, usage: Usage | dict | None) -> float | None:
    """USD for one response's usage (a Usage struct or OpenAI's dict); None when unknown.

    See :func:`price_tokens` (``helix/_fast/price_py.py``; compiled as ``price_c``).  A
    malformed usage (wrong types) costs None.
    """
    if info is None:
        return None
    try:
        if type(usage) is Usage:  # every answer's case: no dict or attribute probing
            return usage_cost(info, usage)
        tokens = _tokens(usage)
        if tokens is None:
            return None
        return price_tokens(info, *tokens)
    except (AttributeError, TypeError):
        return None


DEFAULT = Registry(_DATA.models)


def lookup(model: str, provider_type: str | None = None) -> ModelInfo | None:
    """Look a model up in the packaged table (no config overrides)."""
    return DEFAULT.lookup(model, provider_type)
