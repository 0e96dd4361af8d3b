"""End-to-end benchmark: ingest a synthetic multimodal catalog, then query it four ways.

Why this exists: the numbers that matter to someone running mmsearch are how many
catalog items per second an ingest gets through (and which stage costs the time),
and how long one search takes for each kind of query. A latency on its own says
little, so the same run also times the raw LanceDB calls that a search is built on,
on the same table and for the same queries, plus the query encoding alone. The ratio
``mmsearch p50 / (raw LanceDB + encode) p50`` then shows what the search layer adds
(fusion, the fetch of hit rows, validation) on top of work that cannot be avoided.
Search and baseline are interleaved query by query, so that load from anything else
on the host hits both sides alike instead of skewing the ratio.

The catalog is generated from a seeded RNG, so two runs with the same arguments
index the same bytes. Every image is a real PNG on disk, written before any timer
starts, so image reading and decoding are measured as they would be in production.

Usage::

    python benchmarks/ingest_and_query.py --items 2000 --queries 200
    python benchmarks/ingest_and_query.py --items 10000 --queries 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mmsearch.config import Settings
from mmsearch.encoders.base import Encoder, create_encoder
from mmsearch.index.schema import KEYWORD_COLUMN, vector_column
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.workspace import Workspace

COLLECTION = "bench"
IMAGE_SIZE = 64
STAGES = ("read", "decode", "encode_text", "encode_image", "write", "index")
MODES = ("text", "image", "text+image", "text+filter")
SEARCH_STAGES = (
    "keyword",
    "encode_text",
    "text_vector",
    "encode_image",
    "image_vector",
    "fusion",
    "fetch",
)

# Word lists. Colours carry an RGB value so that an item's picture shows its colour:
# text and image then describe the same thing, as in a real catalog.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40),
    "orange": (240, 130, 20),
    "yellow": (240, 210, 40),
    "green": (40, 150, 60),
    "teal": (20, 140, 140),
    "blue": (40, 90, 210),
    "navy": (20, 30, 90),
    "purple": (120, 50, 160),
    "pink": (240, 120, 170),
    "brown": (120, 75, 40),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
    "grey": (130, 130, 130),
    "beige": (220, 200, 160),
}
MATERIALS = (
    "leather",
    "cotton",
    "wool",
    "linen",
    "denim",
    "silk",
    "canvas",
    "suede",
    "nylon",
    "bamboo",
    "ceramic",
    "steel",
    "oak",
    "glass",
)
PRODUCTS: dict[str, tuple[str, ...]] = {
    "bags": ("backpack", "tote bag", "wallet", "duffel bag", "messenger bag"),
    "clothing": ("jacket", "shirt", "dress", "scarf", "sweater", "hoodie"),
    "footwear": ("sneakers", "boots", "sandals", "loafers", "slippers"),
    "home": ("mug", "lamp", "cushion", "vase", "blanket", "teapot"),
    "outdoor": ("tent", "water bottle", "hiking pole", "sleeping bag"),
    "accessories": ("hat", "belt", "watch", "sunglasses", "gloves"),
}
ADJECTIVES = (
    "lightweight",
    "durable",
    "handmade",
    "vintage",
    "waterproof",
    "minimalist",
    "classic",
    "cosy",
    "premium",
    "compact",
)
USES = (
    "everyday use",
    "travel",
    "hiking",
    "the office",
    "weekends",
    "gifting",
    "the beach",
    "winter",
)
FEATURES = (
    "reinforced seams",
    "a hidden pocket",
    "a matte finish",
    "hand-stitched edges",
    "a soft lining",
    "recycled fibres",
    "brass hardware",
    "a slim profile",
)
SHAPES = ("ellipse", "rectangle", "triangle")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Shape:
    kind: str
    box: tuple[int, int, int, int]
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class ItemSpec:
    """What one synthetic item is made of; kept so a query image can be redrawn from it."""

    id: str
    colour: str
    material: str
    product: str
    category: str
    adjective: str
    use: str
    background: tuple[int, int, int]
    shapes: tuple[Shape, ...]


@dataclass
class Query:
    text: str | None = None
    image: Image.Image | None = None
    where: str | None = None


@dataclass
class Dataset:
    items: list[ItemSpec]
    catalog: Path
    seconds: float
    image_bytes: int


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _random_shapes(rng: np.random.Generator, main: tuple[int, int, int]) -> tuple[Shape, ...]:
    """1-3 shapes; the first (largest) in the item's colour, the rest in random colours."""
    shapes = []
    palette = list(COLOURS.values())
    for number in range(int(rng.integers(1, 4))):
        size = int(rng.integers(28, 52)) if number == 0 else int(rng.integers(10, 28))
        x0 = int(rng.integers(0, IMAGE_SIZE - size))
        y0 = int(rng.integers(0, IMAGE_SIZE - size))
        colour = main if number == 0 else palette[int(rng.integers(len(palette)))]
        shapes.append(Shape(_pick(rng, SHAPES), (x0, y0, x0 + size, y0 + size), colour))
    return tuple(shapes)


