"""Helicone export: each request/response posted to Helicone's async logging API.

With ``observability.helicone.api_key`` set, the ``record_helicone`` recorder
queues a small record per request (references to the body bytes, no copy or
JSON work); the exporter task builds Helicone's ``HeliconeAsyncLogRequest``
documents and POSTs them, ``batch_size`` at a time over keep-alive
connections, to ``<base_url>/custom/v1/log`` with ``Authorization: Bearer
<api_key>``.  Properties: the configured ``properties`` and the client's
``Helicone-Property-*`` headers, plus ``Helicone-User-Id``, go in the log's
``meta`` (and as headers of the log request).  The queue is bounded by count
and by body bytes; records that do not fit, or still fail after the retries,
are dropped and counted (``helix_helicone_records_dropped_total``).

Nothing secret is exported: the client's headers other than ``Helicone-*``
are never read, and the provider URL is sent without its query (a Gemini key
lives there).
"""

from __future__ import annotations

import time

import msgspec

_encode = msgspec.json.Encoder().encode
_PROPERTY = "helicone-property-"


def _raw_json(body: bytes | None):
    """``body`` embedded as is when it is valid JSON, else None."""
    if not body:
        return None
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):  # too deep: refused with a 400 already
        return None
    return msgspec.Raw(body)


def _timing(t: float) -> dict:
    sec = int(t)
    return {"seconds": sec, "milliseconds": int((t - sec) * 1000)}


def make_helicone_recorder(exporter, properties: dict[str, str], bodies: bool):
    offer = exporter.offer
    monotonic = time.monotonic
    wall = time.time
    static_meta = {f"Helicone-Property-{k}": v for k, v in properties.items()}

    def record_helicone(ctx) -> None:
        ex = ctx.exchange
        req = ex.request
        meta = None
        for k, v in req.headers.items():
            if k.startswith("helicone-"):
                if meta is None:
                    meta = dict(static_meta)
                if k.startswith(_PROPERTY):
                    meta["Helicone-Property-" + k[len(_PROPERTY):]] = v
                elif k == "helicone-user-id":
                    meta["Helicone-User-Id"] = v
        if meta is None:
            meta = static_meta
        end = monotonic()
        offset = wall() - end
        req_body = req.body if bodies else None
        resp_body = ctx.response_body if bodies else None
        size = (len(req_body) if req_body else 0) + (len(resp_body) if resp_body else 0)
        offer((
            ctx.api.name, req.path, ctx.view, ctx.deployment, ctx.status, ctx.usage, ctx.cost,
            ctx.started + offset, end + offset,
            (ctx.first_chunk_at - ctx.started) * 1000.0 if ctx.first_chunk_at else None,
            req_body, resp_body, meta, ctx.request_id,
            ctx.error,
        ), size)

    return record_helicone


# The provider path Helicone shows for each client API (the OpenAI-shaped one it knows).
_PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings", "messages": "/v1/messages",
          "responses": "/responses"}


def build_document(rec) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """One HeliconeAsyncLogRequest (JSON) and the headers of its log request."""
    (endpoint, _path, view, dep, status, usage, cost, start, end, ttft_ms, req_body, resp_body,
     meta, request_id, error) = rec
    model = getattr(view, "model", None)
    if dep is not None:
        o = dep.origin
        default_port = {"https": 443, "http": 80}.get(o.scheme)
        port = "" if o.port == default_port else f":{o.port}"
        suffix = _PATHS.get(endpoint, "/chat/completions")
        url = f"{o.scheme}://{o.host}{port}{dep.base_path}{suffix}"
    else:
        url = "custom-model-nopath"
    request_json = _raw_json(req_body) or {"model": model}
    response_json = _raw_json(resp_body)
    if response_json is None:
        response_json = {"model": dep.model_id if dep is not None else model}
        if usage is not None:
            response_json["usage"] = usage.to_openai()
        if error is not None:
            response_json["error"] = {"message": str(error), "type": error.kind.name.lower()}
    meta = dict(meta)
    if request_id:
        meta["Helix-Request-Id"] = request_id
    if cost is not None:
        meta["Helicone-Property-Helix-Cost-Usd"] = f"{cost:.10f}"
    if dep is not None:
        meta["Helicone-Property-Helix-Provider"] = dep.provider
    timing = {"startTime": _timing(start), "endTime": _timing(end)}
    if ttft_ms is not None:
        timing["timeToFirstToken"] = round(ttft_ms, 3)
    doc = {
        "providerRequest": {"url": url, "json": request_json, "meta": meta},
        "providerResponse": {"json": response_json, "status": status or 0, "headers": {}},
        "timing": timing,
    }
    headers = [
        (k.encode("latin-1", "replace"), v.encode("latin-1", "replace"))
        for k, v in meta.items()
        if k.startswith("Helicone-")
    ]
    return _encode(doc), headers


def log_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/custom/v1/log"


def build_helicone(config, metrics):
    """(recorder, exporter) for the Helicone export, or None when no api_key is set."""
    hcfg = config.observability.helicone
    if hcfg is None or not hcfg.api_key:
        return None
    import asyncio

    from helix.observe.export import BatchExporter, ExportError, HttpSender

    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer " + hcfg.api_key.encode("latin-1")),
    ]
    sender = HttpSender(log_url(hcfg.base_url), headers, float(hcfg.timeout),
                        connections=min(hcfg.batch_size, 8))

    async def post(rec) -> bool:
        """True when the record should be retried."""
        body, extra = build_document(rec)
        try:
            await sender.post(body, extra)
        except ExportError as exc:
            if not exc.retry:
                raise
            return True
        return False

    async def send(batch: list) -> tuple[list, int]:
        results = await asyncio.gather(*(post(r) for r in batch), return_exceptions=True)
        failed = [rec for rec, res in zip(batch, results, strict=True) if res is True]
        lost = sum(1 for res in results if isinstance(res, BaseException))
        if failed and len(failed) == len(batch):
            raise ExportError(f"{sender.label}: collector unavailable")
        return failed, lost

    def on_count(outcome: str, n: int) -> None:
        if metrics is not None:
            metrics.add(f"helix_helicone_records_{outcome}_total", (), float(n))

    exporter = BatchExporter(
        "helicone", send, max_queue=hcfg.max_queue, batch_size=hcfg.batch_size,
        interval=float(hcfg.flush_interval), max_retries=hcfg.max_retries,
        max_bytes=hcfg.max_queue_bytes, on_count=on_count,
    )
    exporter.sender = sender
    exporter.url = sender.label
    recorder = make_helicone_recorder(exporter, hcfg.properties, hcfg.bodies)
    return recorder, exporter
