"""Provider types -> their :class:`ProviderSpec`, imported only when configured.

Each provider module (``helix/providers/<module>.py``) exports ``SPECS``, a
dict of the types it serves.  A type whose module does not exist yet is known
but "not built": config naming it is refused with a clear message.  Importing
lazily also keeps start-up cheap: a gateway that only talks to OpenAI never
imports the SigV4 or service-account code.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from helix.config import ProviderConfig
    from helix.providers.base import Adapter, Signer

__all__ = [
    "TYPE_MODULES",
    "NotBuilt",
    "ProviderSpec",
    "available_types",
    "base_url",
    "is_built",
    "normalize_base_url",
    "spec",
]


def _no_query(cfg: ProviderConfig) -> str:
    return ""


@dataclass(frozen=True)
class ProviderSpec:
    """Everything Helix needs to know about one provider type."""

    type: str
    adapter: Adapter
    # Static headers sent on every request (auth included), built once per provider.
    headers: Callable[[ProviderConfig], list[tuple[bytes, bytes]]]
    default_base_url: str | None = None
    # When the default endpoint depends on the config (Bedrock's region, Vertex's location).
    base_url_for: Callable[[ProviderConfig], str | None] | None = None
    key_env: str | None = None  # env-only mode: this variable configures the provider
    key_required: bool = True
    default_models: tuple[str, ...] = ()
    query: Callable[[ProviderConfig], str] = _no_query
    # Extra config checks; raise helix.config.ConfigError naming `where`.
    validate: Callable[[ProviderConfig, str], None] | None = None
    # Per-request auth that cannot be a static header (SigV4, OAuth bearer tokens).
    signer: Callable[[ProviderConfig], Signer | None] | None = None
    # Env-only mode for types that need more than a key; returns a provider dict or None.
    from_env: Callable[[dict[str, str]], dict[str, Any] | None] | None = None
    notes: dict[str, str] = field(default_factory=dict)
    # When models of one provider speak different formats (Claude on Vertex or Bedrock):
    # model id -> the adapter for it, chosen once per deployment.
    adapter_for: Callable[[str], Adapter] | None = None


# type -> module under helix.providers (the module exports SPECS[type]).
TYPE_MODULES: dict[str, str] = {
    "openai": "openai",
    "azure": "openai",
    "groq": "openai",
    "together": "openai",
    "mistral": "openai",
    "perplexity": "openai",
    "deepseek": "openai",
    "fireworks": "openai",
    "xai": "openai",
    "openrouter": "openai",
    "ollama": "openai",
    "vllm": "openai",
    "openai_compatible": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "vertex": "vertex",
    "bedrock": "bedrock",
    "cohere": "cohere",
}
# Env-only mode: the variable whose presence makes a type worth looking at.  Kept here,
# not read from the specs, so that start-up imports only the providers the environment
# names (a spec's own key_env/from_env then decides).
ENV_TRIGGERS = {
    "openai": "OPENAI_API_KEY",
    "azure": "AZURE_OPENAI_API_KEY",
    "groq": "GROQ_API_KEY",
    "together": "TOGETHER_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "perplexity": "PERPLEXITY_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "fireworks": "FIREWORKS_API_KEY",
    "xai": "XAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "ollama": "OLLAMA_BASE_URL",
    "vllm": "VLLM_BASE_URL",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "vertex": "GOOGLE_APPLICATION_CREDENTIALS",
    "cohere": "COHERE_API_KEY",
}
# Key variables of types whose module may not exist (for the start-up warning).
KEY_ENV_HINTS = {t: ENV_TRIGGERS[t] for t in ("anthropic", "gemini", "cohere")}


class NotBuilt(LookupError):
    pass


_cache: dict[str, ProviderSpec] = {}


def spec(ptype: str) -> ProviderSpec:
    """The spec of a provider type; KeyError if unknown, NotBuilt if not in this version."""
    found = _cache.get(ptype)
    if found is not None:
        return found
    module = TYPE_MODULES[ptype]
    name = f"helix.providers.{module}"
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise NotBuilt(ptype) from None
        raise
    specs = getattr(mod, "SPECS", {})
    if ptype not in specs:
        raise NotBuilt(ptype)
    _cache[ptype] = specs[ptype]
    return specs[ptype]


# --- base URLs as users write them --------------------------------------------------------
#
# Adapters append their API's own path to the base URL (Anthropic ``/v1/messages``, Gemini
# ``/v1beta/models/...``, Cohere ``/v2/chat``, Vertex ``/v1/projects/...``, Azure
# ``/openai/deployments/...``), but providers' docs and SDKs show the base URL *with* that
# version (``https://api.anthropic.com/v1``, ``.../v1beta``, Google's OpenAI-compatibility
# ``.../v1beta/openai/``), and users paste what they saw.  Each type's rule, in one table:
# the path suffixes it strips (the adapter adds its own version back), or the path it adds.
# Helix always speaks the API version its adapter was written for (Gemini: v1beta).

_STRIP_SUFFIXES: dict[str, tuple[str, ...]] = {
    "anthropic": ("/v1/messages", "/v1"),
    "gemini": ("/v1beta/openai", "/v1/openai", "/v1beta/models", "/v1/models", "/v1beta", "/v1"),
    "vertex": ("/v1beta1", "/v1"),
    "cohere": ("/compatibility/v1", "/v2/chat", "/v2", "/v1"),
    "azure": ("/openai/v1", "/openai/deployments", "/openai"),
}


def _split(url: str) -> tuple[str, str]:
    """``"https://h:1/a/b/"`` -> ``("https://h:1", "/a/b")`` (no trailing slash)."""
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*)([^?#]*)(.*)$", url.strip())
    if m is None:
        return url, ""
    origin, path, rest = m.groups()
    return origin, path.rstrip("/") + rest


def normalize_base_url(ptype: str, url: str, default: str | None = None) -> str:
    """A configured ``base_url`` in the form ``ptype``'s adapter appends its paths to.

    * Anthropic, Gemini, Vertex, Cohere, Azure: a trailing API version (``/v1``,
      ``/v1beta``, ``/v2``, ``/openai``...) is dropped, since the adapter adds its own.
    * Ollama: ``http://host:11434`` (Ollama's native address) or ``.../api`` gets ``/v1``,
      where Ollama serves the OpenAI API.  vLLM: a bare ``http://host:8000`` gets ``/v1``.
    * The OpenAI family: the provider's own host with no path gets the default's path
      (``https://api.groq.com`` -> ``https://api.groq.com/openai/v1``).
    Anything else is kept as written, minus a trailing slash.
    """
    origin, path = _split(url)
    low = path.lower()
    for suffix in _STRIP_SUFFIXES.get(ptype, ()):
        if low.endswith(suffix):
            path = path[: -len(suffix)]
            break
    else:
        if ptype == "ollama":
            if low.endswith("/api"):
                path = path[:-4]
            if not path.lower().endswith("/v1"):
                path += "/v1"
        elif ptype == "vllm" and not path:
            path = "/v1"
        elif not path and default:
            d_origin, d_path = _split(default)
            if d_origin.lower() == origin.lower():
                path = d_path
    return origin + path


def base_url(s: ProviderSpec, cfg: ProviderConfig) -> str | None:
    """The endpoint for this provider entry: config's base_url (normalized, see
    :func:`normalize_base_url`), else the type's default."""
    if cfg.base_url:
        return normalize_base_url(s.type, cfg.base_url, s.default_base_url)
    if s.base_url_for is not None:
        return s.base_url_for(cfg)
    return s.default_base_url


def is_built(ptype: str) -> bool:
    try:
        spec(ptype)
    except (KeyError, NotBuilt):
        return False
    return True


def available_types() -> list[str]:
    return [t for t in TYPE_MODULES if is_built(t)]
