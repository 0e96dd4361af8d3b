"""What authentication and per-item ACL filtering cost per search, as a ratio.

Why this exists: every read now carries the caller's identity (a bearer key checked
against an argon2 hash, cached after the first verification) and an access node in
the store query (``acl IS NULL OR array_has_any(acl, [...])`` in LanceDB's prefilter).
The goal is at most 5% over the same search without either. Four sides are timed:
no auth; no auth with a ``where`` that admits every row (what any filter costs in
LanceDB); an admin key (authentication alone: admins carry no ACL node); a reader key
(authentication and the ACL node).

Two ``mmsearch serve`` processes run side by side on 127.0.0.1 over the same
workspace: one with ``--insecure-no-auth`` (the local operator: no key, no ACL
filter), one with keys required, searched with a reader key whose groups see part of
the catalog. Each query goes to both, in
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
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.config import Settings
from mmsearch.governance.keys import KeyStore
from mmsearch.ingest import IngestOptions, Ingestor

GROUPS = ("red-team", "blue-team", "green-team", "yellow-team")
SIDES = ["off", "off+filter", "admin", "reader"]
LABELS = {
    "off": "auth off, no filter",
    "off+filter": "auth off, a `where` that admits every row",
    "admin": "admin key (authenticated, unrestricted: no ACL node)",
    "reader": "reader key (authenticated + ACL node in the store query)",
}
ADMITS_ALL = {"where": "category IS NOT NULL"}
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
                "image": entry["image"],
                **({"acl": acl} if acl else {}),
            }
        )
    catalog = folder / "emoji.jsonl"
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return catalog, sorted(words)


@contextmanager
def serve(home: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``mmsearch serve`` in its own process (the client's loop shares no GIL with it),
    without rate limits; yields its URL once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "MMSEARCH_HOME": str(home),
        "MMSEARCH_RATE_LIMIT_PER_MINUTE": "0",
        **(env or {}),
    }
    command = [sys.executable, "-m", "mmsearch", "serve", "--port", str(port), *extra]
    server = subprocess.Popen(
        [*command, "--log-level", "warning"], env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


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
        images = args.dataset / "google-64"
        report = Ingestor(base).run(IngestOptions(catalog, "emoji", mapping, images))
        print(f"ingested {report.counts['items']} emoji in {time.perf_counter() - tick:.1f} s")
        keys = KeyStore(base.home)
        reader = keys.create("reader", groups=["red-team", "blue-team"])[1]
        admin = keys.create("admin")[1]
        queries = random.Random(args.seed).sample(words, min(args.queries, len(words)))
        timings: dict[str, list[float]] = {side: [] for side in SIDES}
        hits: dict[str, int] = dict.fromkeys(SIDES, 0)
        with (
            serve(base.home, "--insecure-no-auth") as open_url,
            serve(base.home) as closed_url,  # loopback with keys: keys required
        ):
            clients = {
                "off": (httpx.Client(base_url=open_url, timeout=60), {}),
                "off+filter": (httpx.Client(base_url=open_url, timeout=60), ADMITS_ALL),
                "admin": (_client(closed_url, admin), {}),
                "reader": (_client(closed_url, reader), {}),
            }
            path = "/v1/collections/emoji/search"
            for text in queries:  # warm both query-embedding caches and the key cache
                for client, extra in clients.values():
                    response = client.post(path, json={"text": text, "k": 10, **extra})
                    if response.status_code != 200:
                        raise SystemExit(f"search failed: {response.text}")
            for round_no in range(args.rounds):
                for n, text in enumerate(queries):
                    shift = (n + round_no) % len(SIDES)  # rotate the order: no side always first
                    for side in SIDES[shift:] + SIDES[:shift]:
                        client, extra = clients[side]
                        started = time.perf_counter()
                        response = client.post(path, json={"text": text, "k": 10, **extra})
                        timings[side].append((time.perf_counter() - started) * 1000.0)
                        response.raise_for_status()
                        hits[side] += len(response.json()["hits"])
            for client, _ in clients.values():
                client.close()

    p50 = {side: statistics.median(values) for side, values in timings.items()}
    mean = {side: statistics.fmean(values) for side, values in timings.items()}
    print(f"machine: {platform.machine()}, {platform.python_version()}, {sys.platform}")
    runs = f"{args.rounds} rounds x {len(queries)} queries"
    print(f"requests per side: {len(timings['off'])} ({runs})")
    print("| side | p50 ms | mean ms | p50 / auth off | hits returned |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for side in SIDES:
        ratio = p50[side] / p50["off"]
        print(
            f"| {LABELS[side]} | {p50[side]:.2f} | {mean[side]:.2f} | {ratio:.3f} | {hits[side]} |"
        )
    print(
        f"auth alone (admin key, no ACL node) p50 ratio: {p50['admin'] / p50['off']:.3f}; "
        f"ACL node vs an attribute filter admitting every row: "
        f"{p50['reader'] / p50['off+filter']:.3f}"
    )


def _client(url: str, secret: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60, headers={"authorization": f"Bearer {secret}"})


if __name__ == "__main__":
    main()
