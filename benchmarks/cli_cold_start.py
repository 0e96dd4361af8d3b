"""Cold wall time of first-hour CLI commands: each one a fresh process, median of N.

What a new user waits for: ``--help``, a search on a small collection, a ``--where``
typo, an ``ingest --dry-run`` naming a column the catalog lacks, and a ``rebuild`` with
nothing to do. With ``--before SRC`` (the ``src`` folder of an older tree, e.g. from
``git archive <commit> src | tar -x -C /tmp/before``) each command also runs against
that tree, alternating run by run so that background load hits both sides alike.

    python benchmarks/cli_cold_start.py --home /tmp/cold/home --setup
    python benchmarks/cli_cold_start.py --home /tmp/cold/home --before /tmp/before/src --runs 5

``--setup`` writes ``products.csv`` (200 rows) beside the workspace and builds the
``demo`` collection (``mmsearch demo``) and ``shop`` (that catalog) with the current tree.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def write_products(path: Path, rows: int = 200) -> None:
    """The issue's catalog: ids, texts, brand, price, colour and a true/false column."""
    rng = random.Random(1)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "description", "brand", "price", "colour", "in_stock"])
        for n in range(rows):
            colour = rng.choice(["red", "blue", "green", "black"])
            writer.writerow(
                [
                    f"P{n:04d}",
                    f"{colour} item {n}",
                    f"A {colour} product number {n}",
                    rng.choice(["Acme", "Globex", "Initech"]),
                    round(rng.uniform(1, 100), 2),
                    colour,
                    rng.choice(["true", "false"]),
                ]
            )


def commands(home: Path, catalog: Path) -> dict[str, list[str]]:
    h = str(home)
    return {
        "mmsearch --help": ["--help"],
        'mmsearch search "red heart" -c demo': ["search", "red heart", "-c", "demo", "--home", h],
        "mmsearch search ... --where 'category = '": [
            "search", "red heart", "-c", "demo", "--home", h, "--where", "category = ",
        ],
        "mmsearch ingest products.csv --attribute colour_name --dry-run": [
            "ingest", str(catalog), "-c", "shop2", "--home", h,
            "--attribute", "colour_name", "--dry-run",
        ],
        "mmsearch rebuild -c shop (nothing to do)": ["rebuild", "-c", "shop", "--home", h],
    }  # fmt: skip


def run(src: Path, args: list[str], cwd: Path) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mmsearch", *args], env=env, cwd=cwd, capture_output=True
    )
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--before", type=Path, help="src folder of the tree to compare with")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--setup", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.home.resolve().parent
    catalog = root / "products.csv"
    if args.setup:
        root.mkdir(parents=True, exist_ok=True)
        write_products(catalog)
        shutil.rmtree(args.home, ignore_errors=True)
        home = str(args.home)
        for setup in (
            ["demo", "--home", home],
            ["ingest", str(catalog), "-c", "shop", "--home", home],
        ):
            subprocess.run([sys.executable, "-m", "mmsearch", *setup], check=True, cwd=root)
    trees = {"after": SRC, **({"before": args.before} if args.before else {})}
    table = commands(args.home, catalog)
    times: dict[str, dict[str, list[float]]] = {t: {c: [] for c in table} for t in trees}
    codes: dict[str, int] = {}
    for number in range(args.runs):
        for name, argv in table.items():
            for tree, src in trees.items():
                seconds, code = run(src, argv, root)
                times[tree][name].append(seconds)
                codes[f"{tree}: {name}"] = code
        print(f"round {number + 1} of {args.runs}", file=sys.stderr, flush=True)
    print("| command | " + " | ".join(f"{t} (s)" for t in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for name in table:
        cells = " | ".join(f"{statistics.median(times[t][name]):.2f}" for t in trees)
        print(f"| `{name}` | {cells} |")
    print("exit codes:", json.dumps(codes))
    if args.json:
        args.json.write_text(json.dumps({"times": times, "codes": codes}, indent=1))


if __name__ == "__main__":
    main()
