"""Build the small emoji sample catalog that ships inside the ``mmsearch`` package.

The sample gives the demo, the docs and quick smoke checks a real multimodal catalog
(images + names + keywords) without needing the full datasets folder. It is built from
the emoji datasets described in ``../shared/datasets/README.md``:

* images: Google Noto Color Emoji PNGs (Apache-2.0), copied byte for byte;
* names and categories: emoji-datasource 16.0.0 (MIT);
* tags and modern names: emojibase-data 17.0.0 English annotations (MIT).

The selection is deterministic (no randomness): the same inputs always give the same
files, so re-running the script only changes the output when the data changes.

Usage::

    python scripts/build_sample_catalog.py \\
        --datasets ../shared/datasets/emoji --out src/mmsearch/sample_data/emoji
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_TARGET = 400
"""Items in the sample: enough to make search results interesting, small enough to ship."""

MAX_TOTAL_BYTES = 5_000_000
"""Hard cap on the output folder, so the sample never bloats the package."""

SKIN_TONE_MODIFIERS = frozenset({"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"})
"""Fitzpatrick modifiers: they are skin-tone swatches, not emoji people search for."""

COMMON_NAMES: tuple[str, ...] = (
    "GRINNING FACE",
    "FACE WITH TEARS OF JOY",
    "SMILING FACE WITH SMILING EYES",
    "WINKING FACE",
    "THINKING FACE",
    "SMILING FACE WITH SUNGLASSES",
    "LOUDLY CRYING FACE",
    "THUMBS UP SIGN",
    "WAVING HAND SIGN",
    "CLAPPING HANDS SIGN",
    "DOG FACE",
    "CAT FACE",
    "UNICORN FACE",
    "PANDA FACE",
    "BUTTERFLY",
    "SUNFLOWER",
    "ROSE",
    "SLICE OF PIZZA",
    "HAMBURGER",
    "RED APPLE",
    "BANANA",
    "HOT BEVERAGE",
    "BIRTHDAY CAKE",
    "PARTY POPPER",
    "SOCCER BALL",
    "ROCKET",
    "AIRPLANE",
    "AUTOMOBILE",
    "SUN WITH FACE",
    "RAINBOW",
    "SNOWFLAKE",
    "FIRE",
    "SPARKLES",
    "EARTH GLOBE EUROPE-AFRICA",
    "MOBILE PHONE",
    "CAMERA",
    "BOOKS",
    "CHEQUERED FLAG",
)
"""Well-known emoji that demo queries ("pizza", "rocket", "dog") should always find."""

LICENSE_FILES: tuple[str, ...] = ("LICENSE-emoji-datasource-MIT", "LICENSE-emojibase-MIT")
"""Licences of the metadata: names and categories (datasource) and tags (emojibase)."""

NOTO_LICENSE_NAME = "LICENSE-noto-emoji-Apache-2.0.txt"

APACHE_NOTICE = """\
Noto Emoji images

