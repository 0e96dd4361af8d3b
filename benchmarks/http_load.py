"""HTTP load benchmark: `mmsearch serve` under 1, 4 and 16 concurrent clients.

Why this exists: a search served over HTTP pays for JSON, the ASGI stack, the thread
pool hop and the query log on top of the search itself. To make that overhead
visible, the same text queries are first timed in-process (``Searcher.search``
directly, on the same workspace) and then through a real ``mmsearch serve``
subprocess on 127.0.0.1, driven by an async httpx client with a bounded number of
requests and a time limit per concurrency level. Both sides run with the
query-embedding cache on (the default: queries repeat) and, in a second pass, off
(every request encodes its text), so the cache's effect is measured too.

The catalog is the bundled emoji sample, ingested with the real default encoders
(MiniLM text, visual descriptor) into a temporary workspace.

With ``--workers N [N ...]`` it measures worker processes instead: one fixed number of
concurrent clients (``--clients``, 16) against ``mmsearch serve --workers N`` for each N,
in rounds whose order alternates (1 2 4, then 4 2 1), so a change in the host's load
during the run does not favour one count. Each server is warmed with as many concurrent
searches as it has workers times eight first, so every worker has loaded its models. After each
level the server's own ``/metrics`` (summed over its workers) must count every search
sent, which checks the multiprocess metrics under load as a side effect.

Usage::

    python benchmarks/http_load.py                       # 1, 4, 16 clients; cache on and off
    python benchmarks/http_load.py --requests 300 --time-limit 20 --concurrency 1 8
    python benchmarks/http_load.py --workers 1 2 4 --clients 16 --requests 600 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mmsearch.config import Settings
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.retrieval.query_cache import QueryEmbeddingCache
from mmsearch.sample_data import sample_catalog_path
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

COLLECTION = "emoji"
QUERIES = (
    "red heart", "cheerful", "space travel", "something to eat", "dog", "cat face",
    "rain", "music", "sports ball", "flag with stars", "tree", "fire", "hot drink",
    "money", "clock", "sad face", "car", "flower", "moon at night", "ocean wave",
    "birthday party", "book", "mail", "phone", "sun", "snow", "fruit", "computer",
    "bicycle", "airplane", "ghost", "robot", "crown", "key", "lock", "light bulb",
    "hammer", "gift", "trophy", "medal",
)  # fmt: skip


@dataclass
class Figures:
    label: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    def row(self) -> str:
        lat = sorted(self.latencies_ms)
        return (
            f"| {self.label} | {self.requests} | {self.errors} | {percentile(lat, 0.50):.1f} | "
            f"{percentile(lat, 0.99):.1f} | {self.requests / self.seconds:.1f} |"
        )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ingest(home: Path) -> Settings:
    settings = Settings(home=home)
    tick = time.perf_counter()
    report = Ingestor(settings).run(IngestOptions(sample_catalog_path(), COLLECTION))
    print(
        f"ingested {report.counts['items']} items with {settings.text_encoder} + "
        f"{settings.image_encoder} in {time.perf_counter() - tick:.1f} s",
        flush=True,
    )
    return settings


def paired(settings: Settings, base: str, total: int, cache_size: int) -> tuple[Figures, Figures]:
    """One client: the same query in-process, then over HTTP, alternating query by query.

    Alternating means load from anything else on the host hits both sides alike, so
    the difference is the HTTP overhead rather than a change in the machine's load.
    """
    searcher = Searcher(settings, COLLECTION, query_cache=QueryEmbeddingCache(cache_size))
    searcher.search(SearchRequest(text="warm up", k=10))
    local: list[float] = []
    remote: list[float] = []
    errors = 0
    with httpx.Client(base_url=base, timeout=30.0) as client:
        started = time.perf_counter()
        for n in range(total):
            text = QUERIES[n % len(QUERIES)]
            tick = time.perf_counter()
            searcher.search(SearchRequest(text=text, k=10))
            local.append((time.perf_counter() - tick) * 1000.0)
            tick = time.perf_counter()
            response = client.post(f"/v1/collections/{COLLECTION}/search", json={"text": text})
            remote.append((time.perf_counter() - tick) * 1000.0)
            errors += response.status_code != 200
        seconds = time.perf_counter() - started
    share = sum(local) / (sum(local) + sum(remote))  # split the wall time by measured time
    return (
        Figures("in-process (Searcher), 1 caller", total, 0, seconds * share, local),
        Figures("HTTP, 1 client", total, errors, seconds * (1 - share), remote),
    )


async def load(base: str, concurrency: int, total: int, time_limit: float) -> Figures:
    """``concurrency`` clients share a counter of ``total`` requests; stop at the time limit."""
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + time_limit
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client:

        async def worker() -> None:
            nonlocal issued, errors
            while issued < total and time.perf_counter() < deadline:
                text = QUERIES[issued % len(QUERIES)]
                issued += 1
                tick = time.perf_counter()
                response = await client.post(
                    f"/v1/collections/{COLLECTION}/search", json={"text": text, "k": 10}
                )
                latencies.append((time.perf_counter() - tick) * 1000.0)
                if response.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Figures(f"HTTP, {concurrency} clients", len(latencies), errors, seconds, latencies)


def serve(home: Path, port: int, cache_size: int, workers: int = 1) -> subprocess.Popen[bytes]:
    # No request rate limit: every client is 127.0.0.1, and the default 600 a minute per
    # address would turn most of the load into 429s; this measures search, not the limiter.
    env = dict(os.environ, MMSEARCH_QUERY_CACHE_SIZE=str(cache_size))
    env["MMSEARCH_RATE_LIMIT_PER_MINUTE"] = "0"
    command = [sys.executable, "-m", "mmsearch", "serve", "--home", str(home)]
    command += ["--port", str(port), "--log-level", "warning", "--workers", str(workers)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stderr.read().decode() if process.stderr else ""
            raise SystemExit(f"server exited: {output[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=60).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become ready")


def run_pass(home: Path, settings: Settings, args: argparse.Namespace, cache_size: int) -> None:
    label = "on" if cache_size else "off"
    print(f"\n### query-embedding cache {label}\n")
    print("| path | requests | errors | p50 ms | p99 ms | requests/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = serve(home, port, cache_size)
    try:
        wait_ready(base, process)
        for _ in range(10):  # warm the server: models, table, thread pool
            httpx.post(f"{base}/v1/collections/{COLLECTION}/search", json={"text": "warm"})
        local, remote = paired(settings, base, args.requests, cache_size)
        print(local.row())
        print(remote.row(), flush=True)
        overhead = statistics.median(
            r - x for r, x in zip(remote.latencies_ms, local.latencies_ms, strict=True)
        )
        for concurrency in [c for c in args.concurrency if c > 1]:
            figures = asyncio.run(load(base, concurrency, args.requests, args.time_limit))
            print(figures.row(), flush=True)
        print(f"\nHTTP overhead, 1 client: median of paired differences {overhead:.1f} ms")
    finally:
        process.terminate()
        process.wait(timeout=30)


def searches_counted(base: str) -> int:
    """Search requests answered 200, as the server's /metrics counts them (all workers)."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    wanted = ('route="/v1/collections/{name}/search"', 'status="200"')
    total = 0.0
    for line in text.splitlines():
        if line.startswith("mmsearch_http_requests_total{") and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def workers_level(home: Path, args: argparse.Namespace, workers: int) -> Figures:
    """``args.clients`` clients against ``serve --workers workers`` (cache on)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = serve(home, port, 1024, workers)
    try:
        wait_ready(base, process, timeout=600.0)  # workers start slowly on a busy host
        # Enough concurrent warm-up searches that every worker loads its models.
        warm = asyncio.run(load(base, workers * 8, workers * 40, 120.0))
        if warm.errors:
            raise SystemExit(f"{warm.errors} warm-up searches failed with {workers} workers")
        before = searches_counted(base)
        load_avg = os.getloadavg()[0]
        figures = asyncio.run(load(base, args.clients, args.requests, args.time_limit))
        counted = searches_counted(base) - before
        figures.label = f"{workers} worker{'s' if workers > 1 else ''}, {args.clients} clients"
        ok = figures.requests - figures.errors
        note = "" if counted == ok else f" (metrics counted {counted} of {ok}!)"
        print(f"{figures.row()} {load_avg:.1f} |{note}", flush=True)
        return figures
    finally:
        process.terminate()
        process.wait(timeout=60)


def run_workers(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="mmsearch-http-") as tmp:
        home = Path(tmp) / "workspace"
        ingest(home)
        print(f"\n### worker processes, {args.clients} concurrent clients, cache on\n")
        print("| server | requests | errors | p50 ms | p99 ms | requests/s | 1-min load |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        results: dict[int, list[Figures]] = {n: [] for n in args.workers}
        for round_number in range(args.rounds):
            order = args.workers if round_number % 2 == 0 else args.workers[::-1]
            for workers in order:
                results[workers].append(workers_level(home, args, workers))
        print("\nmedian over rounds:")
        for workers, runs in results.items():
            rates = [r.requests / r.seconds for r in runs]
            p99s = [percentile(sorted(r.latencies_ms), 0.99) for r in runs]
            print(
                f"  {workers} worker(s): {statistics.median(rates):.1f} req/s, "
                f"p99 {statistics.median(p99s):.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per level")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--cache", choices=["both", "on", "off"], default="both")
    parser.add_argument("--workers", type=int, nargs="+", help="compare worker counts instead")
    parser.add_argument("--clients", type=int, default=16, help="clients with --workers")
    parser.add_argument("--rounds", type=int, default=2, help="rounds with --workers")
    args = parser.parse_args()
    print(f"command: {shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    workers = "uvicorn workers as listed" if args.workers else "1 uvicorn worker"
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {workers}"
    )
    print(f"queries: {len(QUERIES)} distinct text queries, k=10, cycled")
    if args.workers:
        run_workers(args)
        return
    with tempfile.TemporaryDirectory(prefix="mmsearch-http-") as tmp:
        home = Path(tmp) / "workspace"
        settings = ingest(home)
        sizes = {"both": [1024, 0], "on": [1024], "off": [0]}[args.cache]
        for size in sizes:
            run_pass(home, settings.model_copy(update={"query_cache_size": size}), args, size)


if __name__ == "__main__":
    main()
