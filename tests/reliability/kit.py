"""Shared helpers for the reliability tests: raw HTTP, worker memory, fd counts."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import time

MI = 1024 * 1024
GATEWAY_KEY = "gw-reliability-key-0001"


def pss(pid: int) -> int:
    """Proportional set size of one process, in bytes (Linux smaps_rollup)."""
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no Pss for {pid}")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_pss(pid: int, rounds: int = 6, pause: float = 0.2) -> int:
    """The lowest PSS over a short idle period (freed buffers are unmapped lazily)."""
    best = pss(pid)
    for _ in range(rounds):
        time.sleep(pause)
        best = min(best, pss(pid))
    return best


def request(
    port: int,
    body: bytes | str | None,
    *,
    path: str = "/v1/chat/completions",
    method: str = "POST",
    headers: dict | None = None,
    key: str | None = GATEWAY_KEY,
    timeout: float = 30.0,
) -> tuple[int, dict, bytes]:
    h = {"content-type": "application/json"}
    if key:
        h["authorization"] = f"Bearer {key}"
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def chat_body(model: object, size: int = 0, **extra) -> bytes:
    doc = {"model": model, "messages": [{"role": "user", "content": "x" * max(size, 1)}], **extra}
    return json.dumps(doc).encode()


def send_and_vanish(port: int, body: bytes, wait: float = 0.3, key: str = GATEWAY_KEY) -> None:
    """Send a whole request, then close the socket without reading the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        time.sleep(wait)
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
