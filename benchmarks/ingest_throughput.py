"""Ingest throughput against the encoders' own speed, on the emoji and a 20k-text catalog.

Why this exists: encoding is the part of an ingest that cannot be avoided, so the
honest measure of the pipeline (reading, validation, hashing, decoding, writing,
indexing) is how far its items/s falls below what the encoders alone achieve on the
same inputs. Both are measured in the same process and run, with the models loaded
before any timer starts:

- **raw**: the default text encoder on every item's text (batches of ``batch_size``),
  plus, for the emoji, the default image encoder on every pre-decoded image;
- **ingest**: ``Ingestor.run`` of the whole catalog into a new collection (best of
  ``--repeats``), with the stage timings it reports;
- **CLI** (``--cli``): ``mmsearch ingest`` of the same catalog in a new process, start-up
  and model loading included, as a user runs it.

Each is timed in wall seconds and in CPU seconds (this process's, or the child's for the
CLI): on a host that other jobs share, the CPU ratio is the steadier of the two.

The emoji catalog is built from ``../shared/datasets/emoji`` (3,786 Noto images with
names); the text catalog joins Cranfield titles and abstract sentences into 20,000
rows with a title, a description and two attributes; the product catalog is
``ingest_and_query.py``'s synthetic products (title, one-sentence description,
category, price) without their images.

Usage::

    python benchmarks/ingest_throughput.py                  # both catalogs
    python benchmarks/ingest_throughput.py --only text --rows 5000
    python benchmarks/ingest_throughput.py --only product --rows 10000 --cli --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@dataclass
class Figures:
    name: str
    items: int
    raw_text_s: float
    raw_image_s: float
    ingest_s: float
    timings: dict[str, float]
    raw_cpu_s: float = 0.0
    ingest_cpu_s: float = 0.0
    cli_s: float | None = None
    cli_cpu_s: float | None = None

    @property
    def raw_s(self) -> float:
        return self.raw_text_s + self.raw_image_s

    def row(self) -> str:
        raw_rate = self.items / self.raw_s
        rate = self.items / self.ingest_s
        cli = (
            f"{self.cli_s / self.raw_s:.2f}x / {self.cli_cpu_s / self.raw_cpu_s:.2f}x"
            if self.cli_s is not None and self.cli_cpu_s is not None
            else "-"
        )
        return (
            f"| {self.name} | {self.items:,} | {raw_rate:,.0f} | {rate:,.0f} | "
            f"{self.ingest_s / self.raw_s:.2f}x | {self.ingest_cpu_s / self.raw_cpu_s:.2f}x | "
            f"{cli} | "
            + ", ".join(f"{k} {v:.1f}" for k, v in self.timings.items() if v >= 0.05)
            + " |"
        )


def emoji_catalog(work: Path) -> Path:
    from mmsearch.datasets.emoji import build_emoji

    out = work / "emoji"
    if not (out / "catalog.jsonl").exists():
        build_emoji(SHARED / "emoji", out)
    return out / "catalog.jsonl"


def text_catalog(work: Path, rows: int) -> Path:
    """Cranfield titles and abstract sentences, recombined into ``rows`` distinct rows."""
    path = work / f"text-{rows}.jsonl"
    if path.exists():
        return path
    raw = (SHARED / "cranfield" / "cran.all.1400").read_text(encoding="utf-8")
    titles, sentences = [], []
    for record in raw.split(".I ")[1:]:
        fields = dict(re.findall(r"\.([TAWB])\n(.*?)(?=\n\.[TAWB]\n|\Z)", record, re.S))
        titles.append(" ".join(fields.get("T", "").split()))
        sentences += [s.strip() for s in " ".join(fields.get("W", "").split()).split(". ")]
    sentences = [s for s in sentences if len(s) > 20]
    with path.open("w", encoding="utf-8") as handle:
        for n in range(rows):
            record = {
                "id": f"doc-{n}",
                "title": titles[n % len(titles)],
                "description": ". ".join(sentences[(n * 3 + k) % len(sentences)] for k in range(3)),
                "category": ["aero", "heat", "structures", "flow"][n % 4],
                "year": 1950 + n % 30,
            }
            handle.write(json.dumps(record) + "\n")
    return path


def product_catalog(work: Path, rows: int) -> Path:
    """``ingest_and_query.py``'s synthetic products, text and attributes only."""
    path = work / f"product-{rows}.jsonl"
    if path.exists():
        return path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import numpy as np
    from ingest_and_query import catalog_row, make_item_specs

    rng = np.random.default_rng(0)
    with path.open("w", encoding="utf-8") as handle:
        for spec in make_item_specs(rows, 0):
            record = catalog_row(spec, rng)
            record.pop("image")
            handle.write(json.dumps(record) + "\n")
    return path


