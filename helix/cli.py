"""``helix``: argv -> config -> master.  Nothing else lives here.

    helix [--config FILE] [--host H] [--port N] [--workers N] [--log-level L]
    helix check [--config FILE] [--offline]
                                     validate, print the resolved config (secrets masked),
                                     then prove it can run (helix.checks)
    helix models [--config FILE] [--json]   what the config serves: deployments, limits, prices
    helix mock [...]                 the bundled mock provider (OpenAI wire format)
    helix try [...]                  send a test request through a running Helix (--run-forever)
    helix --version
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import msgspec

from helix import __version__

log = logging.getLogger("helix.master")


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter at the terminal's width, found without importing shutil (and
    with it bz2/lzma/zlib): every ArgumentParser builds one for ``-h``, on every start."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        try:
            columns = os.get_terminal_size(sys.stdout.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 80
    return argparse.HelpFormatter(prog, width=max(columns - 2, 20))


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="helix",
        formatter_class=_formatter,
        description="Helix: an OpenAI-compatible LLM gateway.",
        epilog="Subcommands: 'helix check' validates a config, 'helix models' lists what it "
        "serves with prices, 'helix mock' runs the bundled mock provider. With no --config, "
        "provider keys are read from the environment "
        "(OPENAI_API_KEY, GROQ_API_KEY, MISTRAL_API_KEY, ...).",
    )
    p.add_argument(
        "--config", "-c", help="YAML config file (default: $HELIX_CONFIG, else env-only)"
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1; $HELIX_HOST)")
    p.add_argument("--port", "-p", type=int, help="port to bind (default 8080; $HELIX_PORT)")
    p.add_argument("--workers", "-w", type=int, help="worker processes (default: one per CPU)")
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        help="log level (default: the config's observability.logging.level, else info)",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    return p


def version_text() -> str:
    from helix._fast import describe

    return f"helix {__version__} (python {sys.version.split()[0]}; extensions: {describe()})"


def _load(args) -> object:
    from helix import config as cfgmod

    cfg = cfgmod.load(args.config)
    server = cfg.server
    overrides = {
        k: v for k in ("host", "port", "workers") if (v := getattr(args, k, None)) is not None
    }
    if overrides:
        try:
            server = msgspec.structs.replace(server, **overrides)
            server.__post_init__()
        except ValueError as exc:
            raise cfgmod.ConfigError(f"command line: {exc}") from None
        cfg = msgspec.structs.replace(cfg, server=server)
    cfgmod.check_supported(cfg)
    return cfg


def _preflight(cfg) -> None:
    """The offline subset of ``helix check`` (modules, credentials), before binding."""
    from helix import checks
    from helix import config as cfgmod

    failed = checks.preflight(cfg)
    if failed:
        raise cfgmod.ConfigError("; ".join(f"{r.check.key}: {r.detail}" for r in failed)
                                 + " (helix check --config ... runs every check)")


def _setup_logging(level: str, fmt: str = "text") -> None:
    from helix.observe.logs import configure

    configure(level, fmt)


def cmd_check(argv: list[str]) -> int:
    from helix import checks
    from helix import config as cfgmod

    p = argparse.ArgumentParser(
        prog="helix check",
        formatter_class=_formatter,
        description="Validate a config, print it (secrets masked) and prove it can run: "
        "modules load, credentials parse, the port binds, Redis/S3/tracing/Helicone answer.",
    )
    p.add_argument("--config", "-c", help="YAML config file (default: env-only mode)")
    p.add_argument("--host", help="check this listen address instead of the config's")
    p.add_argument("--port", "-p", type=int, help="check this port instead of the config's")
    p.add_argument("--offline", action="store_true",
                   help="skip the network checks (Redis, S3, tracing, Helicone)")
    p.add_argument("--timeout", type=float, default=checks.DEFAULT_TIMEOUT,
                   help="seconds per network check (default %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the config")
    args = p.parse_args(argv)
    try:
        cfg = _load(args)
    except cfgmod.ConfigError as exc:
        print(f"helix: config error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        import yaml

        tree = checks.mask_tree(cfgmod.mask_secrets(cfgmod.to_builtins(cfg)))
        sys.stdout.write(yaml.safe_dump(tree, sort_keys=False))
        sys.stdout.flush()
    print(f"# config valid ({cfg.source}): {len(cfg.providers)} provider(s)", file=sys.stderr)
    results = checks.run([*checks.plan(cfg), checks.app_check(cfg)], offline=args.offline,
                         timeout=args.timeout)
    for r in results:
        print(r.line(), file=sys.stderr)
    failed = [r for r in results if r.state == "fail"]
    skipped = sum(r.state == "skip" for r in results)
    if failed:
        print(f"# {len(failed)} of {len(results)} check(s) failed", file=sys.stderr)
        return 1
    print(f"# config OK: {len(results) - skipped} check(s) passed"
          + (f", {skipped} skipped (--offline)" if skipped else ""), file=sys.stderr)
    return 0


def _fmt_tokens(n: int | None) -> str:
    return f"{n:,}" if n is not None else "-"


def _fmt_price(p: float | None) -> str:
    return f"{p:g}" if p is not None else "-"


def models_document(cfg) -> dict:
    """Every public model name of ``cfg``, its deployments and what the registry knows of each."""
    from helix.routing.models import Registry, prices_as_of

    reg = Registry.from_config(cfg)
    names: dict[str, list[dict]] = {}
    open_providers = []
    for p in cfg.providers:
        entries = p.model_entries()
        if not entries:
            open_providers.append({"provider": p.name, "type": p.type})
        for entry in entries:
            model_id = entry.id or entry.name
            info = reg.lookup(model_id, p.type)
            dep = {"provider": p.name, "type": p.type, "model_id": model_id,
                   "registry_id": info.id if info is not None else None}
            for field in ("mode", "context_window", "max_output", "input_per_mtok",
                          "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok"):
                dep[field] = getattr(info, field) if info is not None else None
            names.setdefault(entry.name, []).append(dep)
    return {
        "prices_as_of": reg.prices_as_of or prices_as_of(),
        "units": "USD per million tokens; context_window and max_output in tokens; null = unknown",
        "config": cfg.source,
        "models": [{"model": name, "deployments": deps} for name, deps in names.items()],
        # Providers listing no models serve any "provider/<model id>" as given.
        "any_model": open_providers,
    }


def _models_table(doc: dict) -> str:
    head = ("MODEL", "DEPLOYMENT", "CONTEXT", "MAX OUT", "IN", "OUT", "CACHE READ",
            "CACHE WRITE")
    rows = []
    for m in doc["models"]:
        for i, d in enumerate(m["deployments"]):
            rows.append((
                m["model"] if i == 0 else "",
                f"{d['provider']}/{d['model_id']} ({d['type']})",
                _fmt_tokens(d["context_window"]), _fmt_tokens(d["max_output"]),
                _fmt_price(d["input_per_mtok"]), _fmt_price(d["output_per_mtok"]),
                _fmt_price(d["cached_input_per_mtok"]), _fmt_price(d["cache_write_per_mtok"]),
            ))
    for p in doc["any_model"]:
        rows.append((f"{p['provider']}/*", f"{p['provider']}/<model id as given> ({p['type']})",
                     *["-"] * 6))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    left = {0, 1}

    def line(r) -> str:
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in
                 enumerate(zip(r, widths, strict=True))]
        return "  ".join(cells).rstrip()

    out = [line(head), *(line(r) for r in rows)]
    out.append("")
    out.append(f"Prices: USD per million tokens, list prices as of {doc['prices_as_of']} "
               "(helix/data/models.json;")
    out.append("override them in the config's `models:` section). '-' = unknown.")
    if not doc["models"] and not doc["any_model"]:
        out.insert(0, "No providers are configured.")
    return "\n".join(out) + "\n"


def cmd_models(argv: list[str]) -> int:
    """``helix models``: what a config serves, with context windows and prices."""
    from helix import config as cfgmod

    p = argparse.ArgumentParser(
        prog="helix models",
        formatter_class=_formatter,
        description="List every model name a config serves, its deployments (provider/model "
        "id), context window, max output and prices, with the date of the prices.",
    )
    p.add_argument(
        "--config", "-c", help="YAML config file (default: $HELIX_CONFIG, else env-only)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    try:
        cfg = _load(args)
    except cfgmod.ConfigError as exc:
        print(f"helix: config error: {exc}", file=sys.stderr)
        return 2
    doc = models_document(cfg)
    if args.json:
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
    else:
        sys.stdout.write(_models_table(doc))
    return 0


def cmd_mock(argv: list[str]) -> int:
    from helix.mock.server import main as mock_main

    return mock_main(argv)


def cmd_serve(argv: list[str]) -> int:
    from helix import config as cfgmod

    args = _serve_parser().parse_args(argv)
    if args.version:
        print(version_text())
        return 0
    try:
        cfg = _load(args)
        _preflight(cfg)
    except cfgmod.ConfigError as exc:
        print(f"helix: config error: {exc}", file=sys.stderr)
        return 2
    logging_cfg = cfg.observability.logging
    _setup_logging(args.log_level or os.environ.get("HELIX_LOG_LEVEL") or logging_cfg.level,
                   logging_cfg.format)
    _announce(cfg)

    from helix.master.arbiter import Arbiter
    from helix.master.worker import check_bindable

    _raise_fd_limit()
    try:
        check_bindable(cfg.server.host, cfg.server.port)
    except OSError as exc:
        log.error("%s", exc)
        return 1

    def reload_config():
        new = _load(args)
        _preflight(new)
        return new

    from helix import tables

    return Arbiter(cfg, load_config=reload_config, plan_shm=tables.plan).run()


def _raise_fd_limit() -> None:
    """Each proxied stream holds two sockets; lift the soft fd limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
            return
    if target < 4096:
        log.warning("open-file limit is %d: fewer than ~%d concurrent streams fit", target,
                    target // 2)


def _announce(cfg) -> None:
    from helix import config as cfgmod

    log.info("%s", version_text())
    log.info("config: %s", cfg.source)
    if cfg.providers:
        for p in cfg.providers:
            models = ", ".join(m.name for m in p.model_entries()) or "any (use provider/model)"
            log.info("provider %s (%s): %s", p.name, p.type, models)
    else:
        log.warning(
            "no providers configured: chat requests will get a 503 explaining this. "
            "Set OPENAI_API_KEY (or GROQ_API_KEY, MISTRAL_API_KEY, TOGETHER_API_KEY, ...) "
            "or start with --config helix.yaml (see config/demo.yaml for an offline demo)"
        )
    for var in cfgmod.env_providers_not_built():
        log.warning("%s is set, but that provider type is not available in this version yet", var)
    exposed = cfg.server.host not in ("127.0.0.1", "localhost", "::1")
    keys = cfg.auth.keys if cfg.auth is not None else []
    if keys:
        log.info("gateway API keys: %d configured; /v1/* requires Authorization: Bearer <key>",
                 len(keys))
    else:
        (log.warning if exposed else log.info)(
            "no gateway API keys are configured: anyone who can reach %s:%d can use the "
            "configured provider keys", cfg.server.host, cfg.server.port,
        )
    from helix.observe.status import exposure

    line = exposure(cfg.observability.admin, keys)
    (log.warning if exposed and "open to anyone" in line else log.info)("%s", line)
    if cfg.rate_limits is not None:
        log.info("rate limits: %s backend (%s)", cfg.rate_limits.backend,
                 cfg.rate_limits.failure_policy)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "check":
        return cmd_check(argv[1:])
    if argv and argv[0] == "models":
        return cmd_models(argv[1:])
    if argv and argv[0] == "mock":
        return cmd_mock(argv[1:])
    if argv and argv[0] == "try":
        from helix.devtools import main as try_main

        return try_main(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return cmd_serve(argv)


if __name__ == "__main__":
    sys.exit(main())