The PNG files in the images/ folder are from Google's Noto Emoji project
(https://github.com/googlefonts/noto-emoji), by Google and the Noto Emoji
contributors. The images are unchanged.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use these files except in compliance with the License.
You may obtain a copy of the License at

    https://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
"""

ATTRIBUTION = """\
# Emoji sample catalog: attribution

This folder holds a small sample catalog of {count} emoji for demos and quick checks.

- **Images** (`images/*.png`): Google Noto Color Emoji, 64x64 PNG, unchanged.
  Licence: Apache-2.0, see `{noto_license}`.
- **Names and categories** (`name` fallback, `category`, `subcategory`, `id`):
  emoji-datasource 16.0.0 (https://github.com/iamcal/emoji-data).
  Licence: MIT, see `LICENSE-emoji-datasource-MIT`.
- **Tags and modern names** (`tags`, `name`): emojibase-data 17.0.0, English
  annotations (https://github.com/milesj/emojibase). Licence: MIT, see
  `LICENSE-emojibase-MIT`.

## How the sample was built

```
python scripts/build_sample_catalog.py --datasets ../shared/datasets/emoji \\
    --out src/mmsearch/sample_data/emoji
```

The script keeps base emoji only (no skin-tone variants) that have a Google image,
always includes every emoji whose name contains "HEART" and a few well-known ones
(grinning face, dog face, pizza, rocket, ...), and fills the rest with an evenly
spaced pick per category, in `sort_order`, proportional to the category's size.
No randomness is involved, so re-running it gives the same files.

`catalog.jsonl` has one JSON object per line, sorted by `id`, with the keys
`id` (code points, as emoji-datasource's `unified`), `name`, `tags`, `category`,
`subcategory` and `image` (path relative to this folder).
"""


def join_key(code: str) -> str:
    """Normalise a code-point string so both metadata files join.

    emoji-datasource writes fully qualified sequences ("2764-FE0F") while emojibase
    often drops the variation selector ("2764"); removing every FE0F makes them meet.
    """
    return code.upper().replace("-FE0F", "")


def load_json(path: Path) -> Any:
    """Read a JSON file as UTF-8, whatever the platform's default encoding."""
    return json.loads(path.read_text(encoding="utf-8"))


def evenly_spaced(items: Sequence[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Pick ``k`` items spread evenly over ``items`` (the middle of each of k slices).

    Spreading the pick over ``sort_order`` covers every subcategory of a category
    instead of its first few, without any randomness.
    """
    n = len(items)
    if k <= 0 or n == 0:
        return []
    if k >= n:
        return list(items)
    return [items[int((i + 0.5) * n / k)] for i in range(k)]


def allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Split ``total`` over categories proportionally to ``sizes`` (largest remainder).

    Largest remainder keeps the sum exact; ties break on the category name so the
    result never depends on dict order.
    """
    pool = sum(sizes.values())
    if pool == 0 or total <= 0:
        return dict.fromkeys(sizes, 0)
    total = min(total, pool)
    exact = {c: total * n / pool for c, n in sizes.items()}
    quota = {c: int(v) for c, v in exact.items()}
    left = total - sum(quota.values())
    by_remainder = sorted(sizes, key=lambda c: (-(exact[c] - quota[c]), c))
    for c in by_remainder[:left]:
        quota[c] += 1
    return quota


def is_candidate(entry: dict[str, Any]) -> bool:
    """Base emoji with a real Google image; skin-tone swatches are left out."""
    return bool(entry.get("has_img_google")) and entry["unified"].upper() not in (
        SKIN_TONE_MODIFIERS
    )


def select(datasource: Iterable[dict[str, Any]], target: int) -> list[dict[str, Any]]:
    """Choose the sample: the required emoji plus a stratified pick of the rest.

    Required emoji (hearts and well-known ones) count towards ``target``; the remaining
    slots are split over categories in proportion to how many non-required emoji
    each one has, so large categories do not crowd out small ones.
    """
    candidates = sorted(
        (e for e in datasource if is_candidate(e)),
        key=lambda e: (e.get("sort_order", 0), e["unified"]),
    )
    common = set(COMMON_NAMES)
    required = [e for e in candidates if "HEART" in e["name"].upper() or e["name"] in common]
    missing = common - {e["name"] for e in required}
    for name in sorted(missing):
        print(f"note: common emoji {name!r} not found, skipped", file=sys.stderr)

    required_ids = {e["unified"] for e in required}
    rest_by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in candidates:
        if e["unified"] not in required_ids:
            rest_by_category[e["category"]].append(e)

    sizes = {c: len(items) for c, items in rest_by_category.items()}
    quota = allocate(sizes, target - len(required))
    chosen = list(required)
    for category in sorted(rest_by_category):
        chosen.extend(evenly_spaced(rest_by_category[category], quota[category]))
    return sorted(chosen, key=lambda e: e["unified"])


def catalog_record(entry: dict[str, Any], annotation: dict[str, Any] | None) -> dict[str, Any]:
    """One catalog line; emojibase's label wins as the name because it is the modern one."""
    label = (annotation or {}).get("label")
    return {
        "id": entry["unified"],
        "name": label if label else entry["name"].lower(),
        "tags": list((annotation or {}).get("tags") or []),
        "category": entry["category"],
        "subcategory": entry["subcategory"],
        "image": f"images/{entry['image']}",
    }


def write_licenses(datasets: Path, out: Path) -> None:
    """Put every licence the shipped files need next to them."""
    noto = sorted(
        p
        for p in datasets.iterdir()
        if p.is_file()
        and p.name.upper().startswith("LICENSE")
        and ("NOTO" in p.name.upper() or "APACHE" in p.name.upper())
    )
    if noto:
        shutil.copyfile(noto[0], out / NOTO_LICENSE_NAME)
    else:
        (out / NOTO_LICENSE_NAME).write_text(APACHE_NOTICE, encoding="utf-8")
    for name in LICENSE_FILES:
        source = datasets / name
        if not source.is_file():
            raise FileNotFoundError(f"licence file missing: {source}")
        shutil.copyfile(source, out / name)


def folder_size(path: Path) -> int:
    """Total bytes of the files under ``path`` (what the package will carry)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(datasets: Path, out: Path, target: int) -> tuple[int, int]:
    """Write the sample into ``out``; return (items, total bytes)."""
    datasource = load_json(datasets / "emoji-datasource.json")
    emojibase = load_json(datasets / "emojibase-en.json")
    annotations: dict[str, dict[str, Any]] = {}
    for item in emojibase:
        annotations.setdefault(join_key(item["hexcode"]), item)

    chosen = select(datasource, target)
    images_src = datasets / "google-64"
    images_out = out / "images"
    images_out.mkdir(parents=True, exist_ok=True)

    wanted = {e["image"] for e in chosen}
    for stale in images_out.glob("*.png"):
        if stale.name not in wanted:
            stale.unlink()

    records = []
    for entry in chosen:
        source = images_src / entry["image"]
        if not source.is_file():
            raise FileNotFoundError(f"image missing: {source}")
        shutil.copyfile(source, images_out / entry["image"])
        records.append(catalog_record(entry, annotations.get(join_key(entry["unified"]))))

    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    (out / "catalog.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_licenses(datasets, out)
    (out / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(count=len(records), noto_license=NOTO_LICENSE_NAME),
        encoding="utf-8",
    )
    return len(records), folder_size(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults match the project layout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        type=Path,
        default=Path("../shared/datasets/emoji"),
        help="folder with google-64/, emoji-datasource.json and emojibase-en.json",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("src/mmsearch/sample_data/emoji"),
        help="output folder for catalog.jsonl, images/ and the licence files",
    )
    parser.add_argument(
        "--target", type=int, default=DEFAULT_TARGET, help="number of emoji in the sample"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the sample and enforce the size cap."""
    args = parse_args(argv)
    count, total = build(args.datasets, args.out, args.target)
    print(f"{count} items, {total:,} bytes ({total / 1_000_000:.2f} MB) in {args.out}")
    if total > MAX_TOTAL_BYTES:
        print(
            f"error: sample is {total:,} bytes, over the {MAX_TOTAL_BYTES:,}-byte limit",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