def make_item_specs(count: int, seed: int) -> list[ItemSpec]:
    """Deterministic item specs: the same (count, seed) always gives the same catalog."""
    rng = np.random.default_rng(seed)
    categories = sorted(PRODUCTS)
    colour_names = sorted(COLOURS)
    specs = []
    for index in range(count):
        category = _pick(rng, categories)
        colour = _pick(rng, colour_names)
        background = tuple(int(v) for v in rng.integers(0, 256, size=3))
        specs.append(
            ItemSpec(
                id=f"item-{index:06d}",
                colour=colour,
                material=_pick(rng, MATERIALS),
                product=_pick(rng, PRODUCTS[category]),
                category=category,
                adjective=_pick(rng, ADJECTIVES),
                use=_pick(rng, USES),
                background=(background[0], background[1], background[2]),
                shapes=_random_shapes(rng, COLOURS[colour]),
            )
        )
    return specs


def render_image(spec: ItemSpec, jitter: np.random.Generator | None = None) -> Image.Image:
    """Draw an item's picture; with ``jitter``, shapes move a few pixels and colours shift
    a little, as a re-photographed or re-encoded copy of the same product would."""

    def shift(colour: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
        if jitter is None:
            return colour
        moved = np.clip(np.array(colour) + jitter.integers(-amount, amount + 1, size=3), 0, 255)
        return (int(moved[0]), int(moved[1]), int(moved[2]))

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), shift(spec.background, 10))
    draw = ImageDraw.Draw(image)
    for shape in spec.shapes:
        dx, dy = (0, 0) if jitter is None else (int(v) for v in jitter.integers(-2, 3, size=2))
        x0, y0, x1, y1 = shape.box
        box = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
        colour = shift(shape.colour, 8)
        if shape.kind == "ellipse":
            draw.ellipse(box, fill=colour)
        elif shape.kind == "rectangle":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), box[2:]], fill=colour)
    return image


def catalog_row(spec: ItemSpec, rng: np.random.Generator) -> dict[str, Any]:
    title = f"{spec.colour} {spec.material} {spec.product}"
    feature = _pick(rng, FEATURES)
    article = "An" if spec.adjective[0] in "aeiou" else "A"
    description = (
        f"{article} {spec.adjective} {spec.colour} {spec.product} made of {spec.material}, "
        f"ideal for {spec.use}, with {feature}."
    )
    return {
        "id": spec.id,
        "title": title,
        "description": description,
        "category": spec.category,
        "price": round(float(rng.uniform(5, 500)), 2),
        "image": f"images/{spec.id}.png",
    }


