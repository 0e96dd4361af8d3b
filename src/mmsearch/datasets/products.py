"""A small synthetic product catalog: brands, categories, colours, drawn pictures.

Why: query routing needs a catalog whose entities are known (brand, category, colour)
and whose pictures look like their colour and category, so that "red Acme boots" has
one right reading. Every item is drawn with Pillow (a shape per category, filled with
its colour), so the catalog needs no download and is the same on every machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

# Each brand makes a few categories, so brands and categories co-occur unevenly (the
# graph's PMI edges have something to say: Acme is footwear, Globex is kitchen).
BRANDS = {
    "Acme": ("boots", "sneakers", "backpacks"),
    "Globex": ("mugs", "lamps"),
    "Initech": ("mugs", "backpacks", "lamps"),
    "Umbrella": ("boots", "lamps"),
}
CATEGORIES = {
    "boots": "footwear",
    "sneakers": "footwear",
    "mugs": "kitchen",
    "lamps": "home",
    "backpacks": "bags",
}
COLOURS = {
    "red": (210, 30, 30),
    "blue": (30, 60, 210),
    "green": (30, 170, 60),
    "black": (20, 20, 20),
    "yellow": (235, 210, 30),
}
MAPPING = {
    "id": "id",
    "title": "title",
    "text": ["description"],
    "attributes": ["brand", "category", "department", "colour", "model"],
    "images": ["image"],
    "entities": ["brand", "category", "department", "colour"],
}


@dataclass(frozen=True)
class Product:
    id: str
    brand: str
    category: str
    colour: str
    model: str


def products() -> list[Product]:
    """Each brand's categories in every colour: 50 products, model codes like AC-1042."""
    out = []
    for b, (brand, categories) in enumerate(BRANDS.items()):
        for category in categories:
            c = list(CATEGORIES).index(category)
            for k, colour in enumerate(COLOURS):
                number = 1000 + b * 100 + c * 10 + k
                model = f"{brand[:2].upper()}-{number}"
                out.append(Product(f"p{number}", brand, category, colour, model))
    return out


def draw(product: Product, size: int = 64) -> Image.Image:
    """The category's shape in the product's colour on white."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    fill = COLOURS[product.colour]
    s = size
    if product.category in ("boots", "sneakers"):
        top = s * 0.2 if product.category == "boots" else s * 0.5
        outline = [(0.3, top / s), (0.5, top / s), (0.55, 0.6), (0.9, 0.7), (0.9, 0.85)]
        pen.polygon([(x * s, y * s) for x, y in [*outline, (0.3, 0.85)]], fill=fill)
    elif product.category == "mugs":
        pen.rectangle([s * 0.25, s * 0.25, s * 0.65, s * 0.8], fill=fill)
        pen.arc([s * 0.55, s * 0.35, s * 0.85, s * 0.65], -90, 90, fill=fill, width=4)
    elif product.category == "lamps":
        pen.polygon([(s * 0.5, s * 0.1), (s * 0.2, s * 0.5), (s * 0.8, s * 0.5)], fill=fill)
        pen.rectangle([s * 0.46, s * 0.5, s * 0.54, s * 0.85], fill=fill)
    else:
        pen.rounded_rectangle([s * 0.2, s * 0.2, s * 0.8, s * 0.9], radius=8, fill=fill)
    return image


def row(product: Product) -> dict[str, Any]:
    noun = product.category.rstrip("s")
    return {
        "id": product.id,
        "title": f"{product.brand} {product.colour} {noun} {product.model}",
        "description": f"A {product.colour} {noun} made by {product.brand}.",
        "brand": product.brand,
        "category": product.category,
        "department": CATEGORIES[product.category],
        "colour": product.colour,
        "model": product.model,
        "image": f"images/{product.id}.png",
    }


def build_products(out: Path) -> Path:
    """Write ``catalog.jsonl``, ``images/`` and ``mapping.yaml`` (JSON, which YAML
    reads) under ``out``; returns the catalog's path."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for product in products():
        draw(product).save(out / "images" / f"{product.id}.png")
        lines.append(json.dumps(row(product)))
    (out / "mapping.yaml").write_text(json.dumps(MAPPING, indent=2) + "\n", encoding="utf-8")
    catalog = out / "catalog.jsonl"
    catalog.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return catalog
