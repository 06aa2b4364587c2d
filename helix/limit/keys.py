"""Gateway API keys: who a request is, from ``Authorization: Bearer <key>``.

Keys come from config (``auth.keys``: the key itself, or only its sha256 hex
digest) and from ``HELIX_API_KEYS`` (a comma list).  Only digests are kept in
memory.  Verifying a key hashes what the client sent once (sha256), finds the
entry by digest, and confirms it with :func:`hmac.compare_digest`: the time
taken depends only on the digest of the client's own input, never on how
much of a real key it matched.
"""

from __future__ import annotations

import hashlib
import hmac

from helix.limit.policy import compile_limits

__all__ = ["GatewayKey", "KeyTable", "digest"]


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class GatewayKey:
    """One key: its name (per-key limits, logs), optional user and team, own limits."""

    __slots__ = ("digest", "limits", "name", "team", "user")

    def __init__(self, name: str, digest: bytes, user=None, team=None, limits=None) -> None:
        self.name = name
        self.digest = digest
        self.user = user
        self.team = team
        self.limits = limits  # compiled ((unit, limit), ...) or None: the per_key default

    def __repr__(self) -> str:  # never the digest
        return f"GatewayKey({self.name!r}, user={self.user!r}, team={self.team!r})"


class KeyTable:
    def __init__(self, keys: list[GatewayKey]) -> None:
        self._by_digest = {k.digest: k for k in keys}
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_config(cls, auth) -> KeyTable | None:
        """The table for ``config.auth`` (None when no keys are configured: Helix is open)."""
        if auth is None or not auth.keys:
            return None
        keys = []
        for k in auth.keys:
            d = digest(k.key) if k.key is not None else bytes.fromhex(k.sha256)
            name = k.name or f"key-{d.hex()[:12]}"
            limits = compile_limits(k.limits) if k.limits is not None else None
            keys.append(GatewayKey(name, d, k.user, k.team, limits))
        return cls(keys)

    def verify(self, authorization: str | None) -> GatewayKey | None:
        """The key named by an ``Authorization`` header value, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.verify_token(token.strip())

    def verify_token(self, token: str | None) -> GatewayKey | None:
        """The key that is ``token``, or None (constant-time on the digest)."""
        if not token:
            return None
        d = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        entry = self._by_digest.get(d)
        if entry is None or not hmac.compare_digest(entry.digest, d):
            return None
        return entry
