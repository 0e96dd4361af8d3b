"""An optional cross-encoder that rescores the top hits of the ranking.

A cross-encoder reads the query and an item's text together and scores the pair; it
sees what bi-encoder cosines and BM25 cannot (which words of the query the text
answers, negation, word order), at the price of one model call per hit. So it reads
only the first ``top`` hits of the fused (or LightGBM-reranked) order, and its input
is bounded: each pair is cut to ``max_length`` tokens (and the text to a number of
characters before tokenising, so a huge field costs nothing extra).

The model is a ``sentence-transformers`` ``CrossEncoder`` saved in a local folder:
nothing is downloaded, and a folder that is missing or is not a model is an error
naming the folder, raised when the collection's setting is made and again before
any retrieval of a search that asks for it. A loaded model is kept per process (by
folder, its files' times and the token bound).

The texts read are the mapping's fields chosen for the collection (its title field,
its text fields), fetched through the search's whole store filter: the hits were
already filtered, and reading their texts goes through the same filter again, so a
caller's ACL groups bound every read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.collection_state import CrossEncoderSettings, RankingSettings
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.ranking.explain import CrossEncoderExplanation

TITLE = "title"  # the stored title column; the mapping's title field is accepted too
TEXT_COLUMNS = ("title", "texts_json")  # what the model's texts are read from
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")
# Characters kept of an item's text before tokenising: generous for any token bound
# (a token is rarely longer than 8 characters), and a bound on tokenising work.
CHARS_PER_TOKEN = 8
BATCH_SIZE = 32


class CrossEncoderError(MMSearchError):
    """A cross-encoder folder cannot be used: missing, or not a model."""


@dataclass(frozen=True)
class CrossEncoderChoice:
    """One search's cross-encoder, resolved and checked before retrieval."""

    folder: Path
    top: int
    fields: tuple[str, ...]  # "title" and/or text field names, in reading order
    max_length: int

    @property
    def name(self) -> str:
        return str(self.folder)


def check_folder(path: str | Path) -> Path:
    """The model folder, absolute, once it looks like a cross-encoder; else an error
    naming the folder and what is missing."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise CrossEncoderError(
            f"The cross-encoder folder {folder} does not exist; give the folder a "
            "sentence-transformers CrossEncoder was saved to (model.save(folder))."
        )
    if not folder.is_dir():
        raise CrossEncoderError(f"The cross-encoder path {folder} is not a folder.")
    config = folder / "config.json"
    problems = []
    if not config.is_file():
        problems.append("config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        problems.append(" or ".join(WEIGHT_FILES))
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        problems.append("a tokenizer (" + " or ".join(TOKENIZER_FILES) + ")")
    if problems:
        raise CrossEncoderError(
            f"The cross-encoder folder {folder} is not a model: it lacks {', '.join(problems)}."
        )
    try:
        parsed = json.loads(config.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CrossEncoderError(f"{config} cannot be read as JSON: {exc}") from None
    if not isinstance(parsed, dict) or "model_type" not in parsed:
        raise CrossEncoderError(f"{config} names no model_type: it is not a transformers model.")
    return folder.resolve()


def text_fields(mapping: FieldMapping) -> list[str]:
    """The fields a cross-encoder may read: the title, then every text field."""
    return [TITLE, *mapping.text]


def check_fields(fields: Sequence[str] | None, mapping: FieldMapping, collection: str) -> list[str]:
    """The stored names of ``fields`` (None: title and every text field); a name that is
    not the mapping's title or one of its text fields is an error listing them."""
    if fields is None:
        return text_fields(mapping)
    known = text_fields(mapping)
    resolved: list[str] = []
    for name in fields:
        stored = TITLE if name == mapping.title else name
        if stored not in known:
            shown = ", ".join([mapping.title or TITLE, *mapping.text])
            raise QueryError(
                f"'{name}' is not a text field of collection '{collection}'; its title and "
                f"text fields: {shown}."
            )
        resolved.append(stored)
    return list(dict.fromkeys(resolved))


