"""The client APIs Helix serves: one object per dialect (see :mod:`helix.api.base`)."""

from __future__ import annotations

from helix.api.base import Api
from helix.api.chat import CHAT
from helix.api.embeddings import EMBEDDINGS
from helix.api.messages import COUNT_TOKENS, MESSAGES
from helix.api.responses import RESPONSES

__all__ = ["APIS", "CHAT", "COUNT_TOKENS", "EMBEDDINGS", "MESSAGES", "RESPONSES", "Api",
           "by_name"]

APIS: tuple[Api, ...] = (CHAT, EMBEDDINGS, MESSAGES, COUNT_TOKENS, RESPONSES)


def by_name(name: str) -> Api:
    for api in APIS:
        if api.name == name:
            return api
    raise KeyError(name)
