"""Hybrid query latency of mmsearch versions and of an in-process floor, interleaved in one run.

Why: on a shared 2-core host a latency figure moves 3-5x with the other jobs, so a
before/after comparison is only worth reporting when both sides run in the same
minutes. Each arm is a warm process of its own (``hybrid_arm.py``): an mmsearch
source tree (``NAME=.`` for this checkout's ``src/``, ``NAME=<git revision>`` for a
tree exported with ``git archive``) or ``floor`` (faiss HNSW + bm25s + RRF over the
rows and vectors mmsearch stored: ``pip install faiss-cpu bm25s`` in the venv; these
are benchmark-only dependencies). Queries go to the arms in turn, one query at a time,
the arm order rotating per query, until ``--budget`` seconds have passed.

The catalog and vectors are those of ``store_compare.py`` (Cranfield sentences x emoji,
MiniLM vectors composed from the encoded parts and cached once by its
``--encode-only``); the collection is ingested once per size with the cached vectors
and reused. Queries are encoded by the real MiniLM in every arm unless
``--no-encode`` (then the cached query vectors are looked up, and a figure shows the
search alone).

An mmsearch arm whose spec ends in ``+hot`` (``hot=.+hot``) runs with
``MMSEARCH_HOT_INDEX=1``: its searches come from the in-memory hot index
(``index/hot``), built from the same table when the arm starts; the arm reports the
index's memory and build time.

Reported per arm and mode: p50/p95/p99, the p50 ratio to the first arm, the share of
queries whose top 10 equals the first arm's (and the mean overlap), and for
``vector`` the recall@10 of the vector retriever against exact NumPy search.

Usage::

    python benchmarks/hybrid_latency.py --items 100000 --arm before=d8a9b8e --arm after=. \
        --modes hybrid vector --budget 300
    python benchmarks/hybrid_latency.py --items 10000 --arm before=d8a9b8e --arm now=. \
        --arm floor --modes hybrid --budget 300
    python benchmarks/hybrid_latency.py --items 100000 --arm store=. --arm hot=.+hot \
        --arm floor --modes hybrid filtered --interleave-modes --budget 300
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store_compare import (
    CACHED_FAMILY,
    SIGNALS,
    build_catalog,
    encode_or_load,
    exact_top,
    register_cached,
    where_for,
)

ROOT = Path(__file__).resolve().parents[1]
K = 10
WARM_UP = 10


@dataclass
class Arm:
    name: str
    process: subprocess.Popen[str]
    latencies: dict[str, list[float]] = field(default_factory=dict)
    tops: dict[str, dict[int, list[str]]] = field(default_factory=dict)
    stages: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        stdin: IO[str] | None = self.process.stdin
        stdout: IO[str] | None = self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise SystemExit(f"arm {self.name} exited (see its stderr above)")
        return json.loads(line)


def source_tree(spec: str, work: Path, overlay: list[Path]) -> Path:
    """The ``src`` folder of a git revision, exported once; ``.`` is HEAD with the
    ``overlay`` files copied from this checkout on top (so that other uncommitted work
    in a shared checkout stays out of the measurement)."""
    revision = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD" if spec == "." else spec],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    target = work / "trees" / (f"{revision}+overlay" if spec == "." else revision)
    if spec == "." and target.exists():
        shutil.rmtree(target)
    if not (target / "src").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    if spec == ".":
        for path in overlay:
            relative = path.resolve().relative_to(ROOT)
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, target / relative)
    return target / "src"


def ingest_once(work: Path, items: int, src: Path) -> Path:
    """The benchmark's workspace: the catalog ingested once with the cached vectors, by
    the first arm's source tree (so that every arm can read what it wrote)."""
    home = work / f"hybrid-home-{items}"
    if (home / "collections" / "bench" / "collection.json").exists():
        return home
    tick = time.perf_counter()
    command = [sys.executable, __file__, "--ingest-into", str(home), "--items", str(items)]
    command += ["--cache", str(work)]
    subprocess.run(command, check=True, env=dict(os.environ, PYTHONPATH=str(src)))
    print(f"ingested {items:,} items in {time.perf_counter() - tick:.1f} s", flush=True)
    return home


