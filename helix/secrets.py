"""Every secret Helix was configured with, and the one function that scrubs them.

Helix builds provider keys into static headers and never logs headers, but
text it does not write itself can still carry a secret: a provider's 401 that
echoes the key it was sent, an exception message, a URL with credentials.  So
every configured secret is remembered here (:func:`remember`, called by the
config loader for each config it loads, so a reload keeps the old ones too),
and :func:`scrub` replaces any of them, in bytes or text, by ``****``:

* errors: a ``HelixError``'s message and native body are scrubbed when it is
  made, so whatever renders it later (any client dialect, an in-band stream
  error, a log line) never sees the secret;
* log lines (:class:`SecretFilter` on the log handlers);
* config error messages and ``helix check`` output mask secret-bearing values
  themselves (``config.mask_secrets``) before anything is known here.

What counts as a secret: provider ``api_key``, AWS access key id, secret key and
session token, Vertex credentials (the private key, and the whole JSON),
values of provider ``headers`` whose names look like credentials, gateway keys,
the admin and cache-purge keys, Helicone and S3 keys, tracing headers, and the
user:password of any Redis URL.  Values shorter than :data:`MIN_LENGTH` are
ignored: scrubbing ``"k"`` would mangle every message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["MIN_LENGTH", "SecretFilter", "remember", "scrub", "secrets_of"]

MIN_LENGTH = 8
MASK = "****"
_CREDENTIAL_HEADER = re.compile(r"(auth|key|token|secret|password|cookie)", re.I)

_known: set[str] = set()
_text_re: re.Pattern[str] | None = None
_bytes_re: re.Pattern[bytes] | None = None


def _variants(value: str) -> list[str]:
    out = [value]
    escaped = json.dumps(value)[1:-1]  # as it appears inside a JSON string
    if escaped != value:
        out.append(escaped)
    return out


def _url_password(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    out = []
    for v in (parts.password, parts.username if parts.password is None else None):
        if v:
            out += [v, unquote(v)]
    return out


def _vertex_secrets(p) -> list[str]:
    out = []
    docs = []
    if p.credentials_json:
        out.append(p.credentials_json)
        docs.append(p.credentials_json)
    if p.credentials_file:
        try:
            with open(p.credentials_file, encoding="utf-8") as fh:
                docs.append(fh.read())
        except OSError:
            pass
    for text in docs:
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict):
            for k in ("private_key", "private_key_id", "client_secret", "refresh_token"):
                if isinstance(doc.get(k), str):
                    out.append(doc[k])
            key = doc.get("private_key")
            if isinstance(key, str):  # the base64 body lines of the PEM, one by one
                out += [ln for ln in key.splitlines() if len(ln) >= 40 and "-----" not in ln]
    return out


def secrets_of(cfg: Any) -> list[str]:
    """The secret values of a loaded :class:`helix.config.Config`."""
    out: list[str | None] = []
    for p in cfg.providers:
        out += [p.api_key, p.aws_access_key_id, p.aws_secret_access_key, p.aws_session_token]
        out += [v for k, v in p.headers.items() if _CREDENTIAL_HEADER.search(k)]
        out += _url_password(p.base_url)
        out += _vertex_secrets(p)
    if cfg.auth is not None:
        out += [k.key for k in cfg.auth.keys]
    rl = cfg.rate_limits
    if rl is not None:
        out += _url_password(rl.redis_url)
    c = cfg.caching
    if c is not None:
        out += _url_password(c.redis_url)
        out += [c.admin_api_key, c.s3_access_key_id, c.s3_secret_access_key, c.s3_session_token]
    o = cfg.observability
    out.append(o.admin.api_key)
    if o.helicone is not None:
        out.append(o.helicone.api_key)
    if o.tracing is not None:
        out += list(o.tracing.headers.values())
        out += _url_password(o.tracing.endpoint)
    return [s for s in out if isinstance(s, str) and len(s) >= MIN_LENGTH]


def remember(values: Any) -> None:
    """Add secrets (a Config, or an iterable of strings) to the process-wide set."""
    global _text_re, _bytes_re
    new = secrets_of(values) if hasattr(values, "providers") else list(values)
    added = False
    for value in new:
        if isinstance(value, str) and len(value) >= MIN_LENGTH:
            for v in _variants(value):
                if v not in _known:
                    _known.add(v)
                    added = True
    if not added:
        return
    alts = sorted(_known, key=len, reverse=True)  # longest first: no partial masking
    _text_re = re.compile("|".join(re.escape(s) for s in alts))
    _bytes_re = re.compile(b"|".join(re.escape(s.encode("utf-8", "replace")) for s in alts))
    _attach_filter()


def forget_all() -> None:
    """Tests only: start from an empty set."""
    global _text_re, _bytes_re
    _known.clear()
    _text_re = _bytes_re = None


def scrub(data):
    """``data`` (bytes or str) with every known secret replaced by ``****``."""
    if isinstance(data, str):
        return data if _text_re is None else _text_re.sub(MASK, data)
    if _bytes_re is None or not data:
        return data
    return _bytes_re.sub(b"****", data)


class SecretFilter(logging.Filter):
    """Scrubs secrets from a log record's message, arguments and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _text_re is None:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string: logging reports it itself
            return True
        clean = _text_re.sub(MASK, msg)
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            cleaned = _text_re.sub(MASK, text)
            if cleaned != text:  # fold the scrubbed traceback into the message
                clean = f"{clean}\n{cleaned}"
                record.exc_info = None
                record.exc_text = None
        if clean != msg:
            record.msg = clean
            record.args = None
        return True


_FILTER = SecretFilter()


def _attach_filter(handlers: Iterable[logging.Handler] | None = None) -> None:
    for h in handlers if handlers is not None else logging.getLogger().handlers:
        if _FILTER not in h.filters:
            h.addFilter(_FILTER)


def install(handler: logging.Handler) -> None:
    """Put the scrubbing filter on ``handler`` (the log set-up calls this)."""
    _attach_filter([handler])
