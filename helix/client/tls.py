"""TLS client contexts for upstream connections.

Building an ``ssl.SSLContext`` parses the whole CA bundle (tens of ms), so
exactly one context per ``verify`` setting is built per process and shared by
every connection.  The verifying context trusts certifi's bundle *and* the
system store (corporate proxies usually install their CA there), checks host
names, and offers only ``http/1.1`` via ALPN.  SNI is sent by passing
``server_hostname`` when the connection is opened.
"""

from __future__ import annotations

import ssl

__all__ = ["client_context", "may_need_ca_bundle"]

_contexts: dict[bool, ssl.SSLContext] = {}


def may_need_ca_bundle(providers) -> bool:
    """Whether any configured provider may be reached over https, so certifi will be
    imported on a first connection.  Only an explicit ``http://`` base URL rules it out; a
    default base URL is taken to be https (all but Ollama's are)."""
    return any(not (p.base_url or "").startswith("http://") for p in providers)


def _build(verify: bool) -> ssl.SSLContext:
    # Imported here: a process with no https upstream never needs it (cold start).
    import certifi

    ctx = ssl.create_default_context(cafile=certifi.where())
    # create_default_context only loads the system store when no cafile is given.
    ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if not verify:
        # Self-signed development endpoints only; never the default.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def client_context(verify: bool = True) -> ssl.SSLContext:
    """The shared client context for *verify* (built on first use)."""
    verify = bool(verify)
    ctx = _contexts.get(verify)
    if ctx is None:
        ctx = _contexts[verify] = _build(verify)
    return ctx
