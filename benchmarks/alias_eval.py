"""Codes and aliases: emoji short names as queries, with and without the alias field.

Why this exists: a query that is an item's code ("flag-eg", "tada") names one item, but
keyword and vector search rank such a name weakly when the code shares few words with
the item's title ("tada" → "party popper"). The alias field (``--alias-field``,
``catalog/aliases.py``) pins the items holding the code first. This measures both arms
on the same items and queries:

- catalog: the 3,786 Noto emoji by name (the emojibase label; MiniLM + BM25, the same
  text as every emoji benchmark), with the emoji-datasource ``short_names`` as the
  alias field of each base emoji (skin-tone variants have none of their own);
- queries: the held-out half (the builders' seeded split of ``a-<id>``) of the base
  emoji, one query each: its first short name; the one relevant item is that emoji;
- arms: the collection without aliases mapped (``--plain-home``, e.g. the collection of
  ``graph_eval.py``: same names) and one with them, both RRF, graph routing off;
- subsets: queries whose words are not all words of the title, and flags (``flag-*``);
- cost: search time per query with the alias lookup against without, interleaved.

Usage::

    python benchmarks/alias_eval.py --work /tmp/gf/alias --plain-home /tmp/ge/home \\
        --json /tmp/gf/alias.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.config import Settings
from mmsearch.datasets.common import split_of, write_jsonl
from mmsearch.datasets.emoji import load_records
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ranking.tuning import mean, paired_p, per_query_ndcg10
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace

COLLECTION = "emoji_alias"


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def prepare(source: Path, work: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The catalog (id, name, short_names) and the held-out short-name queries."""
    records, _ = load_records(source)
    datasource = json.loads((source / "emoji-datasource.json").read_text(encoding="utf-8"))
    # Catalog ids are the upper-cased ``unified`` code points (FE0F kept).
    short = {e["unified"].upper(): list(e.get("short_names") or []) for e in datasource}
    rows = []
    queries = []
    for record in records:
        row: dict[str, Any] = {"id": record.id, "name": record.name}
        names = short.get(record.id)
        if names:
            row["short_names"] = names
            if split_of(f"a-{record.id}") == "test":
                queries.append({"id": f"a-{record.id}", "text": names[0], "item": record.id})
        rows.append(row)
    catalog = work / "catalog.jsonl"
    write_jsonl(catalog, rows)
    return catalog, queries


def run(searcher: Searcher, text: str) -> tuple[dict[str, float], float]:
    tick = time.perf_counter()
    result = searcher.search(SearchRequest(text=text, k=10, fusion="rrf", graph=False))
    return {hit.id: hit.score for hit in result.hits}, time.perf_counter() - tick


def lookup_cost(searcher: Searcher, queries: list[dict[str, Any]]) -> int:
    """The alias lookup's own cost: one collection, the same queries, the lookup on and
    off (off = the build's mapping read as naming no alias field), interleaved."""
    mapped = list(searcher.manifest.mapping.aliases)
    times: dict[bool, list[float]] = {True: [], False: []}
    for text in (q["text"] for q in queries[:5]):  # warm
        run(searcher, text)
    for position, query in enumerate(queries):
        for on in (True, False) if position % 2 == 0 else (False, True):
            searcher.manifest.mapping.aliases = mapped if on else []
            times[on].append(run(searcher, query["text"])[1])
    searcher.manifest.mapping.aliases = mapped
    on, off = statistics.fmean(times[True]), statistics.fmean(times[False])
    print(
        json.dumps(
            {
                "queries": len(queries),
                "ms_lookup_off": round(1000 * off, 2),
                "ms_lookup_on": round(1000 * on, 2),
                "ratio_on_to_off": round(on / off, 3),
            },
            indent=2,
        )
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--source", type=Path, default=Path("/work/shared/datasets/emoji"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/alias-eval"))
    parser.add_argument("--plain-home", type=Path, required=True, help="emoji without aliases")
    parser.add_argument("--plain-collection", default="emoji")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--lookup-cost",
        type=int,
        default=0,
        help="only time N queries on the alias collection with the lookup on and off",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    catalog, queries = prepare(args.source, args.work)
    settings = Settings(home=args.work / "home")
    if Workspace(settings.home).find(COLLECTION) is None:
        mapping = FieldMapping(title="name", aliases=["short_names"], attributes=[])
        Ingestor(settings).run(IngestOptions(catalog, COLLECTION, mapping))
    with_alias = Searcher(settings, COLLECTION)
    if args.lookup_cost:
        return lookup_cost(with_alias, queries[: args.lookup_cost])
    plain = Searcher(Settings(home=args.plain_home), args.plain_collection)
    judgments = {q["id"]: {q["item"]: 1} for q in queries}
    titles = {row["id"]: row["name"] for row in map(json.loads, catalog.open())}
    for searcher in (with_alias, plain):  # warm: models loaded, caches filled
        run(searcher, queries[0]["text"])
    runs: dict[str, dict[str, dict[str, float]]] = {"without": {}, "with": {}}
    times: dict[str, list[float]] = {"without": [], "with": []}
    for position, query in enumerate(queries):
        arms = [("without", plain), ("with", with_alias)]
        for arm, searcher in arms if position % 2 == 0 else arms[::-1]:
            runs[arm][query["id"]], spent = run(searcher, query["text"])
            times[arm].append(spent)
    scores = {arm: per_query_ndcg10(r, judgments) for arm, r in runs.items()}
    subsets = {
        "all": [q["id"] for q in queries],
        "query words not all in the title": [
            q["id"] for q in queries if not words(q["text"]) <= words(titles[q["item"]])
        ],
        "flags (flag-*)": [q["id"] for q in queries if q["text"].startswith("flag-")],
    }
    rows = []
    for name, ids in subsets.items():
        a = {q: scores["without"][q] for q in ids}
        b = {q: scores["with"][q] for q in ids}
        p = paired_p(b, a)
        rows.append(
            {
                "subset": name,
                "queries": len(ids),
                "without_alias": round(mean(a), 4),
                "with_alias": round(mean(b), 4),
                "paired_t_p": None if p is None else float(f"{p:.3g}"),
            }
        )
    figures = {
        "queries": len(queries),
        "rows": rows,
        "ms_without": round(1000 * statistics.fmean(times["without"]), 2),
        "ms_with": round(1000 * statistics.fmean(times["with"]), 2),
        "ratio_with_to_without": round(
            statistics.fmean(times["with"]) / statistics.fmean(times["without"]), 3
        ),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
