"""Prompt-cache affinity: one 64-bit key per prompt prefix, rendezvous hashing over deployments.

Providers bill a cached prompt prefix at a fraction of the input price, but only when the
same prefix reaches the same deployment (key, region, account) while its cache is warm.
With ``load_balancing.prompt_cache_affinity`` the route phase asks the client's API for
the request's prefix key (``Api.prefix_key``: the system prompt and tools, or the prompt
up to the first Anthropic ``cache_control`` breakpoint, or the client's own
``prompt_cache_key``), and the balancer ranks the healthy candidates by a rendezvous
(highest random weight) score of ``(key, deployment)``:

* the top-ranked deployment serves the prefix while its latency estimate (PeakEWMA) is
  at most ``affinity_tolerance`` times the best candidate's; otherwise the next one in
  the prefix's own ranking that is, so a prefix spills to a stable second deployment
  (which warms its cache too), never to a random one;
* a deployment that is open, cooling or removed drops out of the ranking and only the
  prefixes it held move (rendezvous hashing moves 1/n of the keys, not all of them);
* every worker and every Helix instance ranks the same way (the key is a blake2b of the
  client's bytes; deployments are salted by their ``provider/model`` name).

Everything here is pure and allocation-light; :func:`prefix_hash` is the only hashing of
request bytes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

__all__ = ["deployment_salt", "prefix_hash", "rank", "score"]

_M64 = (1 << 64) - 1
_INV64 = 1.0 / 18446744073709551616.0


def prefix_hash(parts: Iterable[bytes]) -> int:
    """A nonzero 64-bit key for the concatenation of ``parts`` (each length-prefixed)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(len(p).to_bytes(4, "little"))
        h.update(p)
    return int.from_bytes(h.digest(), "little") or 1


def deployment_salt(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def _mix(x: int) -> int:
    # splitmix64's finalizer: every input bit flips about half of the output bits.
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def score(key: int, salt: int, weight: float | None = None) -> float:
    """Rendezvous score of a deployment for a key; with a weight, the weighted variant
    (``-w / ln u``): a deployment wins a share of the keys proportional to its weight."""
    u = ((_mix(key ^ salt) >> 11) + 0.5) * (_INV64 * 2048.0)  # in (0, 1)
    if weight is None:
        return u
    if weight <= 0.0:
        return -math.inf
    return -weight / math.log(u)


def rank(key: int, positions: list[int], salts: list[int],
         weights: list[float] | None = None) -> list[int]:
    """``positions`` ordered by their rendezvous score for ``key``, best first."""
    if weights is None:
        return sorted(positions, key=lambda p: score(key, salts[p]), reverse=True)
    return sorted(positions, key=lambda p: score(key, salts[p], weights[p]), reverse=True)
