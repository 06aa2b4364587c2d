"""route: requested model -> candidate deployments (best first)."""

from __future__ import annotations

from helix.pipeline.context import RequestContext
from helix.routing.registry import ModelRegistry


def make_route(registry: ModelRegistry):
    resolve = registry.resolve

    def route(ctx: RequestContext) -> None:
        ctx.candidates = resolve(ctx.view.model)

    return route
