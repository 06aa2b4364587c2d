"""The live status page: ``GET /ui``, or ``GET /status`` with ``Accept: text/html``.

One self-contained HTML document (``status.html``: inline CSS and JS, no CDN, no
external font, works offline) that polls ``/status`` (JSON) every two seconds and
renders it.  Each response gets a fresh CSP nonce; the policy allows only that inline
script and style, and ``fetch`` to this origin (``default-src 'none'``), so the page
can load nothing else and nothing can frame it.  The page builds its DOM with
``textContent`` only: names from the config or upstream are never parsed as HTML.
"""

from __future__ import annotations

import secrets

__all__ = ["CSP", "page", "wants_html"]

CSP = ("default-src 'none'; script-src 'nonce-{n}'; style-src 'nonce-{n}'; "
       "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")


def wants_html(accept: str | None) -> bool:
    """A browser's navigation (``text/html`` before any JSON), not an API client."""
    if not accept:
        return False
    accept = accept.lower()
    html = accept.find("text/html")
    if html < 0:
        return False
    json_at = accept.find("application/json")
    return json_at < 0 or html < json_at


_TEMPLATE: bytes | None = None


def _template() -> bytes:
    """``helix/observe/status.html`` (package data), read once per worker."""
    global _TEMPLATE
    if _TEMPLATE is None:
        from importlib import resources

        _TEMPLATE = resources.files("helix.observe").joinpath("status.html").read_bytes()
    return _TEMPLATE


def page() -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(headers, body) of the page with a fresh nonce."""
    nonce = secrets.token_urlsafe(18)
    body = _template().replace(b"{{NONCE}}", nonce.encode())
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-security-policy", CSP.format(n=nonce).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
        (b"x-frame-options", b"DENY"),
    ]
    return headers, body
