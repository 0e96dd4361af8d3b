"""One experiment end to end: inputs → runs → metrics → files.

Kept apart from the CLI so benchmarks and tests run the very same code path as
``mmsearch eval``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsearch.clock import utc_now
from mmsearch.config import Settings
from mmsearch.evaluation.configs import (
    RetrievalConfig,
    builtin_configs,
    check_unique_names,
    load_config_file,
)
from mmsearch.evaluation.judgments import Judgments, load_judgments
from mmsearch.evaluation.metrics import Evaluation, evaluate_runs
from mmsearch.evaluation.queries import EvalQuery, load_queries
from mmsearch.evaluation.report import ExperimentInfo, summary, write_outputs
from mmsearch.evaluation.runner import ConfigRun, run_experiment
from mmsearch.manifest import BuildManifest
from mmsearch.workspace import Workspace


@dataclass
class ExperimentOutcome:
    summary: dict[str, Any]
    runs: list[ConfigRun]
    evaluation: Evaluation
    files: dict[str, Path]


def build_manifest(settings: Settings, collection: str, build_id: str | None) -> BuildManifest:
    """The manifest of ``build_id``, or of the live build when None."""
    folder = Workspace(settings.home).collection(collection)
    return folder.live_manifest() if build_id is None else folder.manifest(build_id)


def default_configs(
    settings: Settings, collection: str, queries: list[EvalQuery], build_id: str | None = None
) -> list[RetrievalConfig]:
    manifest = build_manifest(settings, collection, build_id)
    return builtin_configs(
        has_text=any("text" in q.modalities for q in queries),
        has_image=any("image" in q.modalities for q in queries),
        has_image_vectors="image" in manifest.encoders,
    )


def run_evaluation(
    settings: Settings,
    collection: str,
    queries_path: Path,
    judgments_path: Path,
    *,
    config_paths: list[Path] | None = None,
    configs: list[RetrievalConfig] | None = None,
    k: int = 100,
    stat_test: str = "student",
    out: Path | None = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
    groups: Iterable[str] | None = None,
    build_id: str | None = None,
) -> ExperimentOutcome:
    """Evaluate configurations (files, given objects, or the built-in set) on a collection.

    ``progress(total)`` returns a callback advanced once per (configuration, query).
    ``groups``: search as a caller with these ACL groups (None: unrestricted operator).
    ``build_id``: evaluate that build (a candidate, a canary) instead of the live one.
    """
    caller_groups = None if groups is None else sorted(set(groups))
    queries = load_queries(queries_path)
    judgments: Judgments = load_judgments(judgments_path)
    chosen = list(configs or [])
    chosen += [load_config_file(path) for path in config_paths or []]
    if not chosen:
        chosen = default_configs(settings, collection, queries, build_id)
    check_unique_names(chosen)
    advance = progress(len(chosen) * len(queries)) if progress else None
    runs = run_experiment(
        settings,
        collection,
        queries,
        chosen,
        k=k,
        progress=advance,
        groups=caller_groups,
        build_id=build_id,
    )
    evaluation = evaluate_runs(judgments, runs, stat_test=stat_test)
    manifest = build_manifest(settings, collection, build_id)
    info = ExperimentInfo(
        collection=collection,
        build_id=manifest.build_id,
        queries_file=str(queries_path),
        judgments_file=str(judgments_path),
        k=k,
        created_at=utc_now(),
        extra={
            "encoders": {role: e.spec for role, e in manifest.encoders.items()},
            **({"groups": caller_groups} if caller_groups is not None else {}),
        },
    )
    files: dict[str, Path] = {}
    if out is not None:
        files = write_outputs(out, info, queries, runs, evaluation, judgments)
    return ExperimentOutcome(summary(info, runs, evaluation), runs, evaluation, files)
