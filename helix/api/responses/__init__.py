"""OpenAI Responses (``/v1/responses``): the Agents SDK, Codex and new OpenAI-SDK code.

Native on OpenAI and Azure: the body goes upstream as sent (model resolved), the
Response and its event stream come back as sent, stored responses live at the
provider, and Helix remembers which provider holds each id so that ``GET``,
``DELETE``, ``input_items`` and ``previous_response_id`` go back to it.

Every other provider is reached through the hub (:mod:`.request`) and answers
as a Response or the Responses event stream (:mod:`.response`).  Conversation
state is Helix's own (:mod:`.store`): ``store`` (default true) keeps the
Response and its input items, tenant-scoped, so ``previous_response_id``
continues it on any worker (SQLite) or instance (Redis); an id Helix does not
know is a 404, never a silently shortened conversation.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import msgspec

from helix.api.base import Api
from helix.api.prefix import responses_key
from helix.api.responses import replay
from helix.api.responses.request import input_items, to_chat
from helix.api.responses.response import (
    ResponsesSink,
    build_response,
    new_id,
    response_skeleton,
)
from helix.api.responses.store import Record
from helix.errors import ErrorKind, HelixError
from helix.schema.openai import ChatRequestView, StreamOptions
from helix.schema.responses import responses_request_decoder
from helix.schema.usage import CACHED, REASONING, Usage

__all__ = ["RESPONSES", "ResponsesApi", "make_resource_handler"]

log = logging.getLogger("helix.responses")

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_COMPLETION_TOKENS = frozenset({"openai", "azure"})
_FINAL = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')
MAX_CHAIN = 1000  # turns walked back through previous_response_id
# A response is stored just after its answer went out: a continuation that arrives on
# another worker within that moment looks again before it says 404.
LATE_WRITE_WAIT = (0.01, 0.02, 0.04, 0.08)


class _Id(msgspec.Struct):
    """A Response reduced to what Helix reads: its id and usage."""

    id: str | None = None
    usage: _ResponseUsage | None = None


class _Details(msgspec.Struct):
    cached_tokens: int = 0
    reasoning_tokens: int = 0


class _ResponseUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int | None = None
    input_tokens_details: _Details | None = None
    output_tokens_details: _Details | None = None

    def usage(self) -> Usage:
        cached = self.input_tokens_details.cached_tokens if self.input_tokens_details else 0
        reasoning = (self.output_tokens_details.reasoning_tokens
                     if self.output_tokens_details else 0)
        return Usage(input=self.input_tokens, output=self.output_tokens,
                     cache_read=min(cached, self.input_tokens), reasoning=reasoning,
                     total=self.total_tokens, reported=CACHED | REASONING)


_id_decoder = msgspec.json.Decoder(_Id)


def tenant(credential: str | None) -> str:
    """Whose stored responses these are: the client's credential, hashed (never kept raw)."""
    if not credential:
        return ""
    return hashlib.sha256(credential.encode("utf-8", "replace")).hexdigest()[:32]


def not_found(rid: str, param: str | None = None) -> HelixError:
    what = "Previous response" if param else "Response"
    return HelixError(ErrorKind.NOT_FOUND, f"{what} with id '{rid}' not found.", param=param,
                      code="previous_response_not_found" if param else "not_found")


