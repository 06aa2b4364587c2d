"""An upstream that lies: a tiny scriptable HTTP/1.1 server for fault tests.

Runs its own event loop in a daemon thread on 127.0.0.1 (a free port).  The
behaviour comes from the ``x-liar`` request header, which Helix sends because
the provider's config sets it in ``headers:``.
"""

from __future__ import annotations

import asyncio
import json
import threading

OK = json.dumps({
    "id": "chatcmpl-liar", "object": "chat.completion", "created": 1, "model": "liar",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()


BIG = json.dumps({
    "id": "chatcmpl-big", "object": "chat.completion", "created": 1, "model": "liar",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "z" * 3_000_000},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 750000, "total_tokens": 750011},
}).encode()


def big_reply(chunked: bool) -> bytes:
    if not chunked:
        return _reply(b"200 OK", BIG)
    out = [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
           b"transfer-encoding: chunked\r\n\r\n"]
    for i in range(0, len(BIG), 65536):
        piece = BIG[i:i + 65536]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def _reply(status: bytes, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype
            + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)


class Liar:
    def __init__(self) -> None:
        self.port = 0
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Liar:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("liar did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start():
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get(b"content-length", b"0"))
                if n:
                    await reader.readexactly(n)
                self.requests += 1
                if not await self._answer(headers.get(b"x-liar", b"ok"), headers, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _answer(self, mode: bytes, headers: dict, w: asyncio.StreamWriter) -> bool:
        if mode == b"ok":
            w.write(_reply(b"200 OK", OK))
        elif mode == b"echo401":  # some providers quote the key they were sent
            key = (headers.get(b"authorization") or headers.get(b"x-api-key") or b"").decode()
            body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}",
                                         "type": "invalid_request_error",
                                         "code": "invalid_api_key"}}).encode()
            w.write(_reply(b"401 Unauthorized", body))
        elif mode == b"echo500":  # an internal error page dumping the request headers
            dump = b"\n".join(k + b": " + v for k, v in headers.items())
            w.write(_reply(b"500 Internal Server Error", dump, b"text/plain"))
        elif mode == b"status999":
            w.write(_reply(b"999 Weird", OK))
        elif mode == b"html200":
            w.write(_reply(b"200 OK", b"<html><body>Welcome to the portal</body></html>",
                           b"text/html; charset=utf-8"))
        elif mode == b"notjson200":
            w.write(_reply(b"200 OK", b"this is not json {"))
        elif mode == b"deep200":
            w.write(_reply(b"200 OK", b'{"a":' * 3000 + b"1" + b"}" * 3000))
        elif mode == b"huge200":  # bigger than max_response_bytes, declared up front
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: 200000000\r\n\r\n{\"x\":\"")
            await w.drain()
            await asyncio.sleep(0.2)
            return False
        elif mode == b"hugechunked":  # bigger than max_response_bytes, chunked
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"transfer-encoding: chunked\r\n\r\n")
            piece = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
            for _ in range(64):
                w.write(piece)
                await w.drain()
            w.write(b"0\r\n\r\n")
        elif mode in (b"big200", b"bigchunked"):  # a valid 3 MB completion, usage at its end
            w.write(big_reply(chunked=mode == b"bigchunked"))
        elif mode == b"trickle":  # a head, then a byte every 50 ms, for ever
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: 1000000\r\n\r\n")
            while True:
                w.write(b" ")
                await w.drain()
                await asyncio.sleep(0.05)
        elif mode in (b"deepsse0", b"deepsse1"):  # an SSE stream with an event nested deep
            ok = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,'
                  b'"model":"liar","choices":[{"index":0,"delta":{"role":"assistant",'
                  b'"content":"fine"},"finish_reason":null}]}\n\n')
            deep = (b'data: {"id":"c1","choices":[],"usage":' + b'{"a":' * 3000 + b"1"
                    + b"}" * 3000 + b"}\n\n")
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n")
            for event in ((deep,) if mode == b"deepsse0" else (ok, deep)):
                w.write(b"%x\r\n%s\r\n" % (len(event), event))
                await w.drain()
                await asyncio.sleep(0.05)  # each event its own read: the first, then later
            w.write(b"0\r\n\r\n")
        elif mode == b"garbage":
            w.write(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
            return False
        elif mode == b"close":
            return False
        else:
            w.write(_reply(b"400 Bad Request", b'{"error":{"message":"unknown liar mode"}}'))
        await w.drain()
        return True