def ingest_into(home: Path, work: Path, items: int) -> None:
    from mmsearch.config import Settings
    from mmsearch.ingest import IngestOptions, Ingestor

    cache = encode_or_load(work, items, 400)
    settings = Settings(home=home, text_encoder=CACHED_FAMILY, query_cache_size=0)
    register_cached(cache)
    report = Ingestor(settings).run(IngestOptions(build_catalog(work, items), "bench"))
    print(f"ingest stages: {report.timings}", flush=True)


def start_arm(
    name: str, src: Path, floor: bool, home: Path, queries: Path, encode: bool, hot: bool = False
) -> Arm:
    command = [sys.executable, str(ROOT / "benchmarks" / "hybrid_arm.py"), "--home", str(home)]
    command += ["--queries", str(queries)]
    if floor:
        command.append("--floor")
    command += ["--src", str(src)]
    if not encode:
        command.append("--no-encode")
    # Idle arms must not spin: OpenMP threads busy-wait after their work by default,
    # which would take the cores from the arm whose turn it is.
    env = dict(os.environ, PYTHONPATH="", OMP_WAIT_POLICY="PASSIVE")
    if hot:  # searches from the in-memory hot index, built as the arm starts
        env["MMSEARCH_HOT_INDEX"] = "1"
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    arm = Arm(name, process)
    stdout = process.stdout
    assert stdout is not None
    ready = json.loads(stdout.readline() or "{}")
    if not ready.get("ready"):
        raise SystemExit(f"arm {name} did not start")
    print(f"arm {name}: {ready['mmsearch']}", flush=True)
    if ready.get("memory"):
        print(f"arm {name} hot index: {json.dumps(ready['memory'])}", flush=True)
    return arm


