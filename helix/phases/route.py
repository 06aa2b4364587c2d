"""route: requested model -> candidate deployments, and the one for the first attempt.

The balancer decides synchronously (no await): ``ctx.candidates`` is the
model's deployment list, ``ctx.deployment`` the one the strategy and the
health table pick.  The route phase also carries ``wrap_forward``: the
pipeline uses it to put the attempt loop (in-flight and latency bookkeeping,
health events, and -- when ``resilience`` is configured -- retries and
fallbacks) around the forward phase.
"""

from __future__ import annotations

import time

from helix.pipeline.context import RequestContext
from helix.routing.balancer import Balancer, install
from helix.routing.registry import ModelRegistry
from helix.routing.resilience import Policy


def make_route(registry: ModelRegistry, worker=None, metrics=None):
    resolve = registry.resolve
    by_name = registry.by_name  # built once with the registry, never rebound
    config = registry.config
    balancer = install(
        Balancer(
            registry,
            config,
            shm=worker.shm if worker is not None else None,
            row=worker.index if worker is not None else 0,
        )
    )
    select = balancer.select
    clock = time.monotonic
    policy = Policy(config.resilience) if config.resilience is not None else None
    fallbacks = policy.fallbacks if policy is not None else {}

    affine = balancer.affine if balancer.affinity else None

    def route(ctx: RequestContext) -> None:
        model = ctx.view.model
        cands = by_name.get(model)  # a configured name: resolve()'s first answer, inline
        if cands is None:
            cands = resolve(model)
        ctx.candidates = cands
        key = None
        if affine is not None and affine(cands):
            # Prompt-cache affinity: the prefix key of the client's body (0: none).
            key = ctx.prefix = ctx.api.prefix_key(ctx) or None
        # With a fallback model left, an all-unavailable list yields None (go
        # straight to the fallback); without one, the strategy runs anyway.
        ctx.deployment = select(cands, clock(), ctx.view, None, model not in fallbacks, key)

    def wrap_forward(forward):
        from helix.pipeline.runner import make_attempts

        return make_attempts(forward, balancer, policy, resolve, clock, metrics)

    route.wrap_forward = wrap_forward
    route.balancer = balancer
    return route
