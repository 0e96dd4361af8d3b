"""Page-level retrieval on generated PDFs: text queries and pictures of figures.

Builds a small library of PDFs (fpdf2 for text and figure pages, Pillow for scanned
pages, which have no text layer and are read by OCR), ingests it as one document
catalog with the real encoders (``minilm`` for text, ``visual`` for images), and
measures page-level Recall@1 / Recall@10 / MRR@10 for four query sets:

* ``words``: key words of a text page;
* ``meaning``: a paraphrase of a text page that shares almost none of its words;
* ``scanned``: key words of a scanned page (found only through its OCR text);
* ``figure``: a picture of a figure, drawn again at another size and place on the
  canvas (what a user would crop from a slide), searched by image alone.

Filler documents (generic prose, grey line charts) make the pool larger than ten, so
that Recall@10 is not trivially 1: the share of pages a random ranking would put in
the top 10 is printed too.

    python benchmarks/pdf_pages.py --out /tmp/pdf-pages

Needs the ``pdf`` and ``ocr`` extras and fpdf2 (the dev extra); runs in about a minute
on two CPU cores once the models are cached.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import sys
import textwrap
import time
from pathlib import Path

from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from mmsearch.config import Settings
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

# (page text, words query, meaning query); the meaning query avoids the page's words.
TOPICS: list[tuple[str, str, str]] = [
    (
        "Emperor penguins breed on the sea ice of Antarctica during the long polar winter.",
        "emperor penguins antarctica",
        "flightless birds raising chicks on frozen ocean at the south pole",
    ),
    (
        "Quarterly revenue grew eleven percent, driven by new customers in the northern region.",
        "quarterly revenue growth",
        "sales went up this period thanks to fresh clients up north",
    ),
    (
        "The bridge was closed after inspectors found corrosion in its steel cables.",
        "bridge corrosion cables",
        "river crossing shut because rust weakened the wires holding it",
    ),
    (
        "Sourdough bread rises slowly because wild yeast ferments the flour overnight.",
        "sourdough yeast ferments",
        "naturally leavened loaf proving for hours with a starter culture",
    ),
    (
        "Volcanic eruptions inject ash high into the atmosphere and can cool the climate.",
        "volcanic ash atmosphere",
        "erupting mountains spew dust skyward lowering global temperatures",
    ),
    (
        "The new vaccine reduced hospital admissions among elderly patients by half.",
        "vaccine hospital admissions",
        "immunisation halved the number of old people needing a ward bed",
    ),
    (
        "Solar panels on the warehouse roof now supply most of the building's electricity.",
        "solar panels warehouse electricity",
        "photovoltaic modules up top power the depot",
    ),
    (
        "Chess engines evaluate millions of positions per second using alpha-beta search.",
        "chess engines positions",
        "computer programs that play the board game by looking ahead at moves",
    ),
    (
        "Coral reefs bleach when warm water forces them to expel their symbiotic algae.",
        "coral reefs bleach",
        "undersea colonies turn white as heat drives out their partner organisms",
    ),
    (
        "The marathon route follows the river before climbing towards the old cathedral.",
        "marathon route river cathedral",
        "long-distance race course along the water then uphill to the church",
    ),
    (
        "Interest rates were held steady as inflation slowed for a third month.",
        "interest rates inflation",
        "the central bank kept borrowing costs unchanged while price rises eased",
    ),
    (
        "Honeybees communicate the direction of flowers with a waggle dance in the hive.",
        "honeybees waggle dance",
        "insects that make honey tell each other where blossoms are by moving",
    ),
]
SCANNED: list[tuple[str, str]] = [
    ("Invoice 4471: twelve oak chairs delivered to the Harbour Street office.", "oak chairs"),
    ("Minutes: the committee approved the new library opening hours.", "library opening hours"),
    ("Warranty card: the kettle is guaranteed for two years from purchase.", "kettle warranty"),
    ("Field log: wolves were sighted near the northern ridge at dawn.", "wolves ridge"),
    ("Recipe card: lentil soup with cumin, carrots and lemon.", "lentil soup cumin"),
    ("Notice: the swimming pool closes early on public holidays.", "swimming pool closes"),
]
FIGURES: list[tuple[str, tuple[int, int, int]]] = [
    ("disc", (220, 30, 30)),
    ("bars", (30, 60, 220)),
    ("triangle", (30, 170, 60)),
    ("disc", (240, 150, 20)),
    ("bars", (140, 40, 170)),
    ("triangle", (20, 160, 170)),
]
FILLER_TEXT = (
    "the report describes general matters of the organisation and its plans for the "
    "coming year including staffing reviews meetings schedules and routine updates"
)
FILLER_WORDS = FILLER_TEXT.split(" ")


def draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    box: tuple[float, float, float, float],
    colour: tuple[int, int, int],
) -> None:
    left, top, right, bottom = box
    if shape == "disc":
        draw.ellipse(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=colour)
    else:
        width = (right - left) / 3
        for index, share in enumerate((0.4, 0.7, 1.0)):
            x = left + index * width
            draw.rectangle(
                (x + width * 0.15, bottom - (bottom - top) * share, x + width * 0.85, bottom),
                fill=colour,
            )


def figure_page(pdf: FPDF, shape: str, colour: tuple[int, int, int], caption: str) -> None:
    """A page with a caption and the figure, drawn as vector shapes (no text in it)."""
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text=caption)
    pdf.set_fill_color(*colour)
    if shape == "disc":
        pdf.ellipse(40, 60, 130, 130, style="F")
    elif shape == "triangle":
        pdf.polygon([(105, 60), (170, 190), (40, 190)], style="F")
    else:
        for index, share in enumerate((0.4, 0.7, 1.0)):
            height = 130 * share
            pdf.rect(40 + index * 45 + 6, 190 - height, 32, height, style="F")


def chart_page(pdf: FPDF, rng: random.Random) -> None:
    """A filler figure: a grey line chart."""
    pdf.add_page()
    pdf.set_draw_color(90, 90, 90)
    pdf.set_line_width(1.2)
    points = [(30 + i * 25, 150 - rng.uniform(0, 80)) for i in range(7)]
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        pdf.line(x1, y1, x2, y2)


def scanned_page(text: str) -> Image.Image:
    font = (
        ImageFont.truetype(str(DEJAVU), 40) if DEJAVU.exists() else ImageFont.load_default(size=40)
    )
    image = Image.new("RGB", (1240, 1754), "white")
    draw = ImageDraw.Draw(image)
    for line_no, line in enumerate(textwrap.wrap(text, 45)):
        draw.text((110, 180 + line_no * 60), line, fill="black", font=font)
    return image


def text_pdf(path: Path, pages: list[str]) -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=13)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 9, text)
    pdf.output(str(path))


def build_library(folder: Path, seed: int) -> dict[str, list[tuple[object, str]]]:
    """The PDFs, and the queries of each set with the id of their one relevant page."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    queries: dict[str, list[tuple[object, str]]] = {
        "words": [],
        "meaning": [],
        "scanned": [],
        "figure": [],
    }
    for doc in range(6):  # two topic pages, then a figure page, per document
        name = f"study-{doc + 1:02d}"
        pdf = FPDF()
        pdf.set_title(f"Study {doc + 1}")
        pdf.set_font("helvetica", size=13)
        for page, topic in enumerate(TOPICS[doc * 2 : doc * 2 + 2], start=1):
            pdf.add_page()
            pdf.multi_cell(0, 9, topic[0])
            queries["words"].append((topic[1], f"{name}#p{page}"))
            queries["meaning"].append((topic[2], f"{name}#p{page}"))
        shape, colour = FIGURES[doc]
        figure_page(pdf, shape, colour, f"Figure {doc + 1}")
        queries["figure"].append(((shape, colour), f"{name}#p3"))
        pdf.output(str(folder / f"{name}.pdf"))
    for number, (text, words) in enumerate(SCANNED, start=1):
        name = f"scan-{number:02d}"
        scanned_page(text).save(folder / f"{name}.pdf", "PDF", resolution=150)
        queries["scanned"].append((words, f"{name}#p1"))
    for doc in range(6):  # filler: generic prose and grey charts
        name = f"filler-{doc + 1:02d}"
        pages = [" ".join(rng.choices(FILLER_WORDS, k=40)) for _ in range(4)]
        pdf = FPDF()
        pdf.set_font("helvetica", size=13)
        for text in pages:
            pdf.add_page()
            pdf.multi_cell(0, 9, text)
        chart_page(pdf, rng)
        pdf.output(str(folder / f"{name}.pdf"))
    return queries