class Conversation:
    """One /v1/responses request's state (``ctx.hub``).  The body is decoded only when a
    translation or a stored conversation needs it: a native request never pays for it."""

    __slots__ = ("_credential", "_doc", "_items", "_tenant", "body", "chat", "created", "final",
                 "history", "native_previous", "rid", "store")

    def __init__(self, body: bytes, credential: str | None, store: bool) -> None:
        self.body = body
        self._credential = credential
        self._tenant: str | None = None
        self.store = store
        self.rid = new_id("resp_")
        self.created = time.time()
        self.history: list[dict] | None = None  # earlier turns Helix keeps, oldest first
        self.native_previous: str | None = None  # the provider holding previous_response_id
        self.chat: dict | None = None
        self.final: dict | None = None
        self._doc: dict | None = None
        self._items: list[dict] | None = None

    @property
    def tenant(self) -> str:
        """Whose stored responses these are (hashed only when the store is used)."""
        if self._tenant is None:
            self._tenant = tenant(self._credential)
        return self._tenant

    @property
    def doc(self) -> dict:
        if self._doc is None:
            self._doc = _decode(self.body)
        return self._doc

    @property
    def items(self) -> list[dict]:
        """This request's input items, with ids (what input_items lists)."""
        if self._items is None:
            self._items = input_items(self.doc)
        return self._items


