"""Raw sockets and h11 (an independent, strict HTTP/1.1 peer) against a running helix."""

import json
import socket

import h11

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "raw"}]})


def recv_until_closed_or(sock, predicate, limit=1 << 20):
    data = b""
    while not predicate(data) and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def connect(helix):
    s = socket.create_connection(("127.0.0.1", helix.port), timeout=10)
    return s


def test_malformed_request_gets_400_and_close(helix):
    with connect(helix) as s:
        s.sendall(b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")
        data = recv_until_closed_or(s, lambda d: False)
    assert data.startswith(b"HTTP/1.1 400")
    assert b'"error"' in data


def test_smuggling_cl_and_te_rejected(helix):
    req = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    with connect(helix) as s:
        s.sendall(req)
        data = recv_until_closed_or(s, lambda d: False)
    assert data.startswith(b"HTTP/1.1 400")


def test_pipelined_requests_answered_in_order(helix):
    one = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: {n}\r\n\r\n{b}"
    )
    reqs = b""
    for i in range(5):
        b = json.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"pipe{i}"}]}
        )
        reqs += one.format(n=len(b), b=b).encode()
    reqs += b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with connect(helix) as s:
        s.sendall(reqs)
        data = recv_until_closed_or(s, lambda d: False)
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(data)
    bodies = []
    for _ in range(6):
        conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
        conn.send(h11.EndOfMessage())
        status = None
        body = b""
        while True:
            ev = conn.next_event()
            if isinstance(ev, h11.Response):
                status = ev.status_code
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
        assert status == 200
        bodies.append(json.loads(body))
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            break
        conn.start_next_cycle()
    contents = [b["choices"][0]["message"]["content"] for b in bodies[:5]]
    assert contents == [f"mock reply to: pipe{i}" for i in range(5)]
    assert bodies[5] == {"status": "ok"}


def test_chunked_request_body(helix):
    b = BODY.encode()
    chunked = (
        b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b[:10], b[10:30], b[30:])) + b"0\r\n\r\n"
    )
    req = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n\r\n" + chunked
    )
    with connect(helix) as s:
        s.sendall(req)
        data = recv_until_closed_or(s, lambda d: False)
    assert data.startswith(b"HTTP/1.1 200")
    assert b"mock reply to: raw" in data


def test_expect_100_continue(helix):
    b = BODY.encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(b)
    )
    with connect(helix) as s:
        s.sendall(head)
        interim = recv_until_closed_or(s, lambda d: b"\r\n\r\n" in d)
        assert interim.startswith(b"HTTP/1.1 100")
        s.sendall(b)
        data = recv_until_closed_or(s, lambda d: False)
    assert b"HTTP/1.1 200" in interim + data


def test_h11_strict_peer_streamed_response(helix):
    body = json.dumps(
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "h11"}]}
    ).encode()
    conn = h11.Connection(h11.CLIENT)
    with connect(helix) as s:
        s.sendall(
            conn.send(
                h11.Request(
                    method="POST",
                    target="/v1/chat/completions",
                    headers=[
                        ("host", "127.0.0.1"),
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                    ],
                )
            )
        )
        s.sendall(conn.send(h11.Data(data=body)))
        s.sendall(conn.send(h11.EndOfMessage()))
        events, data = [], b""
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                conn.receive_data(s.recv(65536))
                continue
            events.append(ev)
            if isinstance(ev, h11.Data):
                data += ev.data
            if isinstance(ev, h11.EndOfMessage):
                break
    resp = events[0]
    assert resp.status_code == 200
    headers = dict(resp.headers)
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"transfer-encoding"] == b"chunked"
    text = "".join(
        (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for line in data.decode().split("\n")
        if line.startswith("data: {")
    )
    assert text == "mock reply to: h11"
    assert data.rstrip().endswith(b"data: [DONE]")
    # the connection stays usable
    assert conn.our_state is h11.DONE and conn.their_state is h11.DONE
