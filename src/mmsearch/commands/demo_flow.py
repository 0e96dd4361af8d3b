"""``mmsearch demo``: the bundled emoji sample, ingested and searched, fully offline."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from rich.console import Console

from mmsearch.config import Settings, default_home
from mmsearch.ingest import IngestOptions
from mmsearch.media.images import load_image
from mmsearch.sample_data import SAMPLE_EMOJI_DIR, sample_catalog_path
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher

TEXT_QUERIES = ("red heart", "cheerful", "space travel", "something to eat")
FILTERED_QUERY = ("face", "category = 'Animals & Nature'")
IMAGE_QUERY_FILE = "1f436.png"  # dog face


def degraded_copy(path: Path) -> Image.Image:
    """A smaller, JPEG-compressed copy: the kind of photo a user would search with."""
    image = load_image(path).convert("RGBA")
    flat = Image.new("RGB", image.size, "white")
    flat.paste(image, mask=image.getchannel("A"))
    small = flat.resize((40, 40), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=70)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def run_demo(
    settings: Settings, collection: str, *, console: Console, progress_console: Console
) -> None:
    from mmsearch.commands.ingest import print_ingest_report, run_ingest
    from mmsearch.commands.results import print_result

    catalog = sample_catalog_path()
    console.print(f"[bold]Ingesting the emoji sample[/] ({catalog}) into '{collection}' ...")
    report = run_ingest(settings, IngestOptions(catalog, collection), quiet=False)
    print_ingest_report(report, as_json=False)

    searcher = Searcher(settings, collection)
    for query in TEXT_QUERIES:
        print_result(searcher.search(SearchRequest(text=query, k=5)), title=f"text {query!r}")
    text, where = FILTERED_QUERY
    print_result(
        searcher.search(SearchRequest(text=text, k=5, where=where)),
        title=f"text {text!r} where {where}",
    )
    photo = degraded_copy(SAMPLE_EMOJI_DIR / "images" / IMAGE_QUERY_FILE)
    print_result(
        searcher.search(SearchRequest(image=photo, k=5)),
        title=f"image: a 40px JPEG copy of {IMAGE_QUERY_FILE} (dog face)",
    )
    heart = load_image(SAMPLE_EMOJI_DIR / "images" / "2764-fe0f.png")
    print_result(
        searcher.search(SearchRequest(text="love", image=heart, k=5)),
        title="text 'love' + image of a red heart",
    )
    home = settings.home.expanduser().resolve()
    console.print(f"\nThe collection '{collection}' is in the workspace {home}")
    # --home only when a plain command typed elsewhere would not find this workspace
    suggested_home = "" if home == default_home().resolve() else f" --home {home}"
    console.print(
        f'Try your own: mmsearch search "rocket" --collection {collection}{suggested_home}'
    )
