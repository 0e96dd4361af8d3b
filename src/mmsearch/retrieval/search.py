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

import numpy as np
from PIL import Image

from mmsearch.config import Settings
from mmsearch.encoders.base import create_encoder
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.index.base import Match
from mmsearch.index.lancedb import LanceBuildIndex
from mmsearch.retrieval.fusion import fusion_by_name, order_by_score
from mmsearch.retrieval.planner import plan_retrievers
from mmsearch.workspace import Workspace

MAX_QUERY_CHARS = 2000
MAX_K = 1000
HIT_COLUMNS = ["id", "title", "images", "texts_json"]


@dataclass
class SearchRequest:
    text: str | None = None
    image: Image.Image | None = None
    k: int = 10
    where: str | None = None
    fusion: str = "rrf"
    signals: list[str] | None = None  # restrict to these retrievers (evaluation, debugging)
    candidates: int | None = None  # per-retriever depth; settings.candidates when None


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
        depth = max(request.candidates or self.settings.candidates, request.k)
        plans = plan_retrievers(
            has_text=text is not None,
            has_image=request.image is not None,
            encoders=self.manifest["encoders"],
            only=request.signals,
        )
        queries: dict[str, Any] = {"text": text, "image": request.image}
        embeddings: dict[tuple[str, str], np.ndarray | None] = {}
        failures: dict[tuple[str, str], str] = {}
        skipped: list[str] = []
        ranked: dict[str, list[Match]] = {}
        for plan in plans:
            if plan.kind == "keyword":
                tick = time.perf_counter()
                ranked[plan.name] = self.index.keyword_search(text or "", depth, request.where)
                timings[plan.name] = _ms(tick)
                continue
            key = (plan.role or "", plan.query_modality)
            if key not in embeddings:
                query = queries[plan.query_modality]
                embeddings[key] = self._encode(timings, *key, query, failures)
            vector = embeddings[key]
            if vector is None:
                skipped.append(f"{plan.name} skipped ({failures[key]})")
                continue
            tick = time.perf_counter()
            ranked[plan.name] = self.index.vector_search(
                plan.column or "", vector, depth, request.where
            )
            timings[plan.name] = _ms(tick)

        if skipped:
            remaining = ", ".join(sorted(ranked)) or "no signal"
            warnings.append(f"{'; '.join(skipped)}; results come from {remaining} only")
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

    def _encode(
        self,
        timings: dict[str, float],
        role: str,
        modality: str,
        query: Any,
        failures: dict[tuple[str, str], str],
    ) -> np.ndarray | None:
        """Embed the query; a failing text model becomes a warning, not a failed search."""
        tick = time.perf_counter()
        spec = self.manifest["encoders"][role]["spec"]
        try:
            encoder = create_encoder(spec)
            if modality == "text":
                vector = encoder.encode_texts([query])[0]
            else:
                vector = encoder.encode_images([query])[0]
        except Exception as exc:
            if modality == "image":
                raise MMSearchError(f"The image encoder '{spec}' failed: {exc}") from exc
            failures[(role, modality)] = f"the encoder '{spec}' failed: {exc}"
            return None
        finally:
            label = modality if role == modality else f"{modality}_with_{role}_encoder"
            timings[f"encode_{label}"] = _ms(tick)
        return vector

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
