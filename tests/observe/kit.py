"""Stand-ins shared by the observability unit tests and the recorder benchmark."""

from __future__ import annotations

import time
from types import SimpleNamespace

from helix import config as cfgmod
from helix.api import CHAT
from helix.master.shm import WORKER_FIELDS, WORKER_TABLE, SharedMemory, ShmLayout
from helix.observe import metrics as m
from helix.schema.usage import Usage


def obs_config(**observability) -> cfgmod.Config:
    tree = {"providers": [], "observability": observability}
    return cfgmod._convert(tree, "test")


def make_shm(config, capacity: int = 4) -> SharedMemory:
    layout = ShmLayout()
    layout.alloc(WORKER_TABLE, rows=capacity, cols=len(WORKER_FIELDS), dtype="Q")
    layout.alloc(m.RESTARTS, rows=capacity, cols=1, dtype="Q")
    m.plan_shm(layout, config, capacity)
    return SharedMemory(layout)


def worker(shm, index: int = 0):
    return SimpleNamespace(shm=shm, index=index, number=index, generation=1, pid=1000 + index)


class FakeRequest:
    def __init__(self, headers=None, body=b'{"model":"gpt-4o-mini","messages":[]}'):
        self.method = "POST"
        self.path = "/v1/chat/completions"
        self.query = ""
        self.headers = headers or {}
        self.body = body
        self.client = ("127.0.0.1", 5555)


class FakeExchange:
    def __init__(self, headers=None):
        self.request = FakeRequest(headers)
        self.committed = False
        self.responses = []

    def respond(self, status, headers, body):
        self.committed = True
        self.responses.append((status, list(headers), body))


def fake_dep(provider="mock", model_id="gpt-4o-mini", ptype="openai_compatible"):
    origin = SimpleNamespace(scheme="http", host="127.0.0.1", port=1)
    return SimpleNamespace(provider=provider, model_id=model_id, provider_type=ptype,
                           model=model_id, origin=origin, base_path="", index=0)


def fake_ctx(status=200, stream=False, **kw):
    now = time.monotonic()
    ctx = SimpleNamespace(
        exchange=FakeExchange(kw.pop("headers", None)),
        api=CHAT,
        started=now - 0.25,
        view=SimpleNamespace(model="gpt-4o-mini", stream=stream),
        candidates=[],
        deployment=fake_dep(),
        status=status,
        committed=stream,
        usage=Usage(input=12, output=30),
        cost=0.0000123,
        head_at=now - 0.1,
        first_chunk_at=(now - 0.05) if stream else 0.0,
        error=None,
        upstream_started=now - 0.2,
        attempts=1,
        upstream_headers=None,
        response_body=None if stream else b'{"id":"c1","model":"gpt-4o-mini-2024",'
        b'"choices":[{"index":0,"finish_reason":"stop","message":{"content":"hi"}}]}',
        trace=None,
        request_id=None,
        cache=None,
        response_headers=[],
    )
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx
