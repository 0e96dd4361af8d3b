"""What a build must show before it may go live: the publish gate's file, typed.

A gate file is TOML (or YAML) with up to four checks and the search options they use::

    [judged]                    # judged queries + qrels, the `mmsearch eval` formats
    queries = "queries.jsonl"   # relative to the gate file
    qrels = "qrels.tsv"
    k = 10                      # Recall@k (nDCG is always @10)
    max_ndcg_drop = 0.02        # absolute drop allowed
    max_recall_drop = 0.02
    alpha = 0.05                # a drop significant at alpha fails too (0: no test)
    [[canonical]]               # queries that must return these ids in the top k
    query = "red apple"
    ids = ["sku-1"]
    k = 5
    [counts]
    min_ratio = 0.9             # candidate items / live items
    [latency]
    max_p95_ratio = 1.5         # refused when the 95% CI of the p95 ratio lies above it
    [search]                    # SearchRequest options for every gate search (both builds)
    fusion = "rrf"

Unknown keys are errors (``extra="forbid"``): a misspelt ``max_ndcg_dorp`` would
otherwise silently gate on the default. Every input is bounded (file sizes, query
counts) because a gate runs inside a publish, possibly from the API.

A collection's default gate must keep working when the files it was set from move
or change, so ``copy_gate`` copies the gate and everything it names (queries, their
images, qrels) into one folder and rewrites the paths relative to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mmsearch.errors import MMSearchError
from mmsearch.evaluation.configs import RetrievalConfig, make_config
from mmsearch.evaluation.judgments import Judgments, load_judgments
from mmsearch.evaluation.queries import EvalQuery, load_queries, write_queries
from mmsearch.table_files import read_table_file

MAX_GATE_FILE_BYTES = 256 * 1024
MAX_QUERIES_FILE_BYTES = 20 * 1024 * 1024
MAX_QRELS_FILE_BYTES = 50 * 1024 * 1024
MAX_JUDGED_QUERIES = 5_000
MAX_CANONICAL = 500
MAX_COPY_BYTES = 200 * 1024 * 1024  # everything a default gate copies, query images included
GATE_FILE_NAME = "gate.toml"


class GateError(MMSearchError):
    """A gate file or its inputs cannot be used (missing, too large, invalid)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JudgedGate(_Strict):
    queries: Path
    qrels: Path
    k: int = Field(10, ge=1, le=100, description="Recall@k")
    max_ndcg_drop: float = Field(0.02, ge=0.0, le=1.0)
    max_recall_drop: float = Field(0.02, ge=0.0, le=1.0)
    alpha: float = Field(0.05, ge=0.0, lt=1.0, description="0 turns the paired test off")


class CanonicalQuery(_Strict):
    query: str = Field(min_length=1, max_length=2000)
    ids: list[str] = Field(min_length=1, max_length=100)
    k: int = Field(10, ge=1, le=100)
    where: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _fits(self) -> CanonicalQuery:
        if len(set(self.ids)) > self.k:
            raise ValueError(f"{len(set(self.ids))} ids cannot all be in the top {self.k}")
        return self


class CountsGate(_Strict):
    min_ratio: float | None = Field(None, ge=0.0)
    max_ratio: float | None = Field(None, gt=0.0)

    @model_validator(mode="after")
    def _bounds(self) -> CountsGate:
        if self.min_ratio is None and self.max_ratio is None:
            raise ValueError("give min_ratio, max_ratio or both")
        if (
            self.min_ratio is not None
            and self.max_ratio is not None
            and self.min_ratio > self.max_ratio
        ):
            raise ValueError("min_ratio is above max_ratio")
        return self


class LatencyGate(_Strict):
    max_p95_ratio: float = Field(ge=1.0)
    repeats: int = Field(3, ge=1, le=20)
    queries: int = Field(100, ge=5, le=1000, description="distinct queries timed per repeat")
    # Timer noise on millisecond searches would make a ratio alone fail identical builds.
    slack_ms: float = Field(2.0, ge=0.0, description="p95 differences below this never fail")
    # The gate refuses only when the bootstrap interval of the p95 ratio lies above
    # max_p95_ratio at this confidence (gate_latency.py): a busy host is not a slow build.
    confidence: float = Field(0.95, ge=0.5, le=0.999, description="of the p95-ratio interval")
    # The p95 of a few dozen searches is nearly their maximum; the gate repeats the queries
    # until this many interleaved pairs are timed, whatever ``repeats`` says.
    min_pairs: int = Field(200, ge=20, le=5000, description="interleaved pairs timed at least")


class DriftGate(_Strict):
    # A role whose two-sample test gives a p-value below this has drifted: the gate fails.
    threshold: float = Field(0.01, gt=0.0, lt=1.0)


class GateConfig(_Strict):
    judged: JudgedGate | None = None
    canonical: list[CanonicalQuery] = Field(default_factory=list, max_length=MAX_CANONICAL)
    counts: CountsGate | None = None
    latency: LatencyGate | None = None
    drift: DriftGate | None = None
    search: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_a_check(self) -> GateConfig:
        if not (self.judged or self.canonical or self.counts or self.latency or self.drift):
            raise ValueError(
                "a gate needs at least one of [judged], [[canonical]], [counts], [latency], [drift]"
            )
        return self


@dataclass(frozen=True)
class Gate:
    """A loaded gate: its typed config (paths absolute), where it came from, its digest."""

    config: GateConfig
    path: Path
    sha256: str

    def search_config(self) -> RetrievalConfig:
        """The SearchRequest options every gate search uses, on both builds."""
        return make_config("gate", dict(self.config.search), source=f"{self.path} [search]")


