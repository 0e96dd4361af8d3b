"""What authentication and per-item ACL filtering cost per search, as a ratio.

Why this exists: every read now carries the caller's identity (a bearer key checked
against an argon2 hash, cached after the first verification) and an access node in
the store query (``acl IS NULL OR array_has_any(acl, [...])`` in LanceDB's prefilter).
The goal is at most 5% over the same search without either.

Two servers run side by side on 127.0.0.1 over the same workspace: one with auth
off (the local operator: no key, no ACL filter), one with auth on, searched with a
reader key whose groups see part of the catalog. Each query goes to both, in
alternating order, so drift of the machine hits both sides alike; the query
embedding cache is warmed on both first, so the figure isolates auth + ACL from
model time. The catalog is the emoji set (Noto images, names and keywords) from the
shared datasets folder, with random ACL groups given to 70% of the items.

Usage::

    python benchmarks/auth_overhead.py                  # 1,000 emoji, 3 rounds of 60 queries
    python benchmarks/auth_overhead.py --items 3786 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.config import Settings
from mmsearch.governance.keys import KeyStore
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.service.app import create_app

GROUPS = ("red-team", "blue-team", "green-team", "yellow-team")
DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "emoji"


def emoji_catalog(dataset: Path, folder: Path, items: int, seed: int) -> tuple[Path, list[str]]:
    """JSONL of emoji (name, keywords, Noto image) with random ACLs; also the query words."""
    tags = {
        entry["hexcode"].upper(): entry.get("tags", [])
        for entry in json.loads((dataset / "emojibase-en.json").read_text())
    }
    rng = random.Random(seed)
    rows, words = [], set()
    for entry in json.loads((dataset / "emoji-datasource.json").read_text())[:items]:
        image = dataset / "google-64" / entry["image"]
        if not image.is_file():
            continue
        keywords = tags.get(entry["unified"].upper()) or tags.get(
            entry["unified"].upper().replace("-FE0F", ""), []
        )
        words.update(keywords)
        acl = rng.sample(GROUPS, rng.randint(1, 2)) if rng.random() < 0.7 else None
        rows.append(
            {
                "id": entry["unified"],
                "name": (entry.get("name") or entry["short_names"][0]).lower(),
                "keywords": " ".join(keywords),
                "category": entry.get("category") or "none",
                "image": str(image),
                **({"acl": acl} if acl else {}),
            }
        )
    catalog = folder / "emoji.jsonl"
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return catalog, sorted(words)


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        catalog, words = emoji_catalog(args.dataset, folder, args.items, args.seed)
        base = Settings(home=folder / "home", rate_limit_per_minute=0, allowed_roots=[folder])
        tick = time.perf_counter()
        mapping = FieldMapping(title="name", text=["keywords"], attributes=["category"], acl="acl")
        report = Ingestor(base).run(IngestOptions(catalog, "emoji", mapping))
        print(f"ingested {report.counts['items']} emoji in {time.perf_counter() - tick:.1f} s")
        secret = KeyStore(base.home).create("reader", groups=["red-team", "blue-team"])[1]
        queries = random.Random(args.seed).sample(words, min(args.queries, len(words)))
        timings: dict[str, list[float]] = {"off": [], "on": []}
        hits: dict[str, int] = {"off": 0, "on": 0}
        open_settings = base.model_copy(update={"auth": "off"})
        closed_settings = base.model_copy(update={"auth": "on"})
        with serve(open_settings) as open_url, serve(closed_settings) as closed_url:
            clients = {
                "off": httpx.Client(base_url=open_url, timeout=60),
                "on": httpx.Client(
                    base_url=closed_url,
                    timeout=60,
                    headers={"authorization": f"Bearer {secret}"},
                ),
            }
            path = "/v1/collections/emoji/search"
            for text in queries:  # warm both query-embedding caches and the key cache
                for client in clients.values():
                    client.post(path, json={"text": text, "k": 10}).raise_for_status()
            for round_no in range(args.rounds):
                for n, text in enumerate(queries):
                    order = ("off", "on") if (n + round_no) % 2 == 0 else ("on", "off")
                    for side in order:
                        started = time.perf_counter()
                        response = clients[side].post(path, json={"text": text, "k": 10})
                        timings[side].append((time.perf_counter() - started) * 1000.0)
                        response.raise_for_status()
                        hits[side] += len(response.json()["hits"])
            for client in clients.values():
                client.close()

    p50 = {side: statistics.median(values) for side, values in timings.items()}
    mean = {side: statistics.fmean(values) for side, values in timings.items()}
    print(f"machine: {platform.machine()}, {platform.python_version()}, {sys.platform}")
    print(
        f"requests per side: {len(timings['on'])} ({args.rounds} rounds x {len(queries)} queries)"
    )
    print("| side | p50 ms | mean ms | hits returned |")
    print("| --- | ---: | ---: | ---: |")
    for side, label in (("off", "auth off, no ACL filter"), ("on", "bearer key + ACL filter")):
        print(f"| {label} | {p50[side]:.2f} | {mean[side]:.2f} | {hits[side]} |")
    print(f"overhead ratio p50: {p50['on'] / p50['off']:.3f}, mean: {mean['on'] / mean['off']:.3f}")


if __name__ == "__main__":
    main()