def generate_catalog(folder: Path, count: int, seed: int) -> Dataset:
    """Write catalog.jsonl and one PNG per item; done before timing, so it is not measured."""
    started = time.perf_counter()
    specs = make_item_specs(count, seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    image_bytes = 0
    catalog = folder / "catalog.jsonl"
    with catalog.open("w", encoding="utf-8") as handle:
        for spec in specs:
            path = images / f"{spec.id}.png"
            render_image(spec).save(path, format="PNG")
            image_bytes += path.stat().st_size
            handle.write(json.dumps(catalog_row(spec, rng)) + "\n")
    return Dataset(specs, catalog, time.perf_counter() - started, image_bytes)


def text_query(rng: np.random.Generator, spec: ItemSpec | None = None) -> str:
    """A shopper-style query from the same word lists, about ``spec`` when one is given."""
    if spec is None:
        category = _pick(rng, sorted(PRODUCTS))
        product = _pick(rng, PRODUCTS[category])
        colour, material = _pick(rng, sorted(COLOURS)), _pick(rng, MATERIALS)
        adjective, use = _pick(rng, ADJECTIVES), _pick(rng, USES)
    else:
        product, colour, material = spec.product, spec.colour, spec.material
        adjective, use = spec.adjective, spec.use
    templates = (
        f"{colour} {product}",
        f"{material} {product}",
        f"{adjective} {product} for {use}",
        f"{colour} {material} {product}",
    )
    return templates[int(rng.integers(len(templates)))]


def make_queries(items: list[ItemSpec], count: int, seed: int) -> dict[str, list[Query]]:
    """``count`` queries per mode; query images are jittered redraws of catalog items."""
    rng = np.random.default_rng(seed)

    def jittered(spec: ItemSpec) -> Image.Image:
        return render_image(spec, jitter=rng)

    queries: dict[str, list[Query]] = {mode: [] for mode in MODES}
    for _ in range(count):
        queries["text"].append(Query(text=text_query(rng)))
        queries["image"].append(Query(image=jittered(items[int(rng.integers(len(items)))])))
        spec = items[int(rng.integers(len(items)))]
        queries["text+image"].append(Query(text=text_query(rng, spec), image=jittered(spec)))
        category = _pick(rng, sorted(PRODUCTS))
        queries["text+filter"].append(Query(text=text_query(rng), where=f"category = '{category}'"))
    return queries


# --------------------------------------------------------------------------- stats


@dataclass
class Latency:
    """Latency summary of one series, in milliseconds; qps is for one sequential client."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float
    qps: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Latency:
        values = np.asarray(samples_ms, dtype=np.float64)
        total_s = float(values.sum()) / 1000.0
        p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
        return cls(
            n=len(values),
            mean=float(values.mean()),
            p50=p50,
            p95=p95,
            p99=p99,
            max=float(values.max()),
            qps=len(values) / total_s if total_s > 0 else float("nan"),
        )


def _timed_ms(run: Callable[[], Any]) -> tuple[float, Any]:
    tick = time.perf_counter()
    result = run()
    return (time.perf_counter() - tick) * 1000.0, result


# --------------------------------------------------------------------------- ingest


@dataclass
class IngestFigures:
    items: int
    encoder_load_s: float
    wall_s: float
    stages_s: dict[str, float]
    counts: dict[str, int]

    @property
    def items_per_s(self) -> float:
        return self.items / self.wall_s if self.wall_s > 0 else float("nan")


def run_ingest(settings: Settings, catalog: Path) -> IngestFigures:
    """Ingest with the real Ingestor. The encoders are loaded first and timed on their own,
    so that items/s is the steady rate and not diluted by a one-off model load."""
    tick = time.perf_counter()
    create_encoder(settings.text_encoder)
    create_encoder(settings.image_encoder)
    load_s = time.perf_counter() - tick

    tick = time.perf_counter()
    report = Ingestor(settings).run(IngestOptions(catalog=catalog, collection=COLLECTION))
    wall_s = time.perf_counter() - tick
    if report.counts["failed"]:
        first = report.errors[0].describe()
        raise SystemExit(f"{report.counts['failed']} rows failed to ingest; first: {first}")
    stages = {name: report.timings.get(name, 0.0) for name in STAGES}  # fixed row order
    return IngestFigures(report.ingested, load_s, wall_s, stages, report.counts)


# --------------------------------------------------------------------------- queries


@dataclass
class ModeFigures:
    latency: Latency
    samples_ms: list[float]
    stages_p50_ms: dict[str, float]
    mean_hits: float


@dataclass
class BaselineFigures:
    """Per-query milliseconds of each raw component, and their per-query sums."""

    components_ms: dict[str, list[float]] = field(default_factory=dict)
    search_ms: list[float] = field(default_factory=list)  # raw LanceDB calls only
    encode_ms: list[float] = field(default_factory=list)  # query encoding only

    @property
    def total_ms(self) -> list[float]:
        return [s + e for s, e in zip(self.search_ms, self.encode_ms, strict=True)]


@dataclass
class Baseline:
    """The raw pieces a search is built from: the LanceDB table and the two encoders."""

    table: Any
    text_encoder: Encoder
    image_encoder: Encoder
    depth: int

    @classmethod
    def open(cls, settings: Settings, k: int) -> Baseline:
        """Open the live build's table with plain LanceDB, bypassing every mmsearch layer."""
        import lancedb

        manifest = Workspace(settings.home).collection(COLLECTION).live_manifest()
        db = lancedb.connect(str(settings.home / "collections" / COLLECTION / "lancedb"))
        return cls(
            db.open_table(manifest.table),
            create_encoder(settings.text_encoder),
            create_encoder(settings.image_encoder),
            max(settings.candidates, k),
        )

    def encode(self, query: Query) -> dict[str, tuple[float, np.ndarray]]:
        """Encode the query alone, timed: (ms, vector) per modality."""
        vectors = {}
        if query.text:
            text = query.text
            vectors["encode_text"] = _timed_ms(lambda: self.text_encoder.encode_texts([text])[0])
        if query.image is not None:
            image = query.image
            vectors["encode_image"] = _timed_ms(
                lambda: self.image_encoder.encode_images([image])[0]
            )
        return vectors

    def search(
        self, query: Query, vectors: dict[str, tuple[float, np.ndarray]]
    ) -> dict[str, float]:
        """The raw LanceDB calls mmsearch makes for this query, with precomputed vectors:
        FTS and a text-vector search for text, an image-vector search for an image; a
        where clause is applied as a prefilter, as mmsearch does."""
        table, depth = self.table, self.depth
        calls: dict[str, Callable[[], Any]] = {}
        if query.text:
            text = query.text
            calls["lancedb_fts"] = lambda: _where(
                table.search(text, query_type="fts", fts_columns=KEYWORD_COLUMN)
                .select(["id", "_score"])
                .limit(depth),
                query.where,
            ).to_list()
            text_vector = vectors["encode_text"][1]
            calls["lancedb_vector_text"] = lambda: _where(
                table.search(text_vector, vector_column_name=vector_column("text"))
                .distance_type("cosine")
                .limit(depth)
                .select(["id", "_distance"]),
                query.where,
            ).to_list()
        if query.image is not None:
            image_vector = vectors["encode_image"][1]
            calls["lancedb_vector_image"] = lambda: _where(
                table.search(image_vector, vector_column_name=vector_column("image"))
                .distance_type("cosine")
                .limit(depth)
                .select(["id", "_distance"]),
                query.where,
            ).to_list()
        return {name: _timed_ms(call)[0] for name, call in calls.items()}


def _where(query: Any, where: str | None) -> Any:
    return query.where(where, prefilter=True) if where else query


def run_mode(
    searcher: Searcher, baseline: Baseline, queries: list[Query], warmup: list[Query], k: int
) -> tuple[ModeFigures, BaselineFigures]:
    """Time ``searcher.search`` end to end and the raw baseline for the same queries.

    The two are interleaved query by query, alternating which goes first, so that both
    see the same machine state (caches, other load on the host); timing one after the
    other would let background load drift into the ratio.
    """

    def ours(query: Query) -> tuple[float, Any]:
        request = SearchRequest(text=query.text, image=query.image, k=k, where=query.where)
        return _timed_ms(lambda: searcher.search(request))

    def raw(query: Query) -> tuple[dict[str, tuple[float, np.ndarray]], dict[str, float]]:
        vectors = baseline.encode(query)
        return vectors, baseline.search(query, vectors)

    for query in warmup:
        ours(query)
        raw(query)
    samples: list[float] = []
    stages: dict[str, list[float]] = {}
    base = BaselineFigures()
    hits = 0
    for number, query in enumerate(queries):
        # A tuple is evaluated left to right: odd queries run the baseline first.
        if number % 2:
            (vectors, searched), (elapsed, result) = raw(query), ours(query)
        else:
            (elapsed, result), (vectors, searched) = ours(query), raw(query)
        samples.append(elapsed)
        hits += len(result.hits)
        for name, value in result.timings_ms.items():
            stages.setdefault(name, []).append(value)
        for name, value in [*((n, v[0]) for n, v in vectors.items()), *searched.items()]:
            base.components_ms.setdefault(name, []).append(value)
        base.search_ms.append(sum(searched.values()))
        base.encode_ms.append(sum(v[0] for v in vectors.values()))
    figures = ModeFigures(
        latency=Latency.of(samples),
        samples_ms=samples,
        stages_p50_ms={name: float(np.median(values)) for name, values in stages.items()},
        mean_hits=hits / len(queries),
    )
    return figures, base


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    """Enough about the machine to tell whether two result files are comparable."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    import torch

    versions = {}
    for package in ("mmsearch", "lancedb", "pylance", "torch", "sentence-transformers", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["torch"] = torch.__version__  # keeps the build tag (+cpu, +cu130) metadata drops
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg": list(os.getloadavg()),
    }


def _load(loadavg: Sequence[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in loadavg)


@dataclass
class HostCpu:
    """CPU use on the host during one phase, in cores: by this process and by all others.

    On a shared machine other processes compete for the same cores; a number measured
    while another job held a core is not comparable with a quiet run, so each phase
    reports how busy the rest of the host was (from /proc/stat; Linux only).
    """

    name: str
    wall_s: float = 0.0
    ours_cores: float = float("nan")
    others_cores: float = float("nan")
    _start: tuple[float, float, float, float] | None = None

    @staticmethod
    def _snapshot() -> tuple[float, float, float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy = total = float("nan")
        try:
            fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
            total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
            busy = total - fields[3] - fields[4]
        except (OSError, ValueError, IndexError):
            pass
        return time.perf_counter(), usage.ru_utime + usage.ru_stime, busy, total

    def __enter__(self) -> HostCpu:
        self._start = self._snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._start is not None
        end = self._snapshot()
        wall, ours, busy, total = (b - a for a, b in zip(self._start, end, strict=True))
        self.wall_s = wall
        self.ours_cores = ours / wall if wall > 0 else float("nan")
        cpus = os.cpu_count() or 1
        if total > 0:
            self.others_cores = max(busy / total * cpus - self.ours_cores, 0.0)

    def as_dict(self) -> dict[str, float]:
        return {
            "wall_s": self.wall_s,
            "ours_cores": self.ours_cores,
            "others_cores": self.others_cores,
        }


def peak_rss_mib() -> float:
    """Peak resident set size of this process; ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown pipe table: readable in a terminal and pasteable into a report as is."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n### {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"
    return str(value)


def _latency_cells(latency: Latency) -> list[Any]:
    fields = ("n", "p50", "p95", "p99", "mean", "max", "qps")
    return [getattr(latency, name) for name in fields]


def report_ingest(figures: IngestFigures, dataset: Dataset) -> dict[str, Any]:
    stage_total = sum(figures.stages_s.values())
    other = max(figures.wall_s - stage_total, 0.0)
    rows: list[list[Any]] = []
    for name, seconds in [*figures.stages_s.items(), ("other", other)]:
        share = 100.0 * seconds / figures.wall_s
        rate = figures.items / seconds if seconds > 0 else float("nan")
        rows.append([name, seconds, f"{share:.1f}%", rate])
    rows.append(["total (wall)", figures.wall_s, "100.0%", figures.items_per_s])
    print(
        f"\nGenerated {len(dataset.items)} items ({dataset.image_bytes / 1e6:.1f} MB of PNG) "
        f"in {dataset.seconds:.2f} s (not timed). Encoders loaded in "
        f"{figures.encoder_load_s:.2f} s (not part of the ingest wall time)."
    )
    print_table(
        f"Ingest: {figures.items} items, {figures.wall_s:.2f} s wall, "
        f"{figures.items_per_s:.1f} items/s",
        ["stage", "seconds", "share", "items/s"],
        rows,
    )
    return {
        "items": figures.items,
        "counts": figures.counts,
        "generate_s": dataset.seconds,
        "image_bytes": dataset.image_bytes,
        "encoder_load_s": figures.encoder_load_s,
        "wall_s": figures.wall_s,
        "items_per_s": figures.items_per_s,
        "stages_s": {**figures.stages_s, "other": other},
        "stages_items_per_s": {
            name: (figures.items / s if s > 0 else None)
            for name, s in [*figures.stages_s.items(), ("other", other)]
        },
    }


def report_queries(modes: dict[str, ModeFigures]) -> dict[str, Any]:
    print_table(
        "Search latency (Searcher.search, end to end, ms)",
        ["mode", "n", "p50", "p95", "p99", "mean", "max", "queries/s", "hits/query"],
        [[m, *_latency_cells(f.latency), f.mean_hits] for m, f in modes.items()],
    )
    rows = []
    for mode, figures in modes.items():
        stages = figures.stages_p50_ms
        rows.append([mode, *(stages.get(s, float("nan")) for s in SEARCH_STAGES)])
    print_table(
        "Search stages (p50 ms, from SearchResult.timings_ms)", ["mode", *SEARCH_STAGES], rows
    )
    return {
        mode: {"latency_ms": asdict(f.latency), "stages_p50_ms": f.stages_p50_ms}
        | {"mean_hits": f.mean_hits}
        for mode, f in modes.items()
    }


def report_baseline(
    modes: dict[str, ModeFigures], baselines: dict[str, BaselineFigures]
) -> dict[str, Any]:
    rows = []
    result: dict[str, Any] = {}
    for mode, ours in modes.items():
        base = baselines[mode]
        raw = Latency.of(base.search_ms)
        enc = Latency.of(base.encode_ms)
        total = Latency.of(base.total_ms)
        # Per-query difference of the same query: what mmsearch adds on top of the raw calls.
        overhead = Latency.of([o - b for o, b in zip(ours.samples_ms, base.total_ms, strict=True)])
        ratio_p50 = ours.latency.p50 / total.p50
        ratio_p95 = ours.latency.p95 / total.p95
        rows.append(
            [
                *(mode, ours.latency.p50, ours.latency.p95, raw.p50, enc.p50),
                *(total.p50, total.p95, f"{ratio_p50:.2f}x", f"{ratio_p95:.2f}x", overhead.p50),
            ]
        )
        result[mode] = {
            "ours_ms": asdict(ours.latency),
            "raw_lancedb_ms": asdict(raw),
            "encode_ms": asdict(enc),
            "raw_plus_encode_ms": asdict(total),
            "overhead_per_query_ms": asdict(overhead),
            "ratio_p50": ratio_p50,
            "ratio_p95": ratio_p95,
            "components_ms": {
                name: asdict(Latency.of(values)) for name, values in base.components_ms.items()
            },
        }
    print_table(
        "mmsearch vs. raw LanceDB + query encoding, same table and queries (ms)",
        [
            *("mode", "ours p50", "ours p95", "raw lancedb p50", "encode p50"),
            *("raw+enc p50", "raw+enc p95", "ratio p50", "ratio p95", "overhead p50"),
        ],
        rows,
    )
    component_rows = []
    for mode, base in baselines.items():
        for name, values in base.components_ms.items():
            stats = Latency.of(values)
            component_rows.append([mode, name, stats.p50, stats.p95, stats.p99, stats.mean])
    print_table(
        "Baseline components (ms per call)",
        ["mode", "call", "p50", "p95", "p99", "mean"],
        component_rows,
    )
    return result


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000, help="catalog items to generate")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per mode")
    parser.add_argument("--warmup", type=int, default=5, help="untimed queries per mode first")
    parser.add_argument("--k", type=int, default=10, help="hits per query")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--workdir", type=Path, help="empty or new folder to keep the data in (default: temp)"
    )
    parser.add_argument("--text-encoder", default="minilm")
    parser.add_argument("--image-encoder", default="visual")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.items < 1 or args.queries < 1 or args.warmup < 0:
        parser.error("--items and --queries must be >= 1, --warmup >= 0")
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        parser.error(f"--workdir {args.workdir} is not empty; give an empty or new folder")
    return args


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    command = shlex.join(["python", *sys.argv])
    machine = machine_info()
    print(f"$ {command}\n")
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    print(
        f"machine: {machine['platform']}; {machine['cpu_model']}; "
        f"{machine['cpus_usable']} usable CPUs of {machine['cpu_count']}; "
        f"torch threads {machine['torch_threads']}"
    )
    print(f"python {machine['python']}; {versions}")
    print(f"load average (1, 5, 15 min) at start: {_load(machine['loadavg'])}")
    print(f"workdir: {workdir}")

    dataset = generate_catalog(workdir / "catalog", args.items, args.seed)
    queries = make_queries(dataset.items, args.queries, args.seed + 2)
    warmup = make_queries(dataset.items, args.warmup, args.seed + 3) if args.warmup else None
    settings = Settings(
        home=workdir / "home", text_encoder=args.text_encoder, image_encoder=args.image_encoder
    )

    with HostCpu("ingest") as ingest_cpu:
        ingest = run_ingest(settings, dataset.catalog)
    ingest_json = report_ingest(ingest, dataset)

    searcher = Searcher(settings, COLLECTION)
    baseline = Baseline.open(settings, args.k)
    modes: dict[str, ModeFigures] = {}
    baselines: dict[str, BaselineFigures] = {}
    with HostCpu("queries") as query_cpu:
        for mode in MODES:
            warm = warmup[mode] if warmup else []
            modes[mode], baselines[mode] = run_mode(searcher, baseline, queries[mode], warm, args.k)
    queries_json = report_queries(modes)
    baseline_json = report_baseline(modes, baselines)

    rss = peak_rss_mib()
    load_end = os.getloadavg()
    print(f"\npeak RSS: {rss:.0f} MiB")
    print(f"load average at end: {_load(load_end)} (at start: {_load(machine['loadavg'])})")
    print_table(
        f"Host CPU use per phase (cores, of {os.cpu_count()})",
        ["phase", "wall s", "this process", "other processes"],
        [[c.name, c.wall_s, c.ours_cores, c.others_cores] for c in (ingest_cpu, query_cpu)],
    )
    return {
        "command": command,
        "machine": machine,
        "params": {
            "items": args.items,
            "queries_per_mode": args.queries,
            "warmup_per_mode": args.warmup,
            "k": args.k,
            "candidates": settings.candidates,
            "seed": args.seed,
            "text_encoder": settings.text_encoder,
            "image_encoder": settings.image_encoder,
            "batch_size": settings.batch_size,
            "write_batch_rows": settings.write_batch_rows,
            "ann_min_rows": settings.ann_min_rows,
        },
        "ingest": ingest_json,
        "search": queries_json,
        "baseline": baseline_json,
        "peak_rss_mib": rss,
        "loadavg_end": list(load_end),
        "host_cpu": {c.name: c.as_dict() for c in (ingest_cpu, query_cpu)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        figures = run(args, args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="mmsearch-bench-") as folder:
            figures = run(args, Path(folder))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