def load_gate(path: Path) -> Gate:
    """Read, validate and resolve a gate file; inputs it names must exist and fit the bounds."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GateError(f"Gate file {path} does not exist.")
    if path.stat().st_size > MAX_GATE_FILE_BYTES:
        raise GateError(
            f"Gate file {path} is over {MAX_GATE_FILE_BYTES // 1024} KiB; a gate names its "
            "queries in separate files ([judged] queries/qrels) rather than inline."
        )
    data = read_table_file(path, "Gate file", GateError)
    try:
        config = GateConfig.model_validate(data)
    except ValidationError as exc:
        raise GateError(f"Gate file {path} is not valid: {_describe(exc)}") from None
    base = path.resolve().parent
    if config.judged is not None:
        judged = config.judged.model_copy(
            update={
                "queries": _input(base, config.judged.queries, MAX_QUERIES_FILE_BYTES, path),
                "qrels": _input(base, config.judged.qrels, MAX_QRELS_FILE_BYTES, path),
            }
        )
        config = config.model_copy(update={"judged": judged})
    gate = Gate(config, path.resolve(), hashlib.sha256(path.read_bytes()).hexdigest())
    gate.search_config()  # a bad [search] option fails now, not in the middle of a publish
    return gate


def load_judged(judged: JudgedGate) -> tuple[list[EvalQuery], Judgments]:
    """The judged queries and their qrels, in the `mmsearch eval` formats, bounded."""
    for file, limit in (
        (judged.queries, MAX_QUERIES_FILE_BYTES),
        (judged.qrels, MAX_QRELS_FILE_BYTES),
    ):
        _check_size(file, limit)
    queries = load_queries(judged.queries)
    if len(queries) > MAX_JUDGED_QUERIES:
        raise GateError(
            f"{judged.queries} holds {len(queries)} queries; a gate runs at most "
            f"{MAX_JUDGED_QUERIES} (use a sample: the paired test needs hundreds, not thousands)."
        )
    return queries, load_judgments(judged.qrels)


def copy_gate(gate: Gate, dest: Path) -> Path:
    """Copy the gate and every file it names into ``dest`` (replaced as a whole); returns
    the copied gate file. The copy is written beside ``dest`` first and renamed in, so a
    failed copy leaves the previous default gate intact."""
    staging = dest.parent / f".{dest.name}.tmp-{os.urandom(3).hex()}"
    staging.mkdir(parents=True)
    try:
        data = gate.config.model_dump(mode="json", exclude_none=True)
        if gate.config.judged is not None:
            queries, _ = load_judged(gate.config.judged)
            data["judged"]["queries"] = _copy_queries(queries, staging)
            qrels_name = "qrels" + (gate.config.judged.qrels.suffix.lower() or ".txt")
            shutil.copyfile(gate.config.judged.qrels, staging / qrels_name)
            data["judged"]["qrels"] = qrels_name
        if not data.get("search"):
            data.pop("search", None)
        header = f"# Copied from {gate.path} (sha256 {gate.sha256[:12]}); paths are relative.\n"
        (staging / GATE_FILE_NAME).write_text(header + to_toml(data), encoding="utf-8")
        if _folder_bytes(staging) > MAX_COPY_BYTES:
            raise GateError(
                f"The gate's files come to more than {MAX_COPY_BYTES // (1024 * 1024)} MiB; "
                "use fewer or smaller query images."
            )
        load_gate(staging / GATE_FILE_NAME)  # the copy must load exactly like the original
        old = dest.parent / f".{dest.name}.old-{os.urandom(3).hex()}"
        if dest.exists():
            dest.rename(old)
        staging.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest / GATE_FILE_NAME


def _copy_queries(queries: list[EvalQuery], folder: Path) -> str:
    images = {q.image for q in queries if q.image is not None}
    if sum(image.stat().st_size for image in images) > MAX_COPY_BYTES:
        raise GateError(
            f"The gate's query images come to more than {MAX_COPY_BYTES // (1024 * 1024)} MiB; "
            "use fewer or smaller ones."
        )
    copied: dict[Path, Path] = {}
    rewritten = []
    for query in queries:
        image = query.image
        if image is not None:
            if image not in copied:
                copied[image] = folder / "images" / f"{len(copied):05d}{image.suffix.lower()}"
                copied[image].parent.mkdir(exist_ok=True)
                shutil.copyfile(image, copied[image])
            image = copied[image]
        rewritten.append(EvalQuery(query.id, query.text, image, query.where, dict(query.extra)))
    write_queries(folder / "queries.jsonl", rewritten)
    return "queries.jsonl"


def to_toml(data: dict[str, Any]) -> str:
    """TOML for the gate's plain shape (scalars, lists, tables, arrays of tables); the
    standard library reads TOML but cannot write it, and this shape needs no more."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not _is_table(v)]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{_key(key)}]"]
            lines += [f"{_key(k)} = {_value(v)}" for k, v in value.items()]
        elif _is_table(value):
            for entry in value:
                lines += ["", f"[[{_key(key)}]]"]
                lines += [f"{_key(k)} = {_value(v)}" for k, v in entry.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise GateError(f"Cannot write {value!r} into a gate file.")


def _input(base: Path, name: Path, limit: int, gate_path: Path) -> Path:
    file = (base / name).resolve()
    if not file.is_file():
        raise GateError(
            f"Gate file {gate_path} names {name}, which does not exist (looked for {file}); "
            "paths in a gate file are relative to the gate file."
        )
    _check_size(file, limit)
    return file


def _check_size(file: Path, limit: int) -> None:
    if file.stat().st_size > limit:
        raise GateError(
            f"{file} is over {limit // (1024 * 1024)} MiB, more than a gate reads; use a sample."
        )


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
