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

``--served`` times the search beside a running ``mmsearch serve`` instead: the server
(current tree) is started on the workspace and warmed with one search, then each run
is a fresh ``mmsearch search`` that finds it through ``<home>/server.json``, next to
the same search with ``--local`` (in its own process, as without a server):

    python benchmarks/cli_cold_start.py --home /tmp/cold/home --served --runs 5
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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


SERVED = "(a running mmsearch serve answers)"


def served_commands(home: Path) -> dict[str, list[str]]:
    search = ["search", "red heart", "-c", "demo", "--home", str(home)]
    return {
        f'mmsearch search "red heart" -c demo {SERVED}': search,
        'mmsearch search "red heart" -c demo --local': [*search, "--local"],
    }


def child_env(src: Path) -> dict[str, str]:
    """No server URL or key of the caller's: the server must be found, not named."""
    env = {k: v for k, v in os.environ.items() if k not in ("MMSEARCH_SERVER", "MMSEARCH_API_KEY")}
    return {**env, "PYTHONPATH": str(src)}


def run(src: Path, args: list[str], cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mmsearch", *args], env=child_env(src), cwd=cwd, capture_output=True
    )
    return time.perf_counter() - start, done.returncode, done.stderr.decode(errors="replace")


@contextlib.contextmanager
def running_server(home: Path, cwd: Path) -> Iterator[str]:
    """``mmsearch serve`` on ``home`` (current tree), answering and warm, stopped after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    argv = ["serve", "--home", str(home), "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(
        [sys.executable, "-m", "mmsearch", *argv], env=child_env(SRC), cwd=cwd
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start (exit code {server.poll()})")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        # /readyz opens every collection's table and loads its encoders (minutes on a
        # loaded host, longer than a search waits); then one search through the CLI.
        with urllib.request.urlopen(url + "/readyz", timeout=600):
            pass
        _, code, stderr = run(SRC, next(iter(served_commands(home).values())), cwd)
        if code != 0 or "answered by the server" not in stderr:
            raise SystemExit(f"the warm-up search was not answered by the server: {stderr}")
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--before", type=Path, help="src folder of the tree to compare with")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--setup", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--served", action="store_true", help="time search with a running server, and --local"
    )
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
    table = served_commands(args.home) if args.served else commands(args.home, catalog)
    times: dict[str, dict[str, list[float]]] = {t: {c: [] for c in table} for t in trees}
    codes: dict[str, int] = {}
    with running_server(args.home, root) if args.served else contextlib.nullcontext():
        for number in range(args.runs):
            for name, argv in table.items():
                for tree, src in trees.items():
                    seconds, code, stderr = run(src, argv, root)
                    if (
                        tree == "after"
                        and SERVED in name
                        and "answered by the server" not in stderr
                    ):
                        code = -1  # timed, but not what the row names: shown in the exit codes
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
