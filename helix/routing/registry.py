"""Model name -> deployments, built once from config.

Lookup rules (issue 2): an exact public model name wins; otherwise
``provider/model`` selects the provider by name, using the listed entry when
there is one and the remainder as the provider's model id when there is not
(so ``openai/gpt-5`` works the day OpenAI ships it).  Anything else is a 404
``model_not_found``.
"""

from __future__ import annotations

from helix.client import Timeouts, parse_url
from helix.config import Config, ProviderConfig
from helix.errors import ErrorKind, HelixError
from helix.providers import catalog
from helix.providers.base import Deployment


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
        self.headers = spec.headers(cfg)
        self.adapter = spec.adapter
        self.adapter_for = spec.adapter_for
        self.query = spec.query(cfg)
        self.signer = spec.signer(cfg) if spec.signer is not None else None
        up = config.upstream
        total = cfg.timeout if cfg.timeout is not None else up.request_timeout
        self.timeouts = Timeouts(
            connect=float(up.connect_timeout),
            first_byte=float(up.first_byte_timeout),
            read=float(up.read_timeout),
            total=float(total) if total is not None else None,
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


class ModelRegistry:
    # Deployments made on the fly for "provider/unlisted-model" are cached, but
    # only this many, so a client cannot grow worker memory without bound.
    MAX_DYNAMIC = 1024

    def __init__(self, config: Config) -> None:
        self.config = config
        self.providers: dict[str, ProviderEndpoint] = {}
        self.by_name: dict[str, list[Deployment]] = {}
        self._dynamic = 0
        for pcfg in config.providers:
            ep = ProviderEndpoint(pcfg, config)
            self.providers[pcfg.name] = ep
            for entry in pcfg.model_entries():
                dep = ep.deployment(entry.name, entry.id or entry.name)
                self.by_name.setdefault(entry.name, []).append(dep)
        for i, dep in enumerate(self.all_deployments()):
            dep.index = i

    def all_deployments(self) -> list[Deployment]:
        return [d for ep in self.providers.values() for d in ep.deployments.values()]

    def resolve(self, model: str) -> list[Deployment]:
        """Candidate deployments for a requested model name, best first."""
        deps = self.by_name.get(model)
        if deps is not None:
            return deps
        prefix, sep, rest = model.partition("/")
        ep = self.providers.get(prefix) if sep else None
        if ep is not None and rest:
            listed = ep.deployments.get(rest)
            if listed is not None:
                return [listed]
            cache = len(ep.deployments) < self.MAX_DYNAMIC + len(ep.cfg.models)
            return [ep.deployment(rest, rest, cache=cache)]
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

