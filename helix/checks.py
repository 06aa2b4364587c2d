"""``helix check``: prove a config can run, not only that it parses.

:func:`plan` turns a validated config into the list of checks its enabled
features need; :func:`run` runs them and returns one :class:`Result` each.

=============  =======  ==========================================================
check          network  what it proves
=============  =======  ==========================================================
imports        no       every module the enabled features import loads (tracing:
                        Helix's own OTLP encoder; Vertex: cryptography; Redis:
                        redis-py; S3 and Bedrock: Helix's own SigV4 signer; an https
                        upstream: certifi's CA bundle)
credentials    no       Vertex service-account keys exist, parse and hold an RSA key;
                        Bedrock and S3 have AWS credentials (config or ``AWS_*``)
port           no       ``server.host:server.port`` can be bound right now
redis          yes      ``caching.redis_url`` / ``rate_limits.redis_url`` answer PING
s3             yes      ``caching.s3_bucket`` answers a signed HEAD (Helix's own client)
tracing        yes      the OTLP endpoint accepts an empty export (TCP + one request)
helicone       yes      ``observability.helicone.base_url`` answers HTTP
=============  =======  ==========================================================

``helix`` runs the offline checks (:data:`OFFLINE`) itself before it binds, so
a config that ``helix check`` passes cannot make the workers crash at start.
Every failure names the config key and says what to do.  Nothing here prints
a secret: URLs go through :func:`mask_url`, keys are never part of a message.
"""

from __future__ import annotations

import importlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from helix.client.tls import may_need_ca_bundle

__all__ = ["OFFLINE", "Check", "Result", "app_check", "mask_tree", "mask_url", "plan",
           "preflight", "run"]

OFFLINE = ("imports", "credentials", "port")
DEFAULT_TIMEOUT = 3.0

# Feature -> modules it imports at start-up or on first use (all dependencies of the
# helix-gateway package: a failure here means a broken or partial install).
# Tracing needs no third-party package: Helix writes the OTLP protobuf itself.
_TRACING = ("helix.observe.otlp_pb", "helix.observe.tracing")
_CRYPTO = ("cryptography.hazmat.primitives.serialization",
           "cryptography.hazmat.primitives.asymmetric.rsa",
           "cryptography.hazmat.primitives.asymmetric.padding",
           "cryptography.hazmat.primitives.hashes")
_REDIS = ("redis.asyncio", "redis.asyncio.cluster")
_PACKAGE_OF = {"cryptography": "cryptography", "redis": "redis", "certifi": "certifi"}


@dataclass(frozen=True)
class Check:
    kind: str  # imports | credentials | port | redis | s3 | tracing | helicone
    key: str  # the config key it is about
    what: str  # one line: what is checked (no secrets)
    fn: Callable[[float], str]  # returns a detail on success, raises CheckFailed
    network: bool = False


@dataclass(frozen=True)
class Result:
    check: Check
    state: str  # ok | fail | skip
    detail: str

    def line(self) -> str:
        tag = {"ok": "ok  ", "fail": "FAIL", "skip": "skip"}[self.state]
        return f"{tag} {self.check.kind:<11} {self.check.key}: {self.detail}"


class CheckFailed(Exception):
    """The message says what is wrong and what to do."""


# --- secrets never shown ------------------------------------------------------------------

_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*://)[^/@]*@")
_QUERY_SECRET = re.compile(r"((?:password|passwd|pass|token|key|secret|auth)[^=&]*=)[^&]*", re.I)


def mask_url(url: str | None) -> str:
    """``redis://user:pw@host:6379/0?password=x`` -> ``redis://****@host:6379/0?password=****``."""
    if not url:
        return str(url)
    out = _USERINFO.sub(r"\1****@", url)
    if "?" in out:
        head, _, query = out.partition("?")
        out = head + "?" + _QUERY_SECRET.sub(r"\1****", query)
    return out


def mask_tree(node):
    """Every URL-looking string of a config tree through :func:`mask_url` (userinfo and
    secret query parameters, e.g. a ``base_url`` of ``https://user:key@host``)."""
    if isinstance(node, dict):
        return {k: mask_tree(v) for k, v in node.items()}
    if isinstance(node, list):
        return [mask_tree(v) for v in node]
    if isinstance(node, str) and "://" in node:
        return mask_url(node)
    return node


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "****")
    return text


# --- the offline checks -------------------------------------------------------------------


def _imports(modules: tuple[str, ...]) -> Callable[[float], str]:
    def run(_timeout: float) -> str:
        loaded = []
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # ImportError, or a broken install raising anything
                pkg = _PACKAGE_OF.get(name.split(".")[0], name.split(".")[0])
                raise CheckFailed(
                    f"cannot import {name} ({type(exc).__name__}: {exc}); it ships with "
                    f"helix-gateway: reinstall it (python -m pip install --force-reinstall "
                    f"helix-gateway) or install {pkg} into the same Python"
                ) from None
            top = name.split(".")[0]
            loaded.append(_PACKAGE_OF.get(top, name) if top != "helix" else name)
        return "loads " + ", ".join(dict.fromkeys(loaded))

    return run


