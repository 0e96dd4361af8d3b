"""Evaluation queries: one JSON object per line, text and/or an image, optional filter.

A queries file is the fixed half of an experiment (the other half is the
judgments), so it is validated strictly: every malformed line is reported with its
line number, instead of silently evaluating fewer queries than the user thinks.

Line format::

    {"id": "q1", "text": "red shoes"}
    {"id": "q2", "image": "images/q2.png", "where": "price < 50"}

``image`` is resolved relative to the queries file. Extra keys (``split``, ``kind``)
are kept in ``extra`` so that dataset builders can annotate queries freely.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.errors import EvaluationError

KNOWN_KEYS = frozenset({"id", "text", "image", "where"})


@dataclass(frozen=True)
class EvalQuery:
    """One query of an experiment; ``image`` is an absolute path when given."""

    id: str
    text: str | None = None
    image: Path | None = None
    where: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> frozenset[str]:
        kinds = set()
        if self.text:
            kinds.add("text")
        if self.image is not None:
            kinds.add("image")
        return frozenset(kinds)

    def as_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The JSONL form; image paths are written relative to ``relative_to`` when given."""
        data: dict[str, Any] = {"id": self.id}
        if self.text:
            data["text"] = self.text
        if self.image is not None:
            image = self.image
            if relative_to is not None:
                try:
                    image = image.relative_to(relative_to)
                except ValueError:
                    image = image.resolve()
            data["image"] = image.as_posix()
        if self.where:
            data["where"] = self.where
        data.update(self.extra)
        return data


def load_queries(path: Path) -> list[EvalQuery]:
    """Read and validate a queries file; raises EvaluationError naming the bad line."""
    if not path.is_file():
        raise EvaluationError(f"Queries file {path} does not exist.")
    base = path.resolve().parent
    queries: list[EvalQuery] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            query = _parse_line(line, path, number, base)
            if query.id in seen:
                raise EvaluationError(
                    f"{path}:{number}: query id {query.id!r} is already used on line "
                    f"{seen[query.id]}; give every query its own id."
                )
            seen[query.id] = number
            queries.append(query)
    if not queries:
        raise EvaluationError(f"Queries file {path} holds no queries.")
    return queries


def _parse_line(line: str, path: Path, number: int, base: Path) -> EvalQuery:
    where_am_i = f"{path}:{number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{where_am_i}: not valid JSON ({exc.msg}).") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"{where_am_i}: each line must be a JSON object.")
    query_id = data.get("id")
    if isinstance(query_id, int) and not isinstance(query_id, bool):
        query_id = str(query_id)
    if not isinstance(query_id, str) or not query_id.strip():
        raise EvaluationError(f"{where_am_i}: 'id' is missing or not a string/number.")
    text = _optional_string(data, "text", where_am_i)
    image_value = _optional_string(data, "image", where_am_i)
    where = _optional_string(data, "where", where_am_i)
    if not (text and text.strip()) and image_value is None:
        raise EvaluationError(f"{where_am_i}: query {query_id!r} needs 'text', 'image' or both.")
    image = None
    if image_value is not None:
        image = (base / image_value).resolve()
        if not image.is_file():
            raise EvaluationError(
                f"{where_am_i}: image {image_value!r} not found (looked for {image}); "
                "image paths are relative to the queries file."
            )
    extra = {k: v for k, v in data.items() if k not in KNOWN_KEYS}
    return EvalQuery(query_id.strip(), text, image, where, extra)


def _optional_string(data: dict[str, Any], key: str, where_am_i: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EvaluationError(f"{where_am_i}: '{key}' must be a string.")
    return value


def write_queries(path: Path, queries: list[EvalQuery]) -> Path:
    """Write queries as JSONL with image paths relative to the file's folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    with path.open("w", encoding="utf-8") as handle:
        for query in queries:
            handle.write(json.dumps(query.as_json(base), ensure_ascii=False) + "\n")
    return path
