"""Prompt-cache affinity bench: prompt tokens served from the providers' caches, with and without.

Starts ``--deployments`` mock providers, each its own process with a prompt cache of
``--cache`` prefixes (``helix mock --prompt-cache N``: an LRU per process, like a
provider's per-machine cache, reporting ``prompt_tokens_details.cached_tokens`` for a
system prompt it has seen), then for each setting (affinity off, on) restarts them (cold
caches) and one Helix in front of all of them, and sends the same seeded sequence of
requests: ``--prefixes`` distinct system prompts of ``--prompt-words`` words, each
request one of them (uniformly at random) plus a short user message, ``--concurrency``
clients.

Prints per setting: the share of prompt tokens read from a cache, the input cost at
cached-token prices of 10% (Anthropic) and 50% (OpenAI) of the input price, relative to
no caching, p50/p99 latency, and the requests per deployment; and checks the numbers
against Helix's ``helix_prompt_cache_read_tokens_total`` in /metrics.

    python bench/affinity.py --deployments 3 --prefixes 48 --cache 20 --requests 1200
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time
from contextlib import ExitStack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helix.mock import MockProcess  # noqa: E402
from tests.helpers import HelixProcess, http_get  # noqa: E402


def config(urls: list[str], affinity: bool) -> str:
    provs = "".join(
        f"  - {{name: d{i}, type: openai_compatible, base_url: {u}/v1, api_key: k, "
        f"models: [m]}}\n" for i, u in enumerate(urls))
    return f"""providers:
{provs}load_balancing:
  prompt_cache_affinity: {str(affinity).lower()}
observability:
  metrics: {{enabled: true}}
"""


def bodies(n: int, prefixes: int, words: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    systems = [" ".join(f"rule{p}-{w}" for w in range(words)) for p in range(prefixes)]
    out = []
    for i in range(n):
        p = rng.randrange(prefixes)
        out.append(json.dumps({"model": "m", "messages": [
            {"role": "system", "content": systems[p]},
            {"role": "user", "content": f"question {i} about topic {p}"}]}).encode())
    return out


def drive(port: int, work: list[bytes], concurrency: int):
    lock = threading.Lock()
    queue = list(reversed(work))
    lat: list[float] = []
    served: dict[str, int] = {}
    tokens = [0, 0]  # prompt, cached

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            t = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body=body,
                         headers={"content-type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            dt = time.perf_counter() - t
            usage = json.loads(data)["usage"] if r.status == 200 else {}
            with lock:
                lat.append(dt)
                p = r.getheader("x-helix-provider", f"HTTP {r.status}")
                served[p] = served.get(p, 0) + 1
                tokens[0] += usage.get("prompt_tokens", 0)
                tokens[1] += (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat, served, tokens


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000.0


def metric_sum(port: int, family: str) -> float:
    _, text = http_get(port, "/metrics")
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(family + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deployments", type=int, default=3)
    ap.add_argument("--prefixes", type=int, default=48)
    ap.add_argument("--cache", type=int, default=20, help="prefixes each mock remembers")
    ap.add_argument("--prompt-words", type=int, default=300)
    ap.add_argument("--requests", type=int, default=1200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    work = bodies(args.requests, args.prefixes, args.prompt_words, args.seed)
    results = {}
    for affinity in (False, True):
        with ExitStack() as stack:
            mocks = [stack.enter_context(MockProcess(
                "--no-record", "--latency-ms", str(args.latency_ms),
                "--prompt-cache", str(args.cache))) for _ in range(args.deployments)]
            gw = stack.enter_context(HelixProcess(config([m.url for m in mocks], affinity),
                                                  workers=args.workers))
            lat, served, (prompt, cached) = drive(gw.port, work, args.concurrency)
            counted = metric_sum(gw.port, "helix_prompt_cache_read_tokens_total")
        share = cached / prompt if prompt else 0.0
        name = "affinity on" if affinity else "affinity off"
        res = {
            "cached_share": round(share, 4),
            "input_cost_vs_uncached_at_10pct": round(1 - share * 0.9, 4),
            "input_cost_vs_uncached_at_50pct": round(1 - share * 0.5, 4),
            "p50_ms": round(pct(lat, 0.5), 2),
            "p99_ms": round(pct(lat, 0.99), 2),
            "served": dict(sorted(served.items())),
            "prompt_tokens": prompt,
            "cached_tokens": cached,
            "metrics_cache_read_tokens": counted,
        }
        results[name] = res
        print(f"{name:13s} cached {share * 100:5.1f}% of prompt tokens  input cost "
              f"{res['input_cost_vs_uncached_at_10pct'] * 100:5.1f}% (10% cache price) / "
              f"{res['input_cost_vs_uncached_at_50pct'] * 100:5.1f}% (50%) of uncached  "
              f"p50 {res['p50_ms']:.1f} ms p99 {res['p99_ms']:.1f} ms  served {res['served']}"
              f"  /metrics cache reads {counted:.0f} (responses said {cached})")
    off, on = results["affinity off"], results["affinity on"]
    if off["cached_share"] > 0:
        print(f"affinity: {on['cached_share'] / off['cached_share']:.2f}x the cached tokens; "
              f"input cost {on['input_cost_vs_uncached_at_10pct'] / off['input_cost_vs_uncached_at_10pct']:.2f}x "  # noqa: E501
              f"(10% cache price)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
