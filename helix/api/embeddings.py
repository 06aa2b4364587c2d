"""OpenAI Embeddings (``POST /v1/embeddings``): native for the OpenAI family, translated
by every other adapter's embeddings translation."""

from __future__ import annotations

from helix.api.base import Api
from helix.errors import ErrorKind, HelixError
from helix.schema.openai import embeddings_as_base64, embeddings_request_decoder
from helix.schema.usage import Usage, checked_openai_usage, read_openai_usage

__all__ = ["EMBEDDINGS", "EmbeddingsApi"]


class EmbeddingsApi(Api):
    name = "embeddings"
    paths = ("/v1/embeddings", "/embeddings")
    decoder = embeddings_request_decoder
    streams = False
    cache_defaults = {"encoding_format": "float"}

    def upstream_request(self, ctx, dep):
        return dep.adapter.embeddings_request(dep, ctx.view, ctx.exchange.request.body)

    def sink(self, ctx, dep=None):
        raise HelixError(ErrorKind.INTERNAL, "embeddings are never streamed")

    def stream_relay(self, ctx, dep, sink):
        raise HelixError(ErrorKind.INTERNAL, "embeddings are never streamed")

    def translate_response(self, dep, body: bytes, ctx=None) -> tuple[bytes, Usage | None]:
        body = dep.adapter.embeddings_response(dep, body)
        if ctx is not None and ctx.view.encoding_format == "base64":
            body = embeddings_as_base64(body)
        return body, self.native_usage(body)

    # The reader itself, not a method around it: one Python frame fewer per answer.
    native_usage = staticmethod(read_openai_usage)
    native_check = staticmethod(checked_openai_usage)

    def cache_complete(self, stream: bytes) -> bool:
        return False  # never a stream

    def cache_replay(self, ctx, stream_stored: bool, body: bytes) -> bytes:
        return body


EMBEDDINGS = EmbeddingsApi()
