"""Ingest throughput against the encoders' own speed, on the emoji and a 20k-text catalog.

Why this exists: encoding is the part of an ingest that cannot be avoided, so the
honest measure of the pipeline (reading, validation, hashing, decoding, writing,
indexing) is how far its items/s falls below what the encoders alone achieve on the
same inputs. Both are measured in the same process and run, with the models loaded
before any timer starts:

- **raw**: the default text encoder on every item's text (batches of ``batch_size``),
  plus, for the emoji, the default image encoder on every pre-decoded image;
- **ingest**: ``Ingestor.run`` of the whole catalog into a new collection (best of
  ``--repeats``), with the stage timings it reports.

The emoji catalog is built from ``../shared/datasets/emoji`` (3,786 Noto images with
names); the text catalog joins Cranfield titles and abstract sentences into 20,000
rows with a title, a description and two attributes.

Usage::

    python benchmarks/ingest_throughput.py                  # both catalogs
    python benchmarks/ingest_throughput.py --only text --rows 5000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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

    @property
    def raw_s(self) -> float:
        return self.raw_text_s + self.raw_image_s

    def row(self) -> str:
        raw_rate = self.items / self.raw_s
        rate = self.items / self.ingest_s
        return (
            f"| {self.name} | {self.items:,} | {raw_rate:,.0f} | {rate:,.0f} | "
            f"{self.ingest_s / self.raw_s:.2f}x | "
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


def measure(name: str, catalog: Path, work: Path, repeats: int) -> Figures:
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

    best, timings = float("inf"), {}
    for _ in range(repeats):
        shutil.rmtree(settings.home, ignore_errors=True)
        tick = time.perf_counter()
        report = Ingestor(settings).run(IngestOptions(catalog, name))
        took = time.perf_counter() - tick
        assert report.counts["added"] == len(items), report.counts
        if took < best:
            best, timings = took, report.timings
    figures = Figures(name, len(items), raw_text, raw_image, best, timings)
    print(figures.row(), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["emoji", "text"], default=None)
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the text catalog")
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
        results.append(measure("emoji", emoji_catalog(work), work, args.repeats))
    if args.only in (None, "text"):
        results.append(measure("text", text_catalog(work, args.rows), work, args.repeats))
    print()
    print(
        "| catalog | items | raw encoders items/s | ingest items/s | ingest / raw time | "
        "ingest stages (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for figures in results:
        print(figures.row())
    for figures in results:
        summary: dict[str, Any] = {
            "catalog": figures.name,
            "items": figures.items,
            "raw_text_s": round(figures.raw_text_s, 2),
            "raw_image_s": round(figures.raw_image_s, 2),
            "ingest_s": round(figures.ingest_s, 2),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
