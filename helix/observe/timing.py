"""``server-timing`` on every API response: Helix's own time, the upstream's, and the queue's.

One header, written with the response head (so for a stream it describes the time to the
head, which goes out with the first chunk)::

    server-timing: helix;dur=0.412, upstream;dur=20.113, ttft;dur=22.306

* ``helix`` -- time spent in Helix itself: from the request's arrival at the pipeline
  (head and body received) to the response head being written, minus the time spent
  waiting on upstreams (every attempt: failed ones, hedges, the backoff between retries,
  and for a JSON answer the reading of its body) and in the priority queue.
* ``queue`` -- time waited in the rate-limit priority queue (only when the request waited).
* ``upstream`` -- the answering attempt: request written to the provider's response head.
* ``ttft`` -- streams: the answering attempt's request written to its first chunk.

Durations are milliseconds, three decimals (microseconds).  On unless
``observability.server_timing: false``; :data:`ON` is set once per worker by the app.
"""

from __future__ import annotations

import time

from helix._fast import timing_value as _value

__all__ = ["NAME", "ON", "header"]

NAME = b"server-timing"
ON = True

_monotonic = time.monotonic


def header(ctx, now: float | None = None) -> tuple[bytes, bytes]:
    """The ``server-timing`` header for ``ctx`` as of ``now`` (the response head); its value
    is made by ``helix._fast.timing_value`` (compiled; the pure twin in
    ``helix/_fast/access_py.py``)."""
    return (NAME, _value(ctx, _monotonic() if now is None else now))