def request_for(mode: str, i: int, texts: list[str], categories: list[str]) -> dict[str, Any]:
    """``mode`` is keyword, vector, hybrid or filtered, optionally with ANN knobs:
    ``vector@nprobes=40,refine_factor=2`` (``exact=1`` bypasses the index)."""
    base, _, knobs = mode.partition("@")
    ann = {
        name: (value == "1" if name == "exact" else int(value))
        for name, _, value in (part.partition("=") for part in knobs.split(",") if part)
    }
    return {
        "text": texts[i % len(texts)],
        "k": K,
        "signals": SIGNALS.get(base),
        "where": where_for(i, categories)[0] if base == "filtered" else None,
        "ann": ann or None,
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def report(arms: list[Arm], modes: list[str], cache: Any) -> str:
    lines = [
        "| mode | arm | queries | p50 ms | p95 ms | p99 ms | p50 / first arm "
        "| top-10 identical to first arm | mean top-10 overlap | recall@10 vs exact |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode in modes:
        first = arms[0]
        base_p50 = pct(first.latencies[mode], 50)
        for arm in arms:
            lat = arm.latencies[mode]
            same, overlap = [], []
            for i, top in arm.tops[mode].items():
                ref = first.tops[mode].get(i)
                if ref is not None:
                    same.append(top == ref)
                    overlap.append(len(set(top) & set(ref)) / max(len(ref), 1))
            recall = "-"
            if mode.partition("@")[0] == "vector":
                scores = []
                for i, top in arm.tops[mode].items():
                    truth = exact_top(cache, i % len(cache.queries), K, None)
                    scores.append(len(set(top) & set(truth)) / len(truth))
                recall = f"{np.mean(scores):.3f}"
            lines.append(
                f"| {mode} | {arm.name} | {len(lat)} | {pct(lat, 50):.1f} | {pct(lat, 95):.1f} "
                f"| {pct(lat, 99):.1f} | {pct(lat, 50) / base_p50:.2f} "
                f"| {np.mean(same):.3f} | {np.mean(overlap):.3f} | {recall} |"
            )
    stage_lines = ["", "| mode | arm | stage p50 ms |", "| --- | --- | --- |"]
    for mode in modes:
        for arm in arms:
            parts = ", ".join(
                f"{name} {pct(values, 50):.1f}"
                for name, values in sorted(arm.stages.get(mode, {}).items())
            )
            stage_lines.append(f"| {mode} | {arm.name} | {parts} |")
    return "\n".join(lines + stage_lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        help="NAME=. (this checkout), NAME=<git revision>, or floor",
    )
    parser.add_argument("--modes", nargs="+", default=["hybrid"])
    parser.add_argument(
        "--budget", type=float, default=300.0, help="seconds per mode (all arms), or in all"
    )
    parser.add_argument("--queries", type=int, default=400, help="at most this many per mode")
    parser.add_argument("--no-encode", dest="encode", action="store_false")
    parser.add_argument(
        "--interleave-modes", action="store_true", help="modes take turns per query (one budget)"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mmsearch-store-compare"))
    parser.add_argument(
        "--overlay", type=Path, nargs="*", default=[], help="files the '.' arm takes from here"
    )
    parser.add_argument("--ingest-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.ingest_into is not None:
        ingest_into(args.ingest_into, args.cache, args.items)
        return
    if not args.arm:
        parser.error("give at least one --arm")
    sources: list[tuple[str, Path | None, bool]] = []
    for given in args.arm:
        name, _, spec = given.partition("=")
        spec, _, flag = spec.partition("+")
        tree = source_tree(spec, args.cache, args.overlay) if spec else None
        sources.append((name, tree, flag == "hot"))
    first_src = next(src for _, src, _ in sources if src is not None)
    cache = encode_or_load(args.cache, args.items, 400)
    print(
        f"{args.items:,} items, {cache.kind} MiniLM vectors (cached by store_compare.py "
        f"--encode-only), queries encoded: {args.encode}, load {os.getloadavg()}",
        flush=True,
    )
    home = ingest_once(args.cache, args.items, first_src)
    queries = Path(tempfile.mkdtemp(prefix="hybrid-", dir=args.cache)) / "queries.json"
    np.save(queries.with_suffix(".npy"), cache.query_vectors)
    queries.write_text(
        json.dumps(
            {
                "texts": cache.queries,
                "npy": str(queries.with_suffix(".npy")),
                "version": cache.version,
            }
        )
    )
    arms: list[Arm] = []
    for name, src, hot in sources:
        arm = start_arm(name, src or first_src, src is None, home, queries, args.encode, hot)
        arms.append(arm)
    categories = sorted(set(cache.categories))
    try:
        # Interleaved modes take turns query by query too, so that their latencies compare.
        groups = [args.modes] if args.interleave_modes else [[mode] for mode in args.modes]
        for modes in groups:
            runs = [(m, a) for m in modes for a in arms if a.name != "floor" or m == "hybrid"]
            for i in range(WARM_UP):
                for mode, arm in runs:
                    arm.ask(request_for(mode, 1000 + i, cache.queries, categories))
            started, done = time.perf_counter(), 0
            for i in range(args.queries):
                if i >= 20 and time.perf_counter() - started > args.budget:
                    break
                shift = i % len(runs)
                for mode, arm in runs[shift:] + runs[:shift]:
                    answer = arm.ask(request_for(mode, i, cache.queries, categories))
                    arm.latencies.setdefault(mode, []).append(answer["ms"])
                    arm.tops.setdefault(mode, {})[i] = answer["ids"]
                    for stage, ms in answer["stages"].items():
                        arm.stages.setdefault(mode, {}).setdefault(stage, []).append(ms)
                done = i + 1
            print(f"{', '.join(modes)}: {done} queries per arm, load {os.getloadavg()}", flush=True)
        print()
        print(report_safe(arms, args.modes, cache))
    finally:
        for arm in arms:
            if arm.process.stdin is not None:
                arm.process.stdin.close()
            arm.process.wait(timeout=30)


def report_safe(arms: list[Arm], modes: list[str], cache: Any) -> str:
    """The report over the arms that ran each mode (the floor answers hybrid only)."""
    out = []
    for mode in modes:
        ran = [a for a in arms if mode in a.latencies]
        out.append(report(ran, [mode], cache))
    return "\n\n".join(out)


if __name__ == "__main__":
    main()
