"""What enforcing a moderation policy costs: at ingest per item, and ``policy apply``.

Data: the 400 sample emoji shipped with mmsearch (``sample_data/emoji``), ingested
with the offline default encoders (``minilm``, ``visual``). The policy bans a seeded
sample of ``--banned`` of those emoji (quarantine, standard strictness) and flags
three words in any text field, so every item is fingerprinted and evaluated.

Three runs in a fresh workspace each:

1. ``plain``: the catalog ingested into an unbound collection (the baseline);
2. ``bound``: the same catalog into a collection bound to the policy before the
   catalog comes in (one seed item creates it); the ingest report's ``moderate``
   timing is PDQ fingerprinting plus evaluation, divided per item;
3. ``apply``: on the plain collection, bound afterwards: the first ``policy apply``
   reads every image back (no fingerprint stored yet), the second uses the stored
   fingerprints (what a policy change costs).

Usage::

    python benchmarks/moderation_enforcement.py --banned 50 --seed 0 [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mmsearch.collection_state import CollectionState, PolicyBinding
from mmsearch.config import Settings
from mmsearch.filters.expr import IsNull
from mmsearch.index.open import open_build_index
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ingest.policy_apply import apply_policy
from mmsearch.moderation.decisions import HIDDEN_COLUMN
from mmsearch.moderation.store import PolicyStore
from mmsearch.sample_data import SAMPLE_EMOJI_DIR, sample_catalog_path
from mmsearch.workspace import Workspace

POLICY = """
[[rules]]
id = "banned"
action = "quarantine"
[rules.banned_images]
folder = "banned"
strictness = "standard"

[[rules]]
id = "words"
action = "flag"
[rules.text]
words = ["skull", "bomb", "pistol"]
"""


def bind(settings: Settings, collection: str) -> None:
    def change(state: CollectionState) -> None:
        state.moderation = PolicyBinding(policy="bench")

    Workspace(settings.home).collection(collection).update_state(change)


def ingest(settings: Settings, catalog: Path, collection: str) -> tuple[float, dict]:
    started = time.perf_counter()
    options = IngestOptions(catalog, collection, images_root=SAMPLE_EMOJI_DIR)
    report = Ingestor(settings).run(options)
    return time.perf_counter() - started, {
        "counts": report.counts,
        "timings": {k: round(v, 3) for k, v in report.timings.items()},
    }


def hidden_items(settings: Settings, collection: str) -> int:
    """Items of the collection's live build that search leaves out."""
    folder = Workspace(settings.home).collection(collection)
    index = open_build_index(folder, folder.live_manifest(), settings)
    return index.count(IsNull(HIDDEN_COLUMN, negated=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--banned", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="every figure, as JSON")
    args = parser.parse_args()
    images = sorted((SAMPLE_EMOJI_DIR / "images").glob("*.png"))
    with tempfile.TemporaryDirectory(prefix="mmsearch-moderation-bench-") as tmp:
        root = Path(tmp)
        (root / "policy" / "banned").mkdir(parents=True)
        for path in random.Random(args.seed).sample(images, args.banned):
            shutil.copy(path, root / "policy" / "banned" / path.name)
        (root / "policy" / "bench.toml").write_text(POLICY, encoding="utf-8")
        catalog = sample_catalog_path()
        seed = root / "seed.jsonl"
        first = json.loads(catalog.read_text(encoding="utf-8").splitlines()[0])
        first["id"] = "seed"
        seed.write_text(json.dumps(first) + "\n", encoding="utf-8")
        settings = Settings(home=root / "ws")
        PolicyStore(settings.home).install("bench", root / "policy" / "bench.toml")
        results: dict[str, object] = {}

        ingest(settings, seed, "warm")  # load the models once, outside the figures
        seconds, plain = ingest(settings, catalog, "plain")
        results["plain"] = {"seconds": round(seconds, 2), **plain}

        ingest(settings, seed, "bound")
        bind(settings, "bound")
        seconds, bound = ingest(settings, catalog, "bound")
        items = bound["counts"]["added"] + bound["counts"]["failed"]
        moderate_s = bound["timings"].get("moderate", 0.0)
        results["bound"] = {
            "seconds": round(seconds, 2),
            "moderate_ms_per_item": round(1000 * moderate_s / max(items, 1), 2),
            "hidden": hidden_items(settings, "bound"),
            **bound,
        }

        bind(settings, "plain")
        folder = Workspace(settings.home).collection("plain")
        for label in ("apply_first", "apply_stored"):
            report = apply_policy(folder, settings, actor="bench")
            results[label] = {
                "seconds": round(report.seconds, 3),
                "items": report.items,
                "fingerprinted": report.fingerprinted,
                "changed": {k: len(v) for k, v in report.changed.items()},
            }
        results["host"] = {
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        }
        print(json.dumps(results, indent=2) if args.json else "\n".join(summary(results)))


def summary(results: dict) -> list[str]:
    """The figures docs/BENCHMARKS.md quotes."""
    plain, bound = results["plain"], results["bound"]
    first, stored = results["apply_first"], results["apply_stored"]
    pt, bt = plain["timings"], bound["timings"]
    n = plain["counts"]["added"]
    return [
        f"plain ingest, {n} items:  {plain['seconds']:.2f} s (encode_text "
        f"{pt['encode_text']:.1f} s, decode {pt['decode']:.1f} s)",
        f"bound ingest, {n} items:  {bound['seconds']:.2f} s (encode_text "
        f"{bt['encode_text']:.1f} s, decode incl. fingerprints {bt['decode']:.1f} s)",
        f"                          moderate {bt.get('moderate', 0.0):.2f} s = "
        f"{bound['moderate_ms_per_item']:.2f} ms per item; {bound['hidden']} items hidden",
        f"policy apply, first:       {first['seconds']:.2f} s for {first['items']} items "
        f"({first['fingerprinted']} fingerprinted from their files)",
        f"policy apply, stored:      {stored['seconds']:.2f} s for {stored['items']} items "
        f"({stored['fingerprinted']} fingerprinted, "
        f"{'nothing changed' if not sum(stored['changed'].values()) else 'changes'})",
    ]


if __name__ == "__main__":
    main()
