"""The pipeline in-process: an App built from config, driven through a fake Exchange against
the mock provider, for every client API.  No Helix subprocess: the phases, the attempt loop,
error rendering per dialect and the stream sinks are exercised directly."""

from __future__ import annotations

import asyncio
import json

import pytest

from helix.config import load_file
from helix.errors import HelixError
from helix.mock import MockProcess
from helix.server.exchange import Request


class FakeExchange:
    """What a handler sees of a request: records every byte of the answer."""

    def __init__(self, method: str, path: str, body: bytes = b"", headers=None,
                 query: str = "") -> None:
        self.request = Request(method, path, query, dict(headers or {}), body, "1.1",
                               ("127.0.0.1", 1), True)
        self.committed = False
        self.finished = False
        self.client_gone = False
        self.status = 0
        self.headers: list = []
        self.chunks: list[bytes] = []

    def respond(self, status, headers, body) -> None:
        assert not self.committed
        self.committed = self.finished = True
        self.status, self.headers, self.chunks = status, headers, [body]

    def respond_error(self, err: HelixError, body: bytes | None = None) -> None:
        self.respond(err.status, [(b"content-type", b"application/json"), *err.headers],
                     err.to_json() if body is None else body)

    def start_stream(self, status, headers, first=b"", end=False) -> None:
        self.committed = True
        self.status, self.headers = status, headers
        self.chunks = [first] if first else []
        self.whole = end  # the whole stream in one write with its head
        if end:
            self.last = first
            self.finished = True

    async def send(self, data: bytes) -> None:
        self.chunks.append(data)

    def push(self, data: bytes) -> bool:  # forward's relay, called from the upstream's reads
        self.chunks.append(data)
        return False

    async def drain(self) -> None:
        raise AssertionError("push never asked to wait")

    def end_stream(self, last: bytes = b"") -> None:
        self.last = last  # written with the terminator, in one write
        if last:
            self.chunks.append(last)
        self.finished = True

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


@pytest.fixture(scope="module")
def mock():
    with MockProcess("--chunks", "3") as proc:
        yield proc


@pytest.fixture(scope="module")
def app_config(mock, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    path = state / "helix.yaml"
    path.write_text(f"""
providers:
  - {{name: oai, type: openai_compatible, base_url: "{mock.url}/v1", api_key: k,
     models: [gpt-4o-mini]}}
  - {{name: anthropic, type: anthropic, base_url: "{mock.url}", api_key: k,
     models: [claude-sonnet-4-5]}}
responses: {{state_dir: "{state}"}}
""")
    return load_file(str(path), env={})


def run(app_config, *exchanges: FakeExchange) -> list[FakeExchange]:
    from helix.app import App

    async def go():
        app = App(app_config)
        try:
            for ex in exchanges:
                try:
                    await app.handle(ex)
                except HelixError as err:  # raised before any pipeline: the server answers
                    ex.respond_error(err)
        finally:
            await app.close()

    asyncio.run(go())
    return list(exchanges)


def post(path: str, doc: dict, **headers) -> FakeExchange:
    return FakeExchange("POST", path, json.dumps(doc).encode(),
                        {"content-type": "application/json", **headers})


def test_every_api_answers_in_its_own_dialect_natively_and_translated(app_config):
    hi = [{"role": "user", "content": "hi"}]
    chat, chat_x, msg, msg_x, resp = run(
        app_config,
        post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": hi}),
        post("/v1/chat/completions", {"model": "claude-sonnet-4-5", "messages": hi}),
        post("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 9, "messages": hi}),
        post("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 9, "messages": hi}),
        post("/v1/responses", {"model": "claude-sonnet-4-5", "input": "hi"}),
    )
    for ex in (chat, chat_x, msg, msg_x, resp):
        assert ex.status == 200, (ex.request.path, ex.body)
    for ex in (chat, chat_x):
        doc = json.loads(ex.body)
        assert ex.status == 200 and doc["object"] == "chat.completion"
        assert doc["choices"][0]["message"]["content"] == "mock reply to: hi"
    for ex in (msg, msg_x):
        doc = json.loads(ex.body)
        assert ex.status == 200 and doc["type"] == "message"
        assert doc["content"][0]["text"] == "mock reply to: hi"
    doc = json.loads(resp.body)
    assert doc["object"] == "response" and doc["output"][0]["content"][0]["text"] == \
        "mock reply to: hi"


def test_errors_are_rendered_by_the_clients_api(app_config):
    chat, msg, resp = run(
        app_config,
        post("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user",
                                                                    "content": "x"}]}),
        post("/v1/messages", {"model": "nope", "max_tokens": 5, "messages": []}),
        post("/v1/responses", {"model": "claude-sonnet-4-5", "input": "x",
                               "previous_response_id": "resp_unknown"}),
    )
    assert chat.status == 404 and json.loads(chat.body)["error"]["code"] == "model_not_found"
    doc = json.loads(msg.body)
    assert msg.status == 404 and doc == {"type": "error", "error": {
        "type": "not_found_error", "message": doc["error"]["message"]}}
    assert resp.status == 404
    assert json.loads(resp.body)["error"]["code"] == "previous_response_not_found"