def _vertex_credentials(p, where: str, env) -> tuple[str, Callable[[float], str]]:
    if p.credentials_json:
        key = f"{where}.credentials_json"
    elif p.credentials_file:
        key = f"{where}.credentials_file"
    else:
        key = f"{where} (GOOGLE_APPLICATION_CREDENTIALS)"

    def run(_timeout: float) -> str:
        from helix.providers.google_auth import load_private_key, load_service_account

        try:
            sa = load_service_account(p.credentials_json, p.credentials_file, env)
        except ValueError as exc:
            raise CheckFailed(f"{exc}; point {key.split(' ')[0]} at the service-account JSON "
                              "key file downloaded from Google Cloud (IAM > Service accounts "
                              "> Keys)") from None
        try:
            load_private_key(sa.private_key)
        except Exception as exc:
            raise CheckFailed(f"the service-account private_key does not load ({exc}); "
                              "download a new key for the service account") from None
        return f"service account {sa.client_email}, RSA key loads"

    return key, run


def _aws_credentials(p, where: str, env) -> Callable[[float], str]:
    def run(_timeout: float) -> str:
        if p.aws_access_key_id or p.aws_secret_access_key:
            if not (p.aws_access_key_id and p.aws_secret_access_key):
                raise CheckFailed("set both aws_access_key_id and aws_secret_access_key "
                                  "(or neither, to use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
            return "credentials from the config"
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            return "credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        raise CheckFailed(f"no AWS credentials: set {where}.aws_access_key_id and "
                          "aws_secret_access_key, or AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY in Helix's environment")

    return run


def _s3_credentials(cfg, env) -> Callable[[float], str]:
    def run(_timeout: float) -> str:
        from helix.cache import s3_credentials

        if s3_credentials(cfg, env) is None:
            raise CheckFailed("no S3 credentials: set caching.s3_access_key_id and "
                              "caching.s3_secret_access_key, or AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY")
        return "credentials found"

    return run


