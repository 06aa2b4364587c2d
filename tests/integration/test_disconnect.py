"""A client that hangs up cancels its upstream request (the provider stops generating)."""

import json
import socket
import time

from tests.integration.conftest import UPSTREAM_KEY  # noqa: F401  (shared fixtures)


def upstream_connections(mock_port: int) -> int:
    """Established TCP connections to the mock's port (read from /proc/net/tcp)."""
    n = 0
    with open("/proc/net/tcp") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == mock_port:
                n += 1
    return n


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_client_disconnect_closes_the_upstream_request(helix, mock):
    before = upstream_connections(mock.port)
    body = json.dumps({"model": "hang/gpt-4o-mini", "stream": True,
                       "messages": [{"role": "user", "content": "bye"}]}).encode()
    s = socket.create_connection(("127.0.0.1", helix.port), timeout=5)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
              b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    # That provider never answers (and has no timeout): an upstream request is now in flight.
    assert wait_for(lambda: upstream_connections(mock.port) > before, 3)
    s.close()
    # Hanging up cancels it: the upstream connection is closed, not left to finish.
    assert wait_for(lambda: upstream_connections(mock.port) <= before, 3)