class ResponsesApi(Api):
    name = "responses"
    paths = ("/v1/responses", "/responses")
    decoder = responses_request_decoder

    def __init__(self) -> None:
        super().__init__()
        self.store = None  # set by the app (helix/api/responses/store.py)

    # -- per request --------------------------------------------------------------------
    def prefix_key(self, ctx) -> int:
        return responses_key(ctx.exchange.request.body, ctx.view)

    def _conversation(self, ctx) -> Conversation:
        conv = ctx.hub
        if conv is None:
            request = ctx.exchange.request
            keep = ctx.view.store is not False and self.store.kind != "none"
            conv = ctx.hub = Conversation(request.body, self.credential(request.headers), keep)
        return conv

    def local_phase(self):
        """Before ``forward``: resolve ``previous_response_id`` -- the provider that holds
        it (native), or the earlier turns Helix keeps (translated); 404 when unknown."""
        api = self

        async def continue_conversation(ctx) -> bool:
            prev = ctx.view.previous_response_id
            if not prev:
                return False  # nothing to resolve (and a native request pays nothing here)
            conv = api._conversation(ctx)
            record = await api._get(prev, conv.tenant)
            native = [d for d in ctx.candidates if api.name in d.adapter.native]
            if record is None:
                if native:
                    ctx.candidates = native  # the provider may know it: it answers 404 if not
                    if ctx.deployment not in native:
                        ctx.deployment = native[0]
                    return False
                raise not_found(prev, "previous_response_id")
            if record.provider is not None:
                held = [d for d in native if d.provider == record.provider]
                if not held:
                    raise HelixError(
                        ErrorKind.INVALID_REQUEST,
                        f"Response '{prev}' is held by the provider '{record.provider}', which "
                        f"does not serve '{ctx.view.model}': continue it with one of its models.",
                        param="previous_response_id",
                    )
                conv.native_previous = record.provider
                ctx.candidates = held
                if ctx.deployment not in held:
                    ctx.deployment = held[0]
                return False
            conv.history = await api._history(record, conv.tenant)
            return False

        return continue_conversation

    async def _get(self, rid: str, owner: str) -> Record | None:
        record = await self.store.get(rid, owner)
        if record is None and rid.startswith("resp_"):
            for delay in LATE_WRITE_WAIT:
                await asyncio.sleep(delay)
                record = await self.store.get(rid, owner)
                if record is not None:
                    break
        return record

    async def _history(self, record: Record, owner: str) -> list[dict]:
        turns = []
        n = 0
        while record is not None:
            turns.append(record)
            n += 1
            if record.previous is None or n >= MAX_CHAIN:
                break
            prev = record.previous
            record = await self.store.get(prev, owner)
            if record is None:
                raise not_found(prev, "previous_response_id")
        items: list[dict] = []
        for r in reversed(turns):
            items.extend(r.input_items)
            items.extend((r.response or {}).get("output") or ())
        return items

    # -- native: OpenAI, Azure --------------------------------------------------------------
    def native_request(self, ctx, dep):
        conv = self._conversation(ctx)
        request = ctx.exchange.request
        if conv.history is None:
            return dep.adapter.native_request(self.name, dep, ctx.view, request)
        # The earlier turns are Helix's: the provider gets the whole conversation.
        doc = dict(conv.doc)
        doc.pop("previous_response_id", None)
        doc["input"] = [*conv.history, *conv.items]
        doc["model"] = dep.model_id
        view = ChatRequestView(model=dep.model_id, messages=[])
        return dep.adapter.native_request(self.name, dep, view, _Body(request, _encode(doc)))

    def native_usage(self, body: bytes) -> Usage | None:
        try:
            usage = _id_decoder.decode(body).usage
        except msgspec.DecodeError:
            return None
        return usage.usage() if usage is not None else None

    # -- translated: through the chat hub ---------------------------------------------------
    def _chat(self, ctx) -> dict:
        conv = self._conversation(ctx)
        if conv.chat is None:
            conv.chat = to_chat(conv.doc, conv.history or [], conv.items)
        return conv.chat

    def _chat_view(self, ctx, dep) -> ChatRequestView:
        chat = self._chat(ctx)
        stream = bool(chat.get("stream"))
        return ChatRequestView(
            model=dep.model_id, messages=[], stream=stream,
            stream_options=StreamOptions(include_usage=True) if stream else None,
            max_tokens=chat.get("max_tokens"),
        )

    def upstream_request(self, ctx, dep):
        if self._conversation(ctx).native_previous is not None:
            raise HelixError(ErrorKind.INTERNAL, "a native conversation reached a translation")
        doc = dict(self._chat(ctx))
        doc["model"] = dep.model_id
        if dep.provider_type in _COMPLETION_TOKENS and "max_tokens" in doc:
            doc["max_completion_tokens"] = doc.pop("max_tokens")
        return dep.adapter.chat_request_doc(dep, self._chat_view(ctx, dep), doc)

    def _skeleton(self, ctx, dep) -> dict:
        conv = self._conversation(ctx)
        return response_skeleton(conv.rid, conv.created, dep.model, conv.doc)

    def sink(self, ctx, dep=None) -> ResponsesSink:
        sink = ResponsesSink(self._skeleton(ctx, dep))
        self._conversation(ctx).final = None
        sink.on_end = self._finished(ctx)
        return sink

    def _finished(self, ctx):
        def done(response: dict) -> None:
            self._conversation(ctx).final = response
        return done

    def stream_relay(self, ctx, dep, sink):
        return dep.adapter.stream_relay(dep, self._chat_view(ctx, dep), sink)

    def translate_response(self, dep, body: bytes, ctx=None) -> tuple[bytes, Usage | None]:
        doc, usage = dep.adapter.chat_document(dep, body)
        response = build_response(doc, self._skeleton(ctx, dep), usage)
        self._conversation(ctx).final = response
        return _encode(response), usage

    # -- storing (a recorder: never raises) -------------------------------------------------
    def recorder(self):
        """The recorder that stores this request's response (off the response path)."""
        api = self
        tasks: set[asyncio.Task] = set()

        def remember(ctx) -> None:
            write = what_to_store(ctx)
            if write is None:
                return
            task = asyncio.get_running_loop().create_task(api._put(*write))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def what_to_store(ctx):
            if (ctx.error is not None or ctx.status != 200 or ctx.cache == "hit"
                    or ctx.deployment is None or ctx.view is None
                    or ctx.view.store is False or api.store.kind == "none"):
                return None
            conv = api._conversation(ctx)  # a native request's is made here, after its answer
            dep = ctx.deployment
            if api.name in dep.adapter.native:
                rid = getattr(ctx.relay, "response_id", None)
                if rid is None and ctx.response_body:
                    try:
                        rid = _id_decoder.decode(ctx.response_body).id
                    except msgspec.DecodeError:
                        rid = None
                if not rid:
                    return None
                return rid, Record(tenant=conv.tenant, created_at=conv.created,
                                   provider=dep.provider)
            final = conv.final
            if final is None or final.get("status") not in ("completed", "incomplete"):
                return None
            return final["id"], Record(
                tenant=conv.tenant, created_at=conv.created, response=final,
                input_items=conv.items, previous=ctx.view.previous_response_id)

        remember.__name__ = "store_response"
        remember.tasks = tasks
        return remember

    async def _put(self, rid: str, record: Record) -> None:
        try:
            await self.store.put(rid, record)
        except Exception:  # a recorder never fails a request: the next lookup says 404
            log.exception("could not store response %s", rid)

    # -- cache --------------------------------------------------------------------------------
    def cache_complete(self, stream: bytes) -> bool:
        tail = stream[-4096:]
        return any(f in tail for f in _FINAL[:2])

    def cache_replay(self, ctx, stream_stored: bool, body: bytes) -> bytes:
        if ctx.view.stream:
            return body if stream_stored else replay.json_to_sse(body)
        return replay.sse_to_json(body) if stream_stored else body


