"""The emoji benchmark: one artist's pictures as the catalog, two query sets with judgments.

- Catalog: every image of one vendor (base emoji and skin-tone variants), with its
  name (the emojibase label, else the emoji-datasource name) and optionally its
  category and subcategory as filterable attributes. Only the name and the image
  are indexed, so text queries cannot be answered by copying metadata.
- Text queries (``t-<tag>``): emojibase tags. An emoji is relevant to a tag when it
  carries the tag *and* the tag's words are not all words of its indexed name; tags
  with no such emoji are not queries. This measures meaning ("cheerful" → 😀), not
  string matching. Skin-tone variants inherit their base emoji's tags.
- Image queries (``i-<id>``): the other vendor's picture of an emoji; the one
  relevant item is the same emoji (same ``unified``). Emoji where either vendor's
  PNG is a fallback copy (``has_img_<vendor>`` false) get no image query, since the
  query would be the indexed picture itself.

Joining the metadata files follows the datasets README: ``unified`` equals
emojibase ``hexcode`` once upper-cased and ``-FE0F`` is ignored on both sides.

Images are copied into ``OUT/images`` by default, so the catalog ingests with a
plain ``mmsearch ingest`` (ingest only reads images under the catalog's folder or
configured image roots); ``copy_images=False`` references the originals by absolute
path instead, which then need ``--images-root`` or ``MMSEARCH_IMAGE_ROOTS``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsearch.datasets.common import write_jsonl, write_split_queries
from mmsearch.errors import EvaluationError
from mmsearch.evaluation.judgments import Judgments, write_trec_qrels
from mmsearch.evaluation.queries import EvalQuery

VENDORS = ("google", "twitter")


@dataclass
class EmojiRecord:
    id: str
    name: str
    image: str
    tags: tuple[str, ...]
    category: str
    subcategory: str
    has_img: dict[str, bool]
    # emoji-datasource short names cut into words ("flag-eg" → flag, eg): the catalog's
    # own keywords, from a different source than the emojibase tags the queries use.
    keywords: tuple[str, ...] = ()


@dataclass
class EmojiStats:
    items: int
    text_queries: dict[str, int]
    image_queries: dict[str, int]
    judgments: int
    unjoined: int


def join_key(code: str) -> str:
    return "-".join(part for part in code.upper().split("-") if part != "FE0F")


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def load_records(source: Path) -> tuple[list[EmojiRecord], int]:
    """Every emoji image (skin variants included), joined with emojibase; and the unjoined count."""
    for name in ("emoji-datasource.json", "emojibase-en.json"):
        if not (source / name).is_file():
            raise EvaluationError(f"{source} lacks {name}; point to the emoji dataset folder.")
    datasource = json.loads((source / "emoji-datasource.json").read_text(encoding="utf-8"))
    emojibase = json.loads((source / "emojibase-en.json").read_text(encoding="utf-8"))
    labels: dict[str, tuple[str, tuple[str, ...]]] = {}
    for entry in emojibase:
        tags = tuple(t.lower() for t in entry.get("tags") or [])
        labels[join_key(entry["hexcode"])] = (entry["label"], tags)
        for skin in entry.get("skins") or []:
            labels.setdefault(join_key(skin["hexcode"]), (skin["label"], tags))
    records: list[EmojiRecord] = []
    unjoined = 0
    for entry in sorted(datasource, key=lambda e: (e.get("sort_order", 0), e["unified"])):
        variants = [entry, *(entry.get("skin_variations") or {}).values()]
        for variant in variants:
            joined = labels.get(join_key(variant["unified"]))
            if joined is None:
                unjoined += 1
                name, tags = (entry.get("name") or variant["unified"]).lower(), ()
            else:
                name, tags = joined
            records.append(
                EmojiRecord(
                    id=variant["unified"].upper(),
                    name=name,
                    image=variant["image"],
                    tags=tags,
                    category=entry.get("category") or "",
                    subcategory=entry.get("subcategory") or "",
                    has_img={v: bool(variant.get(f"has_img_{v}", False)) for v in VENDORS},
                    keywords=_short_name_words(entry.get("short_names") or []),
                )
            )
    return records, unjoined


def _short_name_words(names: list[str]) -> tuple[str, ...]:
    words = (w for name in names for w in re.split(r"[-_\s]+", name.lower()))
    return tuple(dict.fromkeys(w for w in words if w.isalpha() and len(w) > 1))


def text_queries(records: list[EmojiRecord]) -> tuple[list[EvalQuery], Judgments]:
    """One query per tag that some emoji carries without having it in its name."""
    relevant: dict[str, list[str]] = {}
    for record in records:
        name_words = _words(record.name)
        for tag in record.tags:
            tag_words = _words(tag)
            if tag_words and not tag_words <= name_words:
                relevant.setdefault(tag, []).append(record.id)
    queries: list[EvalQuery] = []
    judgments: Judgments = {}
    used: set[str] = set()
    for tag in sorted(relevant):
        query_id = "t-" + (re.sub(r"\W+", "_", tag).strip("_") or "tag")
        while query_id in used:
            query_id += "_"
        used.add(query_id)
        queries.append(EvalQuery(query_id, tag, extra={"kind": "text"}))
        judgments[query_id] = dict.fromkeys(relevant[tag], 1)
    return queries, judgments


def image_queries(
    records: list[EmojiRecord], query_dir: Path, vendor: str, query_vendor: str
) -> tuple[list[EvalQuery], Judgments]:
    queries: list[EvalQuery] = []
    judgments: Judgments = {}
    for record in records:
        if not (record.has_img[vendor] and record.has_img[query_vendor]):
            continue
        image = query_dir / record.image
        if not image.is_file():
            continue
        query_id = f"i-{record.id}"
        queries.append(EvalQuery(query_id, image=image.resolve(), extra={"kind": "image"}))
        judgments[query_id] = {record.id: 1}
    return queries, judgments


def build_emoji(
    source: Path,
    out: Path,
    *,
    vendor: str = "google",
    query_vendor: str = "twitter",
    with_categories: bool = False,
    with_keywords: bool = False,
    copy_images: bool = True,
    limit: int | None = None,
) -> EmojiStats:
    """Write catalog.jsonl, queries*.jsonl (all, text, image; each with dev/test) and qrels.txt."""
    if vendor == query_vendor:
        raise EvaluationError("--vendor and --query-vendor must name two different artists.")
    folders = {v: source / f"{v}-64" for v in (vendor, query_vendor)}
    for name, folder in folders.items():
        if not folder.is_dir():
            raise EvaluationError(f"No images for vendor {name!r}: {folder} does not exist.")
    records, unjoined = load_records(source)
    records = [r for r in records if (folders[vendor] / r.image).is_file()]
    if limit is not None:
        records = records[:limit]
    out.mkdir(parents=True, exist_ok=True)
    rows = [_catalog_row(r, folders[vendor], out, with_categories, copy_images) for r in records]
    if with_keywords:  # an attribute (not indexed text): "grinning, face"
        for row, record in zip(rows, records, strict=True):
            row["keywords"] = ", ".join(record.keywords)
    write_jsonl(out / "catalog.jsonl", rows)
    texts, text_judgments = text_queries(records)
    images, image_judgments = image_queries(records, folders[query_vendor], vendor, query_vendor)
    judgments = {**text_judgments, **image_judgments}
    write_split_queries(out, texts + images)
    text_counts = write_split_queries(out, texts, prefix="queries-text")
    image_counts = write_split_queries(out, images, prefix="queries-image")
    write_trec_qrels(out / "qrels.txt", judgments)
    return EmojiStats(
        items=len(rows),
        text_queries=text_counts,
        image_queries=image_counts,
        judgments=sum(len(v) for v in judgments.values()),
        unjoined=unjoined,
    )


def _catalog_row(
    record: EmojiRecord, folder: Path, out: Path, with_categories: bool, copy_images: bool
) -> dict[str, Any]:
    source_image = folder / record.image
    if copy_images:
        target = out / "images" / record.image
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_image, target)
        image = f"images/{record.image}"
    else:
        image = str(source_image.resolve())
    row: dict[str, Any] = {"id": record.id, "name": record.name, "image": image}
    if with_categories:
        row["category"] = record.category
        row["subcategory"] = record.subcategory
    return row