def test_streams_go_through_each_apis_sink(app_config):
    hi = [{"role": "user", "content": "hi"}]
    chat, msg, resp = run(
        app_config,
        post("/v1/chat/completions", {"model": "claude-sonnet-4-5", "messages": hi,
                                      "stream": True}),
        post("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 9, "messages": hi,
                              "stream": True}),
        post("/v1/responses", {"model": "claude-sonnet-4-5", "input": "hi", "stream": True}),
    )
    assert chat.body.endswith(b"data: [DONE]\n\n") and b"chat.completion.chunk" in chat.body
    assert msg.body.startswith(b"event: message_start") and b"event: message_stop" in msg.body
    assert resp.body.startswith(b"event: response.created")
    assert b"event: response.completed" in resp.body
    for ex in (chat, msg, resp):
        assert ex.header(b"content-type") == b"text/event-stream; charset=utf-8"
        assert ex.finished


def test_a_streams_last_bytes_go_out_with_its_terminator(app_config):
    # The mock writes its last event and the chunked terminator together: Helix relays
    # that last event in the same write as its own terminator, not as a chunk before it.
    (chat,) = run(app_config, post("/v1/chat/completions", {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
        "stream": True}))
    assert chat.finished and chat.last.endswith(b"data: [DONE]\n\n")
    assert chat.body.count(b"data: [DONE]") == 1
    # (here the whole stream came with the upstream's head: head, events and terminator
    # in one write)
    assert chat.whole and chat.last == chat.body


def test_a_paced_streams_last_event_goes_out_with_its_terminator(tmp_path):
    # Events 20 ms apart: the head goes first, the events as they come, and the last
    # one (which the mock writes together with its end) in one write with the terminator.
    with MockProcess("--chunk-interval-ms", "20") as paced:
        path = tmp_path / "helix.yaml"
        path.write_text(f"""
providers:
  - {{name: oai, type: openai_compatible, base_url: "{paced.url}/v1", api_key: k,
     models: [gpt-4o-mini]}}
responses: {{state_dir: "{tmp_path}"}}
""")
        (chat,) = run(load_file(str(path), env={}), post("/v1/chat/completions", {
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
            "stream": True}))
    assert chat.finished and not chat.whole
    assert chat.last.endswith(b"data: [DONE]\n\n") and len(chat.chunks) > 2
    assert chat.body.count(b"data: [DONE]") == 1