class _Body:
    """A request with another body (headers, query as the client's)."""

    __slots__ = ("body", "headers", "query")

    def __init__(self, request, body: bytes) -> None:
        self.headers = request.headers
        self.query = request.query
        self.body = body


RESPONSES = ResponsesApi()


def make_resource_handler(registry, pool, keys=None):
    """``GET`` / ``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``.

    A response Helix stored is answered from the store (for its own tenant only); one a
    provider holds is fetched from that provider; an id Helix never saw goes to the only
    provider with a Responses API when there is exactly one, else it is a 404.
    """
    api = RESPONSES

    def providers_with_responses():
        return [ep for ep in registry.providers.values()
                if api.name in getattr(ep.adapter, "native", ())]

    async def from_provider(exchange, ep, path: str) -> None:
        from helix.phases.forward import response_headers

        dep = next(iter(ep.deployments.values()), None) or ep.deployment("_", "_", cache=False)
        request = exchange.request
        target = dep.adapter.resource_target(dep, path, request.query)
        resp = await pool.request(dep.origin, request.method.encode(), target,
                                  dep.static_headers, b"", dep.timeouts,
                                  verify_tls=dep.verify_tls)
        try:
            body = await resp.read()
            if resp.status >= 400:
                raise dep.adapter.error(dep, resp.status, resp.headers, body)
            exchange.respond(resp.status, response_headers(resp.headers, dep.route_headers), body)
        finally:
            resp.close()

    async def handle(exchange) -> None:
        request = exchange.request
        credential = api.credential(request.headers)
        if keys is not None and keys.verify_token(credential) is None:
            from helix.phases.authenticate import unauthorized

            raise unauthorized(credential)
        rest = request.path.split("/responses/", 1)[1].strip("/")
        rid, _, sub = rest.partition("/")
        if not rid or sub not in ("", "input_items") or (sub and request.method != "GET"):
            raise HelixError(ErrorKind.NOT_FOUND,
                             f"Unknown request URL: {request.method} {request.path}.")
        owner = tenant(credential)
        record = await api.store.get(rid, owner)
        if record is not None and record.provider is not None:
            ep = registry.providers.get(record.provider)
            if ep is None:
                raise not_found(rid)
            return await from_provider(exchange, ep, f"responses/{rest}")
        if record is None:
            eps = providers_with_responses()
            if len(eps) == 1:
                return await from_provider(exchange, eps[0], f"responses/{rest}")
            raise not_found(rid)
        json_type = [(b"content-type", b"application/json")]
        if request.method == "DELETE":
            await api.store.delete(rid, owner)
            body = {"id": rid, "object": "response", "deleted": True}
        elif sub == "input_items":
            items = list(record.input_items)
            if "order=asc" not in request.query:
                items.reverse()  # OpenAI lists input items newest first by default
            body = {"object": "list", "data": items, "has_more": False,
                    "first_id": items[0]["id"] if items else None,
                    "last_id": items[-1]["id"] if items else None}
        else:
            body = record.response
        exchange.respond(200, json_type, _encode(body))

    return handle
