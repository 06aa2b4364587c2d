"""Instructions per request of one Helix worker, counted by callgrind.

wrk's CPU-per-request figures move by 10-20% between runs on a shared VM, so a change worth 2%
cannot be seen with them. Callgrind counts the instructions the worker executes; for the same
tree, interpreter and request mix that count repeats closely, whatever else the machine does.
This runs ``bench/run.py``'s Helix target (one worker, its pass-through config, the fast mock)
under ``valgrind --tool=callgrind`` twice: once serving the warm-up requests, once serving those
and ``--requests`` more (chat completions over a few keep-alive connections). The difference in
the worker's total, divided by ``--requests``, is the instructions per request; start-up,
warm-up and shutdown cancel out. Instructions are not time (syscalls, cache misses and the
kernel are not in them), so a change is kept on this count and then confirmed with
``bench/ab.py``.

    python bench/instr.py                       # this checkout, the `helix` on PATH
    python bench/instr.py :/tmp/other-tree @/usr/bin/python3.11 --requests 3000
    python bench/instr.py . :/tmp/other-tree    # several variants, one after another
    python bench/instr.py --stream              # streams, a fresh connection each
    python bench/instr.py --sdk                 # each request with the openai SDK's headers

``--stream`` counts the shape of bench/run.py's TTFB row instead: each request a streamed chat
completion (the fast mock's 10 content chunks) on a connection of its own, read to its end, so
the count holds the accept, the relay set-up and the per-chunk path.

A variant is ``[:TREE][@PYTHON][+CONFIG]`` as in ``bench/ab.py`` (``.`` is the default one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

# bench/ is sys.path[0] when run as a script.
from ab import variant
from run import (
    CHAT_BODY,
    FAST_MOCK,
    MASTER_KEY,
    Context,
    Helix,
    Proc,
    _stat_fields,
    free_port,
    session_pids,
    wait_ready,
)


def _request(body: str, extra: str = "") -> bytes:
    return (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"Authorization: Bearer {MASTER_KEY}\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n"
        "\r\n" + body
    ).encode()


# The other headers the official openai SDK (3.x over httpx) sends with every request, as
# captured from it on 2026-12-07: ``--sdk`` counts a request as a real client sends it.
SDK_HEADERS = (
    "Accept-Encoding: gzip, deflate\r\n"
    "Connection: keep-alive\r\n"
    "accept: application/json\r\n"
    "user-agent: OpenAI/Python 3.63.0\r\n"
    "x-stainless-lang: python\r\n"
    "x-stainless-package-version: 3.63.0\r\n"
    "x-stainless-os: Linux\r\n"
    "x-stainless-arch: x64\r\n"
    "x-stainless-runtime: CPython\r\n"
    "x-stainless-runtime-version: 3.11.7\r\n"
    "x-stainless-async: false\r\n"
    "x-stainless-retry-count: 0\r\n"
    "x-stainless-read-timeout: 600\r\n"
)
REQUEST = _request(CHAT_BODY)
SDK_REQUEST = _request(CHAT_BODY, SDK_HEADERS)
STREAM_BODY = CHAT_BODY[:-1] + ', "stream": true}'
STREAM_REQUEST = _request(STREAM_BODY)


class Callgrind(Helix):
    ready_timeout = 300.0
    out = Path("/tmp")  # where callgrind writes cg.<pid>; set per run

    def command(self) -> list[str] | None:
        base = super().command()
        if base is None:
            return None
        return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}/cg.%p", *base]


async def _conn(port: int, n: int, request: bytes = REQUEST) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(n):
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected response: {head[:200]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await asyncio.wait_for(reader.readexactly(length), 60)
    finally:
        writer.close()


async def _streams(port: int, n: int, request: bytes = STREAM_REQUEST) -> None:
    """``n`` streams one after another, each on a fresh connection, read to the last chunk."""
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
                raise RuntimeError(f"unexpected response: {head[:200]!r}")
            body = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 60)
            if b"[DONE]" not in body:
                raise RuntimeError(f"stream without [DONE]: {body[-200:]!r}")
        finally:
            writer.close()


def load(port: int, requests: int, conns: int, stream: bool = False, sdk: bool = False) -> None:
    async def main() -> None:
        per, extra = divmod(requests, conns)
        one = _streams if stream else _conn
        args: tuple[bytes, ...] = ()
        if sdk:
            args = (_request(STREAM_BODY, SDK_HEADERS),) if stream else (SDK_REQUEST,)
        await asyncio.gather(*(one(port, per + (i < extra), *args) for i in range(conns)))

    asyncio.run(main())


def worker_pid(master: int, timeout: float = 60.0) -> int:
    """The master's child (the one worker) in its session."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in session_pids(master):
            fields = _stat_fields(pid)
            if fields and int(fields[1]) == master:
                return pid
        time.sleep(0.1)
    raise RuntimeError("no worker process found")


