"""Relevance judgments (qrels): TREC text format or JSONL, graded.

TREC qrels (``qid 0 docid grade``) is what public test collections and trec_eval
use; JSONL (``{"query_id", "item_id", "relevance"}``) is what a team exporting
judgments from its own tools writes most easily. Both load into the same mapping
``{query_id: {item_id: grade}}``. Grades ≤ 0 are kept out (they say "not relevant",
which is what an unjudged item means to every metric reported here).
"""

from __future__ import annotations

import json
from pathlib import Path

from mmsearch.errors import EvaluationError

Judgments = dict[str, dict[str, int]]


def load_judgments(path: Path) -> Judgments:
    """Read qrels from ``path``: JSONL when the suffix is .jsonl/.json, TREC otherwise."""
    if not path.is_file():
        raise EvaluationError(f"Judgments file {path} does not exist.")
    jsonl = path.suffix.lower() in {".jsonl", ".json", ".ndjson"}
    judgments: Judgments = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parse = _parse_jsonl if jsonl else _parse_trec
            query_id, item_id, grade = parse(line, f"{path}:{number}")
            if grade > 0:
                judgments.setdefault(query_id, {})[item_id] = grade
    if not judgments:
        raise EvaluationError(f"Judgments file {path} holds no positive judgments.")
    return judgments


def _parse_trec(line: str, where: str) -> tuple[str, str, int]:
    parts = line.split()
    if len(parts) != 4:
        raise EvaluationError(
            f"{where}: expected 4 columns 'query_id 0 item_id grade', got {len(parts)}. "
            "For JSONL judgments, name the file *.jsonl."
        )
    return parts[0], parts[2], _grade(parts[3], where)


def _parse_jsonl(line: str, where: str) -> tuple[str, str, int]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{where}: not valid JSON ({exc.msg}).") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"{where}: each line must be a JSON object.")
    missing = [key for key in ("query_id", "item_id", "relevance") if key not in data]
    if missing:
        raise EvaluationError(f"{where}: missing key(s) {', '.join(missing)}.")
    ids = []
    for key in ("query_id", "item_id"):
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
            raise EvaluationError(f"{where}: '{key}' must be a non-empty string or number.")
        ids.append(str(value).strip())
    return ids[0], ids[1], _grade(data["relevance"], where)


def _grade(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise EvaluationError(f"{where}: the grade must be an integer, got {value!r}.")
    try:
        grade = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise EvaluationError(f"{where}: the grade must be an integer, got {value!r}.") from None
    if isinstance(value, float) and value != grade:
        raise EvaluationError(f"{where}: the grade must be an integer, got {value!r}.")
    return grade


def write_trec_qrels(path: Path, judgments: Judgments) -> Path:
    """Write judgments in TREC format, queries and items in a stable order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for query_id, items in judgments.items():
            for item_id, grade in items.items():
                handle.write(f"{query_id} 0 {item_id} {grade}\n")
    return path