def figure_query(shape: str, colour: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """The figure drawn again: another canvas, size and position, as a crop would be."""
    width, height = rng.choice([(600, 800), (800, 600), (500, 500)])
    image = Image.new("RGB", (width, height), "white")
    side = rng.uniform(0.45, 0.7) * min(width, height)
    left = rng.uniform(0.05, 0.95) * (width - side)
    top = rng.uniform(0.05, 0.95) * (height - side)
    draw_shape(ImageDraw.Draw(image), shape, (left, top, left + side, top + side), colour)
    return image


def measure(searcher: Searcher, queries: list[tuple[object, str]], seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    recall1 = recall10 = reciprocal = 0.0
    for query, relevant in queries:
        if isinstance(query, str):
            request = SearchRequest(text=query, k=10)
        else:
            shape, colour = query  # type: ignore[misc]
            request = SearchRequest(image=figure_query(shape, colour, rng), k=10)
        ids = [hit.id for hit in searcher.search(request).hits]
        if relevant in ids:
            rank = ids.index(relevant) + 1
            recall10 += 1
            recall1 += rank == 1
            reciprocal += 1 / rank
    n = len(queries)
    return {
        "queries": n,
        "recall@1": round(recall1 / n, 3),
        "recall@10": round(recall10 / n, 3),
        "mrr@10": round(reciprocal / n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/mmsearch-pdf-pages"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    library = args.out / "library"
    queries = build_library(library, args.seed)
    settings = Settings(home=args.out / "workspace", text_encoder="minilm", image_encoder="visual")
    tick = time.perf_counter()
    report = Ingestor(settings).run(IngestOptions(library, "pdfs"))
    ingest_s = time.perf_counter() - tick
    pages = report.counts["added"]
    searcher = Searcher(settings, "pdfs")
    results = {name: measure(searcher, items, args.seed) for name, items in queries.items()}
    summary = {
        "documents": len(list(library.glob("*.pdf"))),
        "pages": pages,
        "failed": report.counts["failed"],
        "warnings": report.counts["warnings"],
        "random_recall@10": round(10 / pages, 3),
        "ingest_s": round(ingest_s, 1),
        "pages_per_s": round(pages / ingest_s, 2),
        "results": results,
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print("\n| query set | queries | Recall@1 | Recall@10 | MRR@10 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, row in results.items():
        print(
            f"| {name} | {row['queries']} | {row['recall@1']:.3f} | {row['recall@10']:.3f} "
            f"| {row['mrr@10']:.3f} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