def _state_dir(rs, env) -> Callable[[float], str]:
    """The responses store's directory can be created and written (nothing is created here:
    the nearest existing directory on its path must be writable)."""

    def run(_timeout: float) -> str:
        from helix.config import default_state_dir

        path = rs.state_dir or default_state_dir(env)
        probe = path
        while not os.path.isdir(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if os.path.exists(path) and not os.path.isdir(path):
            raise CheckFailed(f"{path} is not a directory: set responses.state_dir "
                              "(or HELIX_STATE_DIR) to a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise CheckFailed(f"{probe} is not writable, so {path} cannot hold the responses "
                              "store: set responses.state_dir (or HELIX_STATE_DIR) to a writable "
                              "directory, or responses.store: none")
        return f"{path} is writable"

    return run


def _port(host: str, port: int) -> Callable[[float], str]:
    def run(_timeout: float) -> str:
        from helix.master.worker import check_bindable

        try:
            check_bindable(host, port)
        except OSError as exc:
            raise CheckFailed(f"{exc}; stop what listens there or choose another "
                              "server.port (--port, HELIX_PORT)") from None
        return f"{host}:{port} can be bound"

    return run


# --- the network checks -------------------------------------------------------------------


def _redis(url: str, key: str, timeout: float) -> Callable[[float], str]:
    def run(t: float) -> str:
        from helix.limit.redis import redis_client

        shown = mask_url(url)
        t = max(t, timeout)

        async def ping() -> str:
            client = redis_client(url, t)
            try:
                await client.ping()
                kind = "cluster" if hasattr(client, "get_nodes") else "server"
                return f"{shown} answered PING ({kind})"
            finally:
                await client.aclose()

        try:
            return _run_async(ping(), t * 3)
        except CheckFailed:
            raise
        except Exception as exc:
            raise CheckFailed(f"{shown} did not answer PING within {t:g}s "
                              f"({_reason(exc, [url])}); start Redis there or fix {key}") from None

    return run


def _s3_head(cfg) -> Callable[[float], str]:
    def run(t: float) -> str:
        from helix.cache import _s3_backend, s3_timeout
        from helix.client import PoolLimits, UpstreamPool

        t = max(t, s3_timeout(cfg))
        secrets = [cfg.s3_secret_access_key or "", cfg.s3_session_token or "",
                   os.environ.get("AWS_SECRET_ACCESS_KEY", "")]

        async def head() -> str:
            pool = UpstreamPool(PoolLimits())
            try:
                backend = _s3_backend(cfg, pool)
                status, _data = await backend._call("HEAD", backend.loc.path())
            finally:
                await pool.close()
            origin = backend.loc.origin
            where = f"bucket {cfg.s3_bucket!r} at {origin.host}:{origin.port}"
            if status == 200:
                return f"{where} answered HEAD 200"
            what = {403: "refused the credentials (403): check the access key, secret and the "
                         "bucket policy (s3:ListBucket)",
                    404: "does not exist (404): create it or fix caching.s3_bucket",
                    301: "is in another region (301): set caching.s3_region to the bucket's",
                    400: "refused the request (400): check caching.s3_region and "
                         "caching.s3_endpoint"}.get(status, f"answered HEAD {status}")
            raise CheckFailed(f"{where} {what}")

        try:
            return _run_async(head(), t * 3)
        except CheckFailed as exc:
            raise CheckFailed(_scrub(str(exc), secrets)) from None
        except Exception as exc:
            raise CheckFailed(f"S3 endpoint unreachable ({_reason(exc, secrets)}); check "
                              "caching.s3_endpoint / caching.s3_region and the network") from None

    return run


def _http_probe(url: str, key: str, method: bytes, body: bytes, headers: list,
                ok: Callable[[int], bool], advice: dict[int, str],
                secrets: list[str]) -> Callable[[float], str]:
    def run(t: float) -> str:
        from helix.client import PoolLimits, Timeouts, UpstreamPool, parse_url

        shown = mask_url(url)
        origin, path = parse_url(url)

        async def probe() -> int:
            pool = UpstreamPool(PoolLimits())
            try:
                resp = await pool.request(origin, method, (path or "/").encode(), headers, body,
                                          Timeouts(connect=t, first_byte=t, read=t, total=t))
                try:
                    await resp.read()
                finally:
                    resp.close()
                return resp.status
            finally:
                await pool.close()

        try:
            status = _run_async(probe(), t * 3)
        except Exception as exc:
            raise CheckFailed(f"{shown} is not reachable ({_reason(exc, secrets)}); start it "
                              f"or fix {key}") from None
        if ok(status):
            return f"{shown} answered {status}"
        raise CheckFailed(f"{shown} answered {status}: "
                          f"{advice.get(status, f'check {key}')}")

    return run


def _tracing(tcfg) -> Callable[[float], str]:
    from helix.observe.tracing import otlp_url

    url = otlp_url(tcfg.endpoint)
    headers = [(b"content-type", b"application/x-protobuf")]
    headers += [(k.lower().encode(), v.encode()) for k, v in tcfg.headers.items()]
    # An empty ExportTraceServiceRequest (no fields set: zero bytes of protobuf), no
    # spans, accepted with a 200.
    return _http_probe(
        url, "observability.tracing.endpoint", b"POST", b"", headers,
        lambda s: 200 <= s < 300,
        {401: "the collector wants credentials: set observability.tracing.headers",
         403: "the collector refused the credentials in observability.tracing.headers",
         404: "no OTLP/HTTP traces endpoint at that path: give the collector's base URL "
              "(e.g. http://collector:4318; /v1/traces is appended)",
         415: "not an OTLP/HTTP protobuf endpoint (gRPC is port 4317; Helix speaks OTLP/HTTP)"},
        list(tcfg.headers.values()),
    )


def _helicone(hcfg) -> Callable[[float], str]:
    # Reachability only: any HTTP answer from the API host proves DNS, TCP and TLS work
    # (Helicone has no free authenticated no-op endpoint).
    return _http_probe(hcfg.base_url, "observability.helicone.base_url", b"GET", b"", [],
                       lambda s: s < 500, {}, [hcfg.api_key or ""])


def _reason(exc: BaseException, secrets: list[str]) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return _scrub(msg.splitlines()[0] if msg else type(exc).__name__, secrets)


def _run_async(coro, timeout: float):
    import asyncio

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


# --- the plan -----------------------------------------------------------------------------


def plan(cfg, env: dict[str, str] | None = None, *, port: bool = True) -> list[Check]:
    """The checks this config's enabled features need, in the order they run."""
    env = dict(os.environ) if env is None else env
    checks: list[Check] = []
    obs = cfg.observability
    tracing = obs.tracing if obs.tracing is not None and obs.tracing.enabled else None
    caching = cfg.caching
    rl = cfg.rate_limits

    # imports
    if tracing is not None:
        checks.append(Check("imports", "observability.tracing", "OTLP encoder",
                            _imports(_TRACING)))
    for i, p in enumerate(cfg.providers):
        if p.type == "vertex":
            checks.append(Check("imports", f"providers[{i}] (vertex)", "service-account signer",
                                _imports((*_CRYPTO, "helix.providers.google_auth"))))
        elif p.type == "bedrock":
            checks.append(Check("imports", f"providers[{i}] (bedrock)", "SigV4 signer",
                                _imports(("helix.providers.sigv4", "helix.providers.bedrock"))))
    if may_need_ca_bundle(cfg.providers):
        # Imported on the first https connect, not at start: a broken install must show here.
        checks.append(Check("imports", "providers", "CA bundle", _imports(("certifi",))))
    if caching is not None and caching.backend == "redis":
        checks.append(Check("imports", "caching.backend", "redis client",
                            _imports((*_REDIS, "helix.cache.redis"))))
    if caching is not None and caching.backend == "s3":
        checks.append(Check("imports", "caching.backend", "S3 client",
                            _imports(("helix.cache.s3", "helix.providers.sigv4"))))
    if rl is not None and rl.backend == "redis":
        checks.append(Check("imports", "rate_limits.backend", "redis client",
                            _imports((*_REDIS, "helix.limit.redis"))))

    # credentials
    for i, p in enumerate(cfg.providers):
        where = f"providers[{i}]"
        if p.type == "vertex":
            key, fn = _vertex_credentials(p, where, env)
            checks.append(Check("credentials", key, "service account", fn))
        elif p.type == "bedrock":
            checks.append(Check("credentials", f"{where}.aws_access_key_id", "AWS credentials",
                                _aws_credentials(p, where, env)))
    if caching is not None and caching.backend == "s3":
        checks.append(Check("credentials", "caching.s3_access_key_id", "S3 credentials",
                            _s3_credentials(caching, env)))

    rs = cfg.responses
    if rs.store == "sqlite":
        checks.append(Check("files", "responses.state_dir", "responses store",
                            _state_dir(rs, env)))

    if port:
        checks.append(Check("port", "server.port", "listen address",
                            _port(cfg.server.host, cfg.server.port)))

    # network
    if caching is not None and caching.backend == "redis":
        from helix.cache import DEFAULT_REDIS_TIMEOUT

        t = float(caching.redis_timeout or DEFAULT_REDIS_TIMEOUT)
        checks.append(Check("redis", "caching.redis_url", "PING",
                            _redis(caching.redis_url, "caching.redis_url", t), network=True))
    if rl is not None and rl.backend == "redis" and not (
            caching is not None and caching.backend == "redis"
            and caching.redis_url == rl.redis_url):
        checks.append(Check("redis", "rate_limits.redis_url", "PING",
                            _redis(rl.redis_url, "rate_limits.redis_url",
                                   float(rl.redis_timeout)), network=True))
    if rs.store == "redis":
        checks.append(Check("redis", "responses.redis_url", "PING",
                            _redis(rs.redis_url, "responses.redis_url",
                                   float(rs.redis_timeout)), network=True))
    if caching is not None and caching.backend == "s3":
        checks.append(Check("s3", "caching.s3_bucket", "HEAD bucket", _s3_head(caching),
                            network=True))
    if tracing is not None:
        checks.append(Check("tracing", "observability.tracing.endpoint", "OTLP export",
                            _tracing(tracing), network=True))
    if obs.helicone is not None and obs.helicone.api_key:
        checks.append(Check("helicone", "observability.helicone.base_url", "reachable",
                            _helicone(obs.helicone), network=True))
    return checks


def run(checks: list[Check], *, offline: bool = False,
        timeout: float = DEFAULT_TIMEOUT) -> list[Result]:
    """Run each check (network ones skipped when ``offline``); never raises."""
    out = []
    for c in checks:
        if offline and c.network:
            out.append(Result(c, "skip", "network check skipped (--offline)"))
            continue
        t0 = time.monotonic()
        try:
            detail = c.fn(timeout)
            state = "ok"
        except CheckFailed as exc:
            detail, state = str(exc), "fail"
        except Exception as exc:  # a check must never crash the command
            detail, state = f"{type(exc).__name__}: {exc}", "fail"
        if c.network and state == "ok":
            detail += f" in {(time.monotonic() - t0) * 1000:.0f} ms"
        out.append(Result(c, state, detail))
    return out


def app_check(cfg) -> Check:
    """Build a worker's app in this process, as a worker does after fork (``helix check``
    only: the master never imports the app)."""

    def build(_timeout: float) -> str:
        import asyncio

        from helix.app import App

        async def once() -> int:
            app = App(cfg, None)
            try:
                return len(app.routes)
            finally:
                await app.close()

        try:
            n = asyncio.run(once())
        except Exception as exc:
            raise CheckFailed(f"a worker could not start: {type(exc).__name__}: {exc}") from None
        return f"a worker's app builds ({n} routes)"

    return Check("app", "(whole config)", "worker start", build)


def preflight(cfg) -> list[Result]:
    """What ``helix`` runs before it binds: the offline checks except the port (the master
    checks it itself, with its own message).  Returns the failures."""
    return [r for r in run(plan(cfg, port=False), offline=True) if r.state == "fail"]