def test_provider_headers_kept_and_renamed_with_a_bounded_memo():
    # forward.response_headers decides per header name once (a bounded memo): which provider
    # headers reach the client, and the provider's request id as x-upstream-request-id.
    from helix.phases import forward

    up = [(b"content-type", b"application/json"), (b"date", b"x"), (b"server", b"m"),
          (b"content-length", b"574"), (b"x-request-id", b"r1"), (b"set-cookie", b"a=b"),
          (b"x-ratelimit-limit-requests", b"5"), (b"anthropic-ratelimit-tokens-limit", b"9"),
          (b"openai-version", b"2020"), (b"retry-after", b"1"), (b"request-id", b"r2")]
    route = [(b"x-helix-provider", b"p")]
    expected = [(b"content-type", b"application/json"), (b"x-upstream-request-id", b"r1"),
                (b"x-ratelimit-limit-requests", b"5"), (b"anthropic-ratelimit-tokens-limit", b"9"),
                (b"openai-version", b"2020"), (b"retry-after", b"1"),
                (b"x-upstream-request-id", b"r2"), (b"x-helix-provider", b"p")]
    for _ in range(2):  # decided, then memoised: the same answer
        assert forward.response_headers(up, route) == expected
    own = forward.response_headers(up, route, frozenset({b"request-id"}))
    assert own[-3:] == [(b"x-upstream-request-id", b"r2"), (b"request-id", b"r2"),
                        (b"x-helix-provider", b"p")]
    for i in range(3 * forward._KINDS_MAX):  # random names do not grow it without bound
        forward.response_headers([(b"x-rand-%d" % i, b"v")], [])
    assert len(forward._KINDS) <= forward._KINDS_MAX
    assert forward.response_headers([(b"x-ratelimit-new-%d" % 10**6, b"1")], []) == \
        [(b"x-ratelimit-new-1000000", b"1")]  # still decided right once the memo is full


# -- the attempt loop's bookkeeping ------------------------------------------------------------


def _attempt_loop(policy_cfg, outcomes, stream):
    """Run ``make_attempts`` once over stub halves; what the balancer was told."""
    from types import SimpleNamespace as NS

    from helix.errors import ErrorKind, Retry
    from helix.pipeline.runner import make_attempts
    from helix.routing.resilience import Policy

    now = [100.0]
    calls = []

    def clock():
        return now[0]

    def tick():  # the stub upstream's time: a quarter second each half
        now[0] += 0.25

    deps = [NS(provider=f"p{i}", model_id="m", model="m", name=f"p{i}") for i in range(3)]
    balancer = NS(begin=lambda d: calls.append(("begin", d.provider)),
                  end=lambda d, *a: calls.append(("end", d.provider, *a)),
                  end_lost=lambda d, *a: calls.append(("lost", d.provider, *a)),
                  select=lambda cands, t, view, tried, last, prefix: next(
                      d for d in cands if d not in tried),
                  _rnd=lambda: 0.5)
    todo = list(outcomes)

    async def prepare(ctx, dep):
        tick()
        if todo.pop(0) == "fail":
            raise HelixError(ErrorKind.UPSTREAM_STATUS, "upstream 503", status=503,
                             retry=Retry.YES)
        return NS(stream=stream, first_at=now[0], head_at=now[0])

    async def commit(ctx, p):
        tick()
        if stream:
            ctx.first_chunk_at = p.first_at
        ctx.status = 200

    async def forward(ctx):  # only its halves run
        raise AssertionError

    forward.prepare, forward.commit = prepare, commit
    policy = Policy(policy_cfg) if policy_cfg is not None else None
    phase = make_attempts(forward, balancer, policy, lambda name: deps, clock)
    ctx = NS(deployment=deps[0], candidates=deps, waited=0.0, error=None, first_chunk_at=0.0,
             started=100.0, view=NS(model="m"), response_headers=[], committed=False,
             exchange=NS(committed=False), trace=None, prefix=None, status=0)

    async def go():
        await phase(ctx)

    asyncio.run(go())
    return calls, ctx