def resolve_choice(
    ranking: RankingSettings | None,
    mapping: FieldMapping,
    collection: str,
    *,
    on: bool | None,
    top: int | None,
) -> CrossEncoderChoice | None:
    """The cross-encoder a request gets: its own on/off, else the collection's default;
    the folder is checked here, before anything is retrieved."""
    settings: CrossEncoderSettings | None = ranking.cross_encoder if ranking else None
    if on is False:
        return None
    if settings is None:
        if on:
            raise QueryError(
                f"Collection '{collection}' has no cross-encoder; set one with "
                f"`mmsearch ranking-settings -c {collection} --cross-encoder FOLDER`."
            )
        return None
    if on is None and not settings.default_on:
        return None
    return CrossEncoderChoice(
        folder=check_folder(settings.path),
        top=min(top, settings.top) if top is not None else settings.top,
        fields=tuple(check_fields(settings.fields, mapping, collection)),
        max_length=settings.max_length,
    )


def item_text(row: dict[str, Any], fields: Sequence[str], max_chars: int) -> str:
    """The text the model reads for one item: the chosen fields, in order, cut short."""
    stored: dict[str, str] = json.loads(row.get("texts_json") or "{}")
    parts = [str(row.get(TITLE) or "") if f == TITLE else str(stored.get(f) or "") for f in fields]
    return "\n".join(part for part in parts if part)[:max_chars]


class CrossEncoderModel:
    """A loaded ``CrossEncoder`` scoring (query, text) pairs; float64 scores."""

    def __init__(self, model: Any, folder: Path, max_length: int):
        self.model = model
        self.folder = folder
        self.max_length = max_length

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        pairs = [(query, text) for text in texts]
        values = self.model.predict(
            pairs, batch_size=BATCH_SIZE, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(values, dtype=np.float64).reshape(len(texts), -1)[:, 0]


_models: dict[tuple[Path, int, tuple[float, ...]], CrossEncoderModel] = {}
_lock = threading.Lock()


def load_model(folder: Path, max_length: int) -> CrossEncoderModel:
    """The folder's model, loaded once per process (again when its files change)."""
    stamp = tuple(
        sorted(p.stat().st_mtime for p in folder.iterdir() if p.is_file() and p.suffix != ".lock")
    )
    key = (folder, max_length, stamp)
    with _lock:
        cached = _models.get(key)
        if cached is not None:
            return cached
        try:
            from sentence_transformers import CrossEncoder

            model = CrossEncoder(
                str(folder), max_length=max_length, device="cpu", local_files_only=True
            )
        except Exception as exc:  # a broken folder: any library error, named for the user
            raise CrossEncoderError(
                f"The cross-encoder in {folder} cannot be loaded: {exc}"
            ) from exc
        for old in [k for k in _models if k[0] == folder]:
            del _models[old]
        loaded = _models[key] = CrossEncoderModel(model, folder, max_length)
        return loaded


def clear_models() -> None:
    with _lock:
        _models.clear()


def rescore_head(
    choice: CrossEncoderChoice,
    query: str,
    order: list[str],
    scores: dict[str, float],
    rows: dict[str, dict[str, Any]],
) -> tuple[dict[str, float], dict[str, CrossEncoderExplanation]]:
    """Rescore the first ``choice.top`` of ``order``: they are reordered by the model's
    score and stay above every other hit (their scores are lifted over the rest's
    best); the rest keep their scores. Hits without a row (none was readable through
    the filter) are left where they were, below the rescored ones."""
    head = [item_id for item_id in order[: choice.top] if item_id in rows]
    if not head:
        return scores, {}
    model = load_model(choice.folder, choice.max_length)
    max_chars = choice.max_length * CHARS_PER_TOKEN
    values = model.scores(query, [item_text(rows[i], choice.fields, max_chars) for i in head])
    rescored = set(head)
    rest = [score for item_id, score in scores.items() if item_id not in rescored]
    lift = (max(rest) if rest else 0.0) + 1.0 - float(values.min())
    out = dict(scores)
    positions = {item_id: n for n, item_id in enumerate(order, start=1)}
    found: dict[str, CrossEncoderExplanation] = {}
    for item_id, value in zip(head, values.tolist(), strict=True):
        out[item_id] = value + lift
        found[item_id] = CrossEncoderExplanation(
            choice.name, round(value, 6), positions[item_id], list(choice.fields)
        )
    return out, found