def run_cli(catalog: Path, name: str, home: Path) -> tuple[float, float]:
    """``mmsearch ingest`` in a new process: wall seconds and the child's CPU seconds."""
    shutil.rmtree(home, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tick = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mmsearch", "ingest", str(catalog), "-c", name, "--home", str(home)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - tick
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(name: str, catalog: Path, work: Path, repeats: int, cli: bool = False) -> Figures:
    from mmsearch.catalog.item import RawRecord
    from mmsearch.catalog.mapping import FieldMapping, guess_mapping
    from mmsearch.catalog.normalise import infer_attribute_specs, normalise_record
    from mmsearch.catalog.readers import open_catalog
    from mmsearch.config import Settings
    from mmsearch.encoders.base import create_encoder
    from mmsearch.ingest import IngestOptions, Ingestor
    from mmsearch.media.images import load_image
    from mmsearch.media.paths import ImageRoots

    settings = Settings(home=work / "home")
    records = [r for r in open_catalog(catalog).rows() if isinstance(r, RawRecord)]
    mapping = guess_mapping((r.data for r in records[:1000]), FieldMapping())
    specs = infer_attribute_specs([r.data for r in records[:1000]], mapping.attributes or [])
    roots = ImageRoots.of(catalog.parent)
    items = [normalise_record(r, mapping, specs, roots) for r in records]
    texts = [item.semantic_text for item in items]  # type: ignore[union-attr]
    text_encoder = create_encoder(settings.text_encoder)
    image_encoder = create_encoder(settings.image_encoder) if mapping.images else None
    batch = settings.batch_size

    text_encoder.encode_texts(texts[:batch])  # warm-up
    cpu_tick = time.process_time()
    tick = time.perf_counter()
    for start in range(0, len(texts), batch):
        text_encoder.encode_texts(texts[start : start + batch])
    raw_text = time.perf_counter() - tick
    raw_image = 0.0
    if image_encoder is not None:
        images = [load_image(Path(p)) for item in items for p in item.images]  # type: ignore[union-attr]
        image_encoder.encode_images(images[:batch])
        tick = time.perf_counter()
        for start in range(0, len(images), batch):
            image_encoder.encode_images(images[start : start + batch])
        raw_image = time.perf_counter() - tick
        del images
    raw_cpu = time.process_time() - cpu_tick  # decoding the images is outside it

    best, best_cpu, timings = float("inf"), float("inf"), {}
    for _ in range(repeats):
        shutil.rmtree(settings.home, ignore_errors=True)
        cpu_tick = time.process_time()
        tick = time.perf_counter()
        report = Ingestor(settings).run(IngestOptions(catalog, name))
        took = time.perf_counter() - tick
        assert report.counts["added"] == len(items), report.counts
        if took < best:
            best, timings = took, report.timings
        best_cpu = min(best_cpu, time.process_time() - cpu_tick)
    figures = Figures(name, len(items), raw_text, raw_image, best, timings, raw_cpu, best_cpu)
    if cli:
        runs = [run_cli(catalog, name, work / "cli-home") for _ in range(repeats)]
        figures.cli_s = min(wall for wall, _ in runs)
        figures.cli_cpu_s = min(cpu for _, cpu in runs)
    print(figures.row(), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["emoji", "text", "product"], default=None)
    parser.add_argument(
        "--rows", type=int, default=20_000, help="rows of the text or product catalog"
    )
    parser.add_argument(
        "--cli", action="store_true", help="also time `mmsearch ingest` in a new process"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mmsearch-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs",
        flush=True,
    )
    results: list[Figures] = []
    if args.only in (None, "emoji"):
        results.append(measure("emoji", emoji_catalog(work), work, args.repeats, args.cli))
    if args.only in (None, "text"):
        catalog = text_catalog(work, args.rows)
        results.append(measure("text", catalog, work, args.repeats, args.cli))
    if args.only == "product":
        catalog = product_catalog(work, args.rows)
        results.append(measure("product", catalog, work, args.repeats, args.cli))
    print(f"load average at the end: {os.getloadavg()}")
    print()
    print(
        "| catalog | items | raw encoders items/s | ingest items/s | ingest / raw time | "
        "ingest / raw CPU | CLI / raw time / CPU | ingest stages (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for figures in results:
        print(figures.row())
    for figures in results:
        summary: dict[str, Any] = {
            "catalog": figures.name,
            "items": figures.items,
            "raw_text_s": round(figures.raw_text_s, 2),
            "raw_image_s": round(figures.raw_image_s, 2),
            "ingest_s": round(figures.ingest_s, 2),
            "raw_cpu_s": round(figures.raw_cpu_s, 2),
            "ingest_cpu_s": round(figures.ingest_cpu_s, 2),
            "cli_s": figures.cli_s and round(figures.cli_s, 2),
            "cli_cpu_s": figures.cli_cpu_s and round(figures.cli_cpu_s, 2),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
