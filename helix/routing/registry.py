"""Model name -> deployments, built once from config.

Lookup rules (issue 2): an exact public model name wins; otherwise
``provider/model`` selects the provider by name, using the listed entry when
there is one and the remainder as the provider's model id when there is not
(so ``openai/gpt-5`` works the day OpenAI ships it).  Anything else is a 404
``model_not_found``.

Model names come from clients, so they are bounded before anything keeps
them: a name longer than :data:`MAX_MODEL_CHARS` or holding control
characters is a 400 (``param: model``), and the deployments made on the fly
for ``provider/<unlisted id>`` live in a small LRU bounded by count *and* by
an estimate of their bytes (issue 14.1).  They are never listed in
:meth:`ModelRegistry.all_deployments` (``/status``, the balancer tables):
only configured deployments are.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from helix.client import HeaderBlock, Timeouts, parse_url
from helix.config import Config, ProviderConfig
from helix.errors import ErrorKind, HelixError
from helix.providers import catalog
from helix.providers.base import Deployment

# Provider model ids in the wild are < 100 characters (Bedrock ARNs and Vertex
# resource paths included); 256 leaves room and keeps client input small.
MAX_MODEL_CHARS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ProviderEndpoint:
    """Everything about one configured provider that requests reuse."""

    __slots__ = (
        "adapter",
        "adapter_for",
        "base_path",
        "cfg",
        "deployments",
        "headers",
        "origin",
        "query",
        "signer",
        "timeouts",
    )

    def __init__(self, cfg: ProviderConfig, config: Config) -> None:
        self.cfg = cfg
        spec = catalog.spec(cfg.type)
        self.origin, self.base_path = parse_url(catalog.base_url(spec, cfg))
        # Sent on every request: serialized once (client.pool.HeaderBlock).
        self.headers = HeaderBlock(spec.headers(cfg))
        self.adapter = spec.adapter
        self.adapter_for = spec.adapter_for
        self.query = spec.query(cfg)
        self.signer = spec.signer(cfg) if spec.signer is not None else None
        up = config.upstream
        # A provider's own `timeout` bounds everything it answers, streams included.
        total = cfg.timeout if cfg.timeout is not None else up.request_timeout
        stream_total = cfg.timeout if cfg.timeout is not None else up.stream_timeout
        self.timeouts = Timeouts(
            connect=float(up.connect_timeout),
            first_byte=float(up.first_byte_timeout),
            read=float(up.read_timeout),
            total=float(total) if total is not None else None,
            stream_total=float(stream_total) if stream_total is not None else None,
        )
        self.deployments: dict[str, Deployment] = {}

    def deployment(self, model: str, model_id: str, *, cache: bool = True) -> Deployment:
        dep = self.deployments.get(model)
        if dep is None:
            dep = Deployment(
                provider=self.cfg.name,
                provider_type=self.cfg.type,
                model=model,
                model_id=model_id,
                origin=self.origin,
                base_path=self.base_path,
                static_headers=self.headers,
                timeouts=self.timeouts,
                verify_tls=self.cfg.tls_verify,
                adapter=self.adapter if self.adapter_for is None else self.adapter_for(model_id),
                query=self.query,
                signer=self.signer,
            )
            if cache:
                self.deployments[model] = dep
        return dep


def _invalid_model(message: str) -> HelixError:
    return HelixError(ErrorKind.INVALID_REQUEST, message, param="model", code="invalid_model")


class ModelRegistry:
    # Deployments made on the fly for "provider/unlisted-model" are cached in an
    # LRU bounded by count and by estimated bytes (a Deployment with its route
    # headers is ~1 KiB plus three copies of the id), so a client cannot grow
    # worker memory without bound whatever ids it sends.
    MAX_DYNAMIC = 1024
    MAX_DYNAMIC_BYTES = 1024 * 1024
    _ENTRY_BYTES = 1024

    def __init__(self, config: Config) -> None:
        self.config = config
        self.providers: dict[str, ProviderEndpoint] = {}
        self.by_name: dict[str, list[Deployment]] = {}
        self._dynamic: OrderedDict[str, Deployment] = OrderedDict()
        self._dynamic_bytes = 0
        for pcfg in config.providers:
            ep = ProviderEndpoint(pcfg, config)
            self.providers[pcfg.name] = ep
            for entry in pcfg.model_entries():
                dep = ep.deployment(entry.name, entry.id or entry.name)
                self.by_name.setdefault(entry.name, []).append(dep)
        for i, dep in enumerate(self.all_deployments()):
            dep.index = i

    def all_deployments(self) -> list[Deployment]:
        """The configured deployments (never the ones made for client-chosen ids)."""
        return [d for ep in self.providers.values() for d in ep.deployments.values()]

    @property
    def dynamic_count(self) -> int:
        return len(self._dynamic)

    @property
    def dynamic_bytes(self) -> int:
        return self._dynamic_bytes

    def _dynamic_deployment(self, ep: ProviderEndpoint, model: str, model_id: str) -> Deployment:
        cache = self._dynamic
        dep = cache.get(model)
        if dep is not None:
            cache.move_to_end(model)
            return dep
        dep = ep.deployment(model_id, model_id, cache=False)
        cost = self._ENTRY_BYTES + 3 * len(model)
        cache[model] = dep
        self._dynamic_bytes += cost
        while len(cache) > self.MAX_DYNAMIC or self._dynamic_bytes > self.MAX_DYNAMIC_BYTES:
            old, _ = cache.popitem(last=False)
            self._dynamic_bytes -= self._ENTRY_BYTES + 3 * len(old)
        return dep

    def resolve(self, model: str) -> list[Deployment]:
        """Candidate deployments for a requested model name, best first."""
        deps = self.by_name.get(model)
        if deps is not None:
            return deps
        if len(model) > MAX_MODEL_CHARS:
            raise _invalid_model(
                f"Invalid 'model': a model name has at most {MAX_MODEL_CHARS} characters "
                f"(got {len(model)})."
            )
        if _CONTROL.search(model):
            raise _invalid_model("Invalid 'model': control characters are not allowed.")
        prefix, sep, rest = model.partition("/")
        ep = self.providers.get(prefix) if sep else None
        if ep is not None and rest:
            listed = ep.deployments.get(rest)
            if listed is not None:
                return [listed]
            return [self._dynamic_deployment(ep, model, rest)]
        if not self.providers:
            raise HelixError(
                ErrorKind.NO_DEPLOYMENT,
                "No providers are configured. Set a provider key such as OPENAI_API_KEY "
                "(or GROQ_API_KEY, MISTRAL_API_KEY, ...) and restart Helix, or start it "
                "with --config helix.yaml.",
                code="no_providers_configured",
            )
        raise HelixError(
            ErrorKind.MODEL_NOT_FOUND,
            f"The model '{model}' does not exist or is not configured on this gateway. "
            f"Use one of the models listed at GET /v1/models, or 'provider/model' with one of "
            f"the configured providers ({', '.join(self.providers)}).",
            param="model",
        )

