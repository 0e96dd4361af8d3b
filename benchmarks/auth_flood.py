"""What a flood of wrong API keys does to everyone else: `/healthz` and search p50.

Why this exists: a secret shaped like a real key (``mms_<real key id>_<43 random
chars>``) used to cost one argon2id verification (hundreds of ms of CPU) on the event
loop before anything refused it, so one such client raised `/healthz` p50 from a few
ms to most of a second. The service now charges failures to the client's and the key
id's budgets before hashing, refuses with 429 once either is spent, and verifies on a
small dedicated thread pool with a bounded queue. The goal: under the flood, `/healthz`
and a reader's search stay within 2x of their idle p50.

A real ``mmsearch serve`` runs on 127.0.0.1 over the bundled emoji sample (default
encoders), with a reader key and an admin key whose id the flood names. A measuring
client times `/healthz` and the reader's searches (interleaved, query embeddings warmed
first), idle and then while a separate process runs 4 concurrent flooding clients that
send wrong well-shaped keys for the admin key's id. The flood is bounded in count and
time and goes to loopback only. Two servers are measured in turn: one with the default
failure budget (20 a minute), and one with the budgets lifted (every wrong key is
hashed), to show what the bounded verifier alone holds. On the first, the same 4
clients also flood without any key (a 401 that never reaches the key check): the
floor any flood of requests costs on this host, to read the wrong-key figure against.

Usage::

    python benchmarks/auth_flood.py                 # 3 rounds of 100 health checks, 30 searches
    python benchmarks/auth_flood.py --rounds 5 --health 200 --searches 40
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx
from auth_overhead import serve

from mmsearch.config import Settings
from mmsearch.governance.keys import KeyStore
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.sample_data import SAMPLE_EMOJI_DIR, sample_catalog_path

QUERIES = ("red heart", "cat face", "rain", "music", "tree", "fire", "moon", "flower")
FLOOD_CLIENTS = 4
PATH = "/v1/collections/emoji/search"


def wrong_secret(key_id: str) -> str:
    """A real key id with a random, well-shaped tail: passes every shape check."""
    return f"mms_{key_id}_{secrets.token_urlsafe(32)}"


async def _flood(
    base: str, key_id: str | None, per_client: int, deadline: float, stop: Event
) -> Counter:
    statuses: Counter[int] = Counter()

    async def one_client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for _ in range(per_client):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                headers = {"authorization": f"Bearer {wrong_secret(key_id)}"} if key_id else {}
                try:
                    response = await client.get("/v1/collections", headers=headers)
                    statuses[response.status_code] += 1
                except httpx.TransportError:
                    statuses[0] += 1

    await asyncio.gather(*(one_client() for _ in range(FLOOD_CLIENTS)))
    return statuses


def flood_process(
    base: str, key_id: str | None, per_client: int, limit_s: float, stop: Event, started: Event, out
) -> None:
    """4 concurrent clients in their own process (the measuring client shares no GIL);
    ``key_id`` None: they send no key at all."""
    started.set()
    deadline = time.monotonic() + limit_s
    statuses = asyncio.run(_flood(base, key_id, per_client, deadline, stop))
    out.send(dict(statuses))


def measure(base: str, reader: str, health: int, searches: int) -> tuple[list[float], list[float]]:
    """Interleaved `/healthz` and search timings, in ms."""
    health_ms: list[float] = []
    search_ms: list[float] = []
    auth = {"authorization": f"Bearer {reader}"}
    with httpx.Client(base_url=base, timeout=60) as client:
        every = max(1, health // max(1, searches))
        for n in range(health):
            started = time.perf_counter()
            client.get("/healthz").raise_for_status()
            health_ms.append((time.perf_counter() - started) * 1000.0)
            if n % every == 0 and len(search_ms) < searches:
                text = QUERIES[len(search_ms) % len(QUERIES)]
                started = time.perf_counter()
                response = client.post(PATH, json={"text": text, "k": 10}, headers=auth)
                search_ms.append((time.perf_counter() - started) * 1000.0)
                response.raise_for_status()
    return health_ms, search_ms


Row = tuple[str, float, float, dict[int, int], float]


def run_phases(
    home: Path, reader: str, key_id: str, args: argparse.Namespace, budget: str, control: bool
) -> list[Row]:
    """Every phase ``args.rounds`` times in rotating order (so drift in the host's load
    hits each alike); p50s over the pooled samples, flood answers summed."""
    phases: list[tuple[str, str | None]] = [("idle", "")]
    if control:
        phases.append((f"{FLOOD_CLIENTS} clients, no key (control)", None))
    phases.append((f"{FLOOD_CLIENTS} clients, wrong keys", key_id))
    health: dict[str, list[float]] = {name: [] for name, _ in phases}
    search: dict[str, list[float]] = {name: [] for name, _ in phases}
    answers: dict[str, Counter[int]] = {name: Counter() for name, _ in phases}
    seconds: dict[str, float] = dict.fromkeys(health, 0.0)
    with serve(home, env={"MMSEARCH_AUTH_FAILURES_PER_MINUTE": budget}) as base:
        with httpx.Client(base_url=base, timeout=60) as client:  # warm: models, cache, key
            auth = {"authorization": f"Bearer {reader}"}
            for text in QUERIES:
                client.post(PATH, json={"text": text, "k": 10}, headers=auth).raise_for_status()
        for round_no in range(args.rounds):
            shift = round_no % len(phases)
            for name, flood_id in phases[shift:] + phases[:shift]:
                if flood_id == "":
                    timed = measure(base, reader, args.health, args.searches)
                    statuses, elapsed = {}, 0.0
                else:
                    *timed, statuses, elapsed = flooded(base, reader, flood_id, args)
                health[name] += timed[0]
                search[name] += timed[1]
                answers[name].update(statuses)
                seconds[name] += elapsed
    return [
        (
            name,
            statistics.median(health[name]),
            statistics.median(search[name]),
            dict(answers[name]),
            seconds[name],
        )
        for name, _ in phases
    ]


def flooded(
    base: str, reader: str, key_id: str | None, args: argparse.Namespace
) -> tuple[list[float], list[float], dict[int, int], float]:
    """The timings while a flooding process runs, its answers by status, and its seconds."""
    context = multiprocessing.get_context("spawn")
    stop, started = context.Event(), context.Event()
    receive, send = context.Pipe(duplex=False)
    flooder = context.Process(
        target=flood_process,
        args=(base, key_id, args.flood_per_client, args.flood_limit, stop, started, send),
    )
    flooder.start()
    started.wait(30)
    time.sleep(args.warmup)  # let the flood spend its budget and fill the verifier
    tick = time.perf_counter()
    health, search = measure(base, reader, args.health, args.searches)
    stop.set()
    statuses = receive.recv() if receive.poll(args.flood_limit + 30) else {}
    flooder.join(30)
    return health, search, statuses, time.perf_counter() - tick + args.warmup


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--health", type=int, default=100, help="health checks per phase")
    parser.add_argument("--searches", type=int, default=30, help="searches per phase")
    parser.add_argument("--flood-per-client", type=int, default=5000)
    parser.add_argument("--flood-limit", type=float, default=60.0, help="seconds, at most")
    parser.add_argument("--warmup", type=float, default=2.0, help="flood seconds before timing")
    parser.add_argument("--rounds", type=int, default=3, help="times each phase is measured")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = sample_catalog_path().read_text("utf-8").splitlines()[: args.items]
        catalog = folder / "emoji.jsonl"
        catalog.write_text("\n".join(rows) + "\n", encoding="utf-8")
        home = folder / "home"
        report = Ingestor(Settings(home=home)).run(
            IngestOptions(catalog, "emoji", images_root=SAMPLE_EMOJI_DIR)
        )
        print(f"ingested {report.counts['items']} emoji")
        keys = KeyStore(home)
        reader = keys.create("reader", name="measured")[1]
        target, _ = keys.create("admin", name="flooded")
        results = {
            "default budget (20 failures/min per client and per key id)": run_phases(
                home, reader, target.key_id, args, "20", control=True
            ),
            "budgets lifted (every wrong key hashed; verifier bound only)": run_phases(
                home, reader, target.key_id, args, "1000000", control=False
            ),
        }

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    print(
        f"per phase: {args.rounds} rounds x ({args.health} /healthz, {args.searches} reader "
        "searches, interleaved)"
    )
    print("| server | phase | /healthz p50 ms | x idle | search p50 ms | x idle | flood answers |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for server, phases in results.items():
        idle_health, idle_search = phases[0][1], phases[0][2]
        for phase, health, search, statuses, elapsed in phases:
            answers = ", ".join(f"{code}: {count}" for code, count in sorted(statuses.items()))
            if statuses:
                answers += f" in {elapsed:.1f} s ({sum(statuses.values()) / elapsed:.0f}/s)"
            print(
                f"| {server} | {phase} | {health:.2f} | {health / idle_health:.2f} | "
                f"{search:.2f} | {search / idle_search:.2f} | {answers or '-'} |"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
