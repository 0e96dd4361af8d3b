"""Hybrid search over a collection's live build.

A text query runs keyword (BM25) and dense-text retrievers; an image query runs the
dense-image retriever; both at once run all three. Results are fused (RRF by
default). When a model cannot be used, the keyword retriever still answers and the
result says which signal was dropped and why.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

from mmsearch.config import Settings
from mmsearch.encoders.base import create_encoder
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.index.base import Match
from mmsearch.index.lancedb import LanceBuildIndex
from mmsearch.index.schema import vector_column
from mmsearch.retrieval.fusion import fusion_by_name, order_by_score
from mmsearch.workspace import Workspace

MAX_QUERY_CHARS = 2000
MAX_K = 1000
KEYWORD, TEXT_VECTOR, IMAGE_VECTOR = "keyword", "text_vector", "image_vector"
HIT_COLUMNS = ["id", "title", "images", "texts_json"]


@dataclass
class SearchRequest:
    text: str | None = None
    image: Image.Image | None = None
    k: int = 10
    where: str | None = None
    fusion: str = "rrf"


@dataclass
class SignalScore:
    score: float
    rank: int


@dataclass
class Hit:
    id: str
    title: str
    score: float
    signals: dict[str, SignalScore]
    images: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult:
    collection: str
    build_id: str
    hits: list[Hit]
    signals: list[str]
    timings_ms: dict[str, float]
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Searcher:
    """Opens a collection's live build once and answers many queries against it."""

    def __init__(self, settings: Settings, collection: str):
        self.settings = settings
        folder = Workspace(settings.home).collection(collection)
        self.collection = collection
        self.manifest = folder.live_manifest()
        self.build_id: str = self.manifest["build_id"]
        self.index = LanceBuildIndex.open(
            folder.lancedb_dir, self.manifest["table"], settings.ann_min_rows
        )
        self.attribute_columns = [a["column"] for a in self.manifest["attributes"]]

    def search(self, request: SearchRequest) -> SearchResult:
        text = _validate(request)
        timings: dict[str, float] = {}
        warnings: list[str] = []
        depth = max(self.settings.candidates, request.k)
        ranked: dict[str, list[Match]] = {}

        if text:
            ranked[KEYWORD] = self._timed(
                timings, KEYWORD, lambda: self.index.keyword_search(text, depth, request.where)
            )
            vector = self._encode(timings, "text", text, warnings)
            if vector is not None:
                ranked[TEXT_VECTOR] = self._timed(
                    timings,
                    TEXT_VECTOR,
                    lambda: self.index.vector_search(
                        vector_column("text"), vector, depth, request.where
                    ),
                )
        if request.image is not None:
            if "image" not in self.manifest["encoders"]:
                raise QueryError(
                    f"Collection '{self.collection}' has no image vectors; search it by text."
                )
            vector = self._encode(timings, "image", request.image, warnings)
            if vector is not None:
                ranked[IMAGE_VECTOR] = self._timed(
                    timings,
                    IMAGE_VECTOR,
                    lambda: self.index.vector_search(
                        vector_column("image"), vector, depth, request.where
                    ),
                )

        tick = time.perf_counter()
        fuse = fusion_by_name(request.fusion)
        fused = fuse(
            {name: [m.id for m in matches] for name, matches in ranked.items()},
            k=self.settings.rrf_k,
        )
        top = order_by_score(fused)[: request.k]
        timings["fusion"] = _ms(tick)
        tick = time.perf_counter()
        hits = self._hits(top, fused, ranked)
        timings["fetch"] = _ms(tick)
        return SearchResult(self.collection, self.build_id, hits, sorted(ranked), timings, warnings)

    def _encode(self, timings: dict[str, float], role: str, query: Any, warnings: list[str]) -> Any:
        """Embed the query; a failing model becomes a warning, not a failed search."""
        tick = time.perf_counter()
        spec = self.manifest["encoders"][role]["spec"]
        try:
            encoder = create_encoder(spec)
            if role == "text":
                vector = encoder.encode_texts([query])[0]
            else:
                vector = encoder.encode_images([query])[0]
        except Exception as exc:
            if role == "image":
                raise MMSearchError(f"The image encoder '{spec}' failed: {exc}") from exc
            warnings.append(
                f"text_vector skipped: the text encoder '{spec}' failed ({exc}); "
                "results come from keywords only"
            )
            return None
        finally:
            timings[f"encode_{role}"] = _ms(tick)
        return vector

    @staticmethod
    def _timed(timings: dict[str, float], name: str, run: Any) -> list[Match]:
        tick = time.perf_counter()
        result = run()
        timings[name] = _ms(tick)
        return result

    def _hits(
        self, top: list[str], fused: dict[str, float], ranked: dict[str, list[Match]]
    ) -> list[Hit]:
        signals: dict[str, dict[str, SignalScore]] = {item_id: {} for item_id in top}
        for name, matches in ranked.items():
            for rank, match in enumerate(matches, start=1):
                if match.id in signals:
                    signals[match.id][name] = SignalScore(round(match.score, 6), rank)
        rows = {
            row["id"]: row for row in self.index.get(top, [*HIT_COLUMNS, *self.attribute_columns])
        }
        hits = []
        for item_id in top:
            row = rows.get(item_id, {})
            hits.append(
                Hit(
                    id=item_id,
                    title=row.get("title") or "",
                    score=round(fused[item_id], 6),
                    signals=signals[item_id],
                    images=list(row.get("images") or []),
                    attributes={c: row.get(c) for c in self.attribute_columns},
                )
            )
        return hits


def _validate(request: SearchRequest) -> str | None:
    text = (request.text or "").strip() or None
    if text is None and request.image is None:
        raise QueryError("Give a text query, an image (--image), or both.")
    if text is not None and len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"The query is longer than {MAX_QUERY_CHARS} characters.")
    if not 1 <= request.k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}.")
    return text


def _ms(tick: float) -> float:
    return round((time.perf_counter() - tick) * 1000.0, 3)