def total_ir(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def worker_ir(
    ctx: Context, spec: str, requests: int, conns: int, stream: bool = False, sdk: bool = False
) -> int:
    """The worker's instructions from fork to exit, having served ``requests``."""
    out = Path(tempfile.mkdtemp(prefix="cg-", dir=ctx.tmp))
    target = variant(ctx, 0, "helix" + spec, Callgrind)
    target.out = out
    target.name = f"helix-{out.name}"  # its own config directory
    port = free_port()
    proc = target.start(port)
    try:
        wait_ready(port, proc, target.ready_timeout, poll=0.5)
        worker = worker_pid(proc.pid)
        load(port, requests, conns, stream, sdk)
    finally:
        proc.stop(timeout=60.0)  # SIGTERM: a clean exit, so callgrind writes its totals
    dump = out / f"cg.{worker}"
    if not dump.exists():
        raise RuntimeError(f"callgrind wrote no totals for worker {worker} in {out}")
    return total_ir(dump)


def measure(
    ctx: Context,
    spec: str,
    requests: int,
    warmup: int,
    conns: int,
    stream: bool = False,
    sdk: bool = False,
) -> float:
    """Instructions per request: two runs that differ only by ``requests`` more requests."""
    short = worker_ir(ctx, spec, warmup, conns, stream, sdk)
    long = worker_ir(ctx, spec, warmup + requests, conns, stream, sdk)
    return (long - short) / requests


def workdir(keep: str | None, prefix: str):
    """A run's working directory: a new one under ``keep`` that stays (``--keep``: its
    callgrind dumps are for callgrind_annotate), else a temporary one."""
    if keep is None:
        return tempfile.TemporaryDirectory(prefix=prefix)
    Path(keep).mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(tempfile.mkdtemp(prefix=prefix, dir=keep))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="*", default=["."], help="[:TREE][@PYTHON][+CONFIG]")
    ap.add_argument("--requests", type=int, default=2000, help="counted requests")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--conns", type=int, default=8, help="keep-alive connections")
    ap.add_argument("--repeat", type=int, default=1, help="runs per variant")
    ap.add_argument(
        "--stream", action="store_true", help="streamed requests, a fresh connection each"
    )
    ap.add_argument("--sdk", action="store_true", help="each request with the openai SDK's headers")
    ap.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the runs' callgrind dumps under DIR (a new directory per invocation), for "
        "callgrind_annotate: the longer run's minus the shorter's is the requests' share",
    )
    opts = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    rows: list[tuple[str, float]] = []
    with workdir(opts.keep, "helix-instr-") as tmp:
        if opts.keep:
            print(f"callgrind dumps kept in {tmp}/cg-*/cg.<pid>", file=sys.stderr)
        ctx = Context(Path(tmp), free_port())
        try:
            ctx.restart_mock(FAST_MOCK)
            for spec in opts.variants:
                spec = "" if spec == "." else spec
                for r in range(opts.repeat):
                    ir = measure(
                        ctx, spec, opts.requests, opts.warmup, opts.conns, opts.stream, opts.sdk
                    )
                    print(f"{spec or '.'} run {r}: {ir:,.0f} instructions/request", flush=True)
                    rows.append((spec or ".", ir))
        finally:
            Proc.stop_all()
    base = rows[0][1]
    if opts.stream:
        what = f"streams (10 chunks each), each on a fresh connection, {opts.conns} at a time,"
    else:
        what = f"requests over {opts.conns} keep-alive connections"
    if opts.sdk:
        what += " (the openai SDK's headers)"
    print(f"\n{opts.requests} {what} after {opts.warmup} warm-up, one worker under callgrind")
    print("| variant | instructions/request | vs first |\n|---|---:|---:|")
    for spec, ir in rows:
        print(f"| {spec} | {ir:,.0f} | {ir / base:.3f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