@pytest.mark.parametrize("stream", [False, True])
def test_an_attempt_tells_the_balancer_the_same_with_or_without_the_retry_loop(stream):
    """Each attempt is bracketed by begin/end with its verdict and latency sample (time to
    the first chunk of a stream, else to the whole answer): the retry loop (a resilience
    section) reports a successful attempt exactly as the plain loop does, and a failed one
    with its verdict and no sample before the retry on another deployment."""
    from helix.config import ResilienceConfig, RetriesConfig
    from helix.routing.health import FAILURE, SUCCESS

    plain, _ = _attempt_loop(None, ["ok"], stream)
    retried, ctx = _attempt_loop(ResilienceConfig(retries=RetriesConfig(
        max_attempts=2, initial_delay=0.0)), ["ok"], stream)
    sample = 0.25 if stream else 0.5  # prepare's tick, and commit's (the whole answer)
    assert plain == retried == [("begin", "p0"), ("end", "p0", SUCCESS, 100.5, sample)]
    assert ctx.response_headers == [(b"x-helix-attempts", b"1")]

    calls, ctx = _attempt_loop(ResilienceConfig(retries=RetriesConfig(
        max_attempts=2, initial_delay=0.0)), ["fail", "ok"], stream)
    assert calls[:2] == [("begin", "p0"), ("end", "p0", FAILURE, 100.25, None, None)]
    assert calls[2][:2] == ("begin", "p1") and calls[3][:3] == ("end", "p1", SUCCESS)
    assert calls[3][4] == sample and ctx.deployment.provider == "p1"
    assert ctx.response_headers == [(b"x-helix-attempts", b"2")]


def test_the_runner_keeps_the_pipelines_order_and_rules(caplog):
    """Pipeline.run: phases in order, awaited or not; a truthy result ends the run; every
    recorder runs even when one fails or a phase raised; a HelixError before commit is
    answered in the API's dialect; any other error is a logged 500 with its traceback; an
    error after commit is raised."""
    from types import SimpleNamespace as NS

    from helix.errors import ErrorKind
    from helix.pipeline.runner import Pipeline

    seen = []
    api = NS(name="chat", error_body=lambda err: b'{"dialect":"chat"}')

    def phase(name, result=None, exc=None):
        def run(ctx):
            seen.append(name)
            if exc is not None:
                raise exc
            return result
        run.__name__ = name
        return run

    def async_phase(name, result=None):
        async def run(ctx):
            seen.append(name)
            return result
        run.__name__ = name
        return run

    def recorder(name, fail=False):
        def record(ctx):
            seen.append((name, ctx.status, ctx.error is not None))
            if fail:
                raise RuntimeError("recorder broke")
        return record

    def go(phases, commit=False):
        seen.clear()
        ex = FakeExchange("POST", "/v1/chat/completions")
        ex.committed = commit
        pipe = Pipeline(api, phases, [recorder("a", fail=True), recorder("b")])
        asyncio.run(pipe.run(ex))
        return ex

    go([phase("one"), async_phase("two", result=True), phase("three")])
    assert seen == ["one", "two", ("a", 0, False), ("b", 0, False)]
    ex = go([async_phase("one"), phase("two", exc=HelixError(ErrorKind.RATE_LIMITED, "slow"))])
    assert ex.status == 429 and ex.chunks == [b'{"dialect":"chat"}']
    assert seen == ["one", "two", ("a", 429, True), ("b", 429, True)]
    caplog.clear()
    ex = go([phase("one", exc=KeyError("boom"))])
    assert ex.status == 500 and seen[-1] == ("b", 500, True)
    tb = "".join(r.exc_text or "" for r in caplog.records if "internal error" in r.message)
    assert "KeyError: 'boom'" in tb
    assert any("recorder" in r.message and "failed" in r.message for r in caplog.records)
    with pytest.raises(KeyError):
        go([phase("one", exc=KeyError("late"))], commit=True)
    assert seen[-1] == ("b", 0, False)  # recorded all the same
