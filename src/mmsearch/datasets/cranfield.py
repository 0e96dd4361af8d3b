"""The Cranfield collection as an mmsearch catalog, queries file and TREC qrels.

Two details of the original files matter for correct numbers: the query ids used
by ``cranqrel`` are the 1-based *positions* of the queries in ``cran.qry`` (its
``.I`` numbers skip values), and grades run the wrong way for graded metrics
(1 = complete answer … 4 = minimal interest, -1 = not relevant), so they are mapped
1→4, 2→3, 3→2, 4→1 and -1 is dropped.

The catalog uses field names the ingest auto-mapping recognises (``id``, ``title``,
``text``; ``author`` and ``bibliography`` become attributes), so it ingests with a
plain ``mmsearch ingest OUT/catalog.jsonl``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mmsearch.datasets.common import write_jsonl, write_split_queries
from mmsearch.errors import EvaluationError
from mmsearch.evaluation.judgments import Judgments, write_trec_qrels
from mmsearch.evaluation.queries import EvalQuery

FILES = ("cran.all.1400", "cran.qry", "cranqrel")
GRADE_MAP = {1: 4, 2: 3, 3: 2, 4: 1}
FIELD_NAMES = {"T": "title", "A": "author", "B": "bibliography", "W": "text"}


@dataclass
class CranfieldStats:
    documents: int
    skipped_documents: list[str]
    queries: int
    judgments: int
    splits: dict[str, int]


def _records(path: Path) -> list[tuple[str, dict[str, str]]]:
    """Split a SMART-format file into (.I id, {field letter: text}) records."""
    raw: list[tuple[str, dict[str, list[str]]]] = []
    field_name: str | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        marker = re.match(r"^\.([A-Z])\b\s*(.*)$", line)
        if marker:
            letter, rest = marker.groups()
            if letter == "I":
                raw.append((rest.strip(), {}))
                field_name = None
            elif raw:
                field_name = letter
                raw[-1][1].setdefault(letter, []).extend([rest] if rest.strip() else [])
            continue
        if field_name is not None and raw:
            raw[-1][1][field_name].append(line)
    return [(rid, {k: _clean(" ".join(v)) for k, v in fields.items()}) for rid, fields in raw]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def parse_documents(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Documents, and the ids of records skipped for lacking the .T/.A/.B/.W layout.

    Copies of the collection circulate with stray records appended (a few lines of
    unrelated text with only ``.W``); they are not part of the 1,400 abstracts that
    ``cranqrel`` judges, so they are left out and reported.
    """
    documents: list[dict[str, str]] = []
    skipped: list[str] = []
    for doc_id, fields in _records(path):
        if not {"T", "A", "B", "W"} <= set(fields):
            skipped.append(doc_id)
            continue
        row = {"id": doc_id}
        for letter, name in FIELD_NAMES.items():
            row[name] = fields.get(letter, "")
        documents.append(row)
    return documents, skipped


def parse_queries(path: Path) -> list[EvalQuery]:
    """Queries with ids = 1-based position in the file (what cranqrel uses)."""
    return [
        EvalQuery(str(position), fields.get("W", ""), extra={"source_number": number})
        for position, (number, fields) in enumerate(_records(path), start=1)
    ]


def parse_qrels(path: Path) -> Judgments:
    judgments: Judgments = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise EvaluationError(f"{path}:{number}: expected 'query_id doc_id grade'.")
        query_id, doc_id, grade = parts[0], parts[1], int(parts[2])
        if grade in GRADE_MAP:
            judgments.setdefault(query_id, {})[doc_id] = GRADE_MAP[grade]
    return judgments


def build_cranfield(
    source: Path, out: Path, *, limit_queries: int | None = None, extra_documents: int = 0
) -> CranfieldStats:
    """Write catalog.jsonl, queries*.jsonl and qrels.txt under ``out``.

    With ``limit_queries``, only the first N queries are kept and the catalog holds
    the documents they judge plus the first ``extra_documents`` others as
    distractors: a small but non-trivial collection for CI.
    """
    missing = [name for name in FILES if not (source / name).is_file()]
    if missing:
        raise EvaluationError(
            f"{source} lacks {', '.join(missing)}; point to the folder holding "
            "cran.all.1400, cran.qry and cranqrel."
        )
    documents, skipped = parse_documents(source / "cran.all.1400")
    queries = [q for q in parse_queries(source / "cran.qry") if q.text]
    judgments = parse_qrels(source / "cranqrel")
    queries = [q for q in queries if q.id in judgments]
    if limit_queries is not None:
        queries = queries[:limit_queries]
        judged = {doc for q in queries for doc in judgments[q.id]}
        distractors = [d["id"] for d in documents if d["id"] not in judged][:extra_documents]
        keep = judged | set(distractors)
        documents = [d for d in documents if d["id"] in keep]
    kept_ids = {d["id"] for d in documents}
    judgments = {
        q.id: {doc: g for doc, g in judgments[q.id].items() if doc in kept_ids} for q in queries
    }
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "catalog.jsonl", documents)
    splits = write_split_queries(out, queries)
    write_trec_qrels(out / "qrels.txt", judgments)
    return CranfieldStats(
        documents=len(documents),
        skipped_documents=skipped,
        queries=len(queries),
        judgments=sum(len(items) for items in judgments.values()),
        splits=splits,
    )
