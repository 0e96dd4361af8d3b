"""Embedding drift: has a candidate build moved away from live, or have recent queries
moved away from earlier ones?

Test: the unbiased MMD² (maximum mean discrepancy) between two samples of vectors,
with a Gaussian (RBF) kernel whose bandwidth is the median pairwise squared distance
of the pooled sample, and a seeded permutation test for its p-value. MMD with a
characteristic kernel sees any difference of distributions (mean, spread, modes),
not only a mean shift, needs no training, and its permutation p-value is exact under
"same distribution" for any dimension, so the false-alarm rate is the threshold.

Why NumPy and not a drift library: alibi-detect 0.13 (its ``MMDDrift`` is the same
test) pins numpy < 2 (pip resolves it to numpy 1.26 and Pillow 10, downgrading this
environment) and brings TensorFlow or a pinned PyTorch backend, numba, OpenCV and
scikit-image; evidently is a reporting framework whose embedding drift runs a
classifier or per-component tests over pandas frames. The whole test is one kernel
matrix and one matrix product over permutation indicators (~60 lines below), so the
dependency would cost far more than it saves.

Bounded time: each side is capped at ``MAX_SAMPLES`` vectors (seeded draw), so one
test is a ≤ 1000 x 1000 kernel and ``PERMUTATIONS`` rows of indicators whatever the
build size; the build side comes from the reference sample stored per build
(``drift_reference.py``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.manifest import BuildManifest
from mmsearch.monitoring.drift_reference import RoleReference, ensure_reference
from mmsearch.workspace import CollectionDir

log = logging.getLogger("mmsearch.drift")

# p < 0.01: 3 false alarms in 200 no-shift tests (random halves of Cranfield, emoji names,
# Noto, Twemoji; 50 splits each) with every real shift detected; the permutation p-value
# makes the expected rate the threshold itself. See benchmarks/drift_detection.py.
DEFAULT_THRESHOLD = 0.01
MAX_SAMPLES = 500
PERMUTATIONS = 300
MIN_SAMPLES = 20
SEED = 7
Kind = Literal["candidate", "queries"]


@dataclass
class DriftResult:
    role: str
    kind: Kind
    score: float | None  # unbiased MMD²; None when the samples cannot be compared
    p_value: float | None
    n_reference: int
    n_test: int
    threshold: float
    drifted: bool | None  # None: not tested (see ``note``)
    note: str = ""
    reference_build: str = ""
    test_source: str = ""  # the candidate build id, or "queries"
    details: dict[str, float] = field(default_factory=dict)
    # what was compared with what, in words, for the report (e.g. "earlier 500 queries
    # vs the newest 500 queries"), so a score is never read against the wrong baseline
    comparison: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MMDTest:
    score: float
    p_value: float
    n_x: int
    n_y: int
    bandwidth: float


def _subsample(vectors: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    if vectors.shape[0] <= cap:
        return vectors
    return vectors[np.sort(rng.choice(vectors.shape[0], size=cap, replace=False))]


def mmd_permutation_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    permutations: int = PERMUTATIONS,
    max_samples: int = MAX_SAMPLES,
    seed: int = SEED,
) -> MMDTest:
    """Unbiased MMD² of ``x`` vs ``y`` (RBF, median heuristic) and its permutation p-value.

    The pooled kernel matrix is computed once; each permutation is a 0/1 row selecting
    the "x" side, so all permutations are one (P x N) @ (N x N) product."""
    rng = np.random.default_rng(seed)
    x = _subsample(np.asarray(x, dtype=np.float64), max_samples, rng)
    y = _subsample(np.asarray(y, dtype=np.float64), max_samples, rng)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("an MMD test needs at least two vectors on each side")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    pooled = np.concatenate([x, y])
    squared = np.einsum("ij,ij->i", pooled, pooled)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    off_diagonal = distances[~np.eye(n + m, dtype=bool)]
    bandwidth = float(np.median(off_diagonal))
    if bandwidth <= 1e-12:  # (nearly) all vectors identical: any scale will do
        bandwidth = float(off_diagonal.mean()) or 1.0
    kernel = np.exp(-distances / bandwidth)
    del distances, off_diagonal

    total = kernel.sum()
    diagonal = np.diag(kernel).copy()

    def statistic(select_x: np.ndarray) -> np.ndarray:
        weighted = select_x @ kernel
        s_xx = np.einsum("ij,ij->i", weighted, select_x)
        s_xy = weighted.sum(axis=1) - s_xx
        s_yy = total - s_xx - 2.0 * s_xy
        d_x = select_x @ diagonal
        d_y = diagonal.sum() - d_x
        result: np.ndarray = (
            (s_xx - d_x) / (n * (n - 1)) + (s_yy - d_y) / (m * (m - 1)) - 2.0 * s_xy / (n * m)
        )
        return result

    observed = float(statistic(np.concatenate([np.ones(n), np.zeros(m)])[None, :])[0])
    order = np.argsort(rng.random((permutations, n + m)), axis=1)[:, :n]
    select = np.zeros((permutations, n + m))
    np.put_along_axis(select, order, 1.0, axis=1)
    null = statistic(select)
    p_value = float((1 + np.count_nonzero(null >= observed - 1e-12)) / (1 + permutations))
    return MMDTest(observed, p_value, n, m, bandwidth)


def _tested(
    role: str,
    kind: Kind,
    reference: RoleReference,
    test: np.ndarray,
    test_mean: np.ndarray,
    threshold: float,
    source: str,
) -> DriftResult:
    return _tested_samples(
        role,
        kind,
        reference.sample,
        reference.mean,
        reference.build_id,
        test,
        test_mean,
        threshold,
        source,
    )


def _tested_samples(
    role: str,
    kind: Kind,
    reference: np.ndarray,
    reference_mean: np.ndarray,
    reference_build: str,
    test: np.ndarray,
    test_mean: np.ndarray,
    threshold: float,
    source: str,
) -> DriftResult:
    dim = reference.shape[1] if reference.ndim == 2 else 0
    base = DriftResult(
        role, kind, None, None, reference.shape[0], int(test.shape[0]), threshold, None
    )
    base.reference_build, base.test_source = reference_build, source
    if test.ndim != 2 or test.shape[1] != dim:
        width = test.shape[1] if test.ndim == 2 else 0
        base.note = f"dimensions differ ({dim} vs {width}): not comparable"
        return base
    if min(reference.shape[0], test.shape[0]) < MIN_SAMPLES:
        base.note = f"too few vectors for a test (need at least {MIN_SAMPLES} on each side)"
        return base
    outcome = mmd_permutation_test(reference, test)
    base.score, base.p_value = outcome.score, outcome.p_value
    base.n_reference, base.n_test = outcome.n_x, outcome.n_y
    base.drifted = outcome.p_value < threshold
    base.details = {
        "mean_shift": float(np.linalg.norm(reference_mean - test_mean)),
        "bandwidth": outcome.bandwidth,
    }
    return base


def _alert(collection: str, result: DriftResult) -> None:
    if result.drifted:
        log.warning(
            "embedding drift: collection=%s role=%s kind=%s source=%s mmd2=%.5f p=%.4f "
            "(threshold %g, %d reference vs %d test vectors)",
            collection,
            result.role,
            result.kind,
            result.test_source,
            result.score,
            result.p_value,
            result.threshold,
            result.n_reference,
            result.n_test,
        )


def compare_builds(
    collection: CollectionDir,
    candidate_manifest: BuildManifest,
    live_manifest: BuildManifest,
    settings: Settings | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[DriftResult]:
    """Per role: the candidate build's vectors against live's (the publish gate's check).

    A role whose encoder differs (spec or version) lives in another vector space, so it
    is reported untested instead of with a meaningless p-value."""
    candidate_id = candidate_manifest.build_id
    if candidate_id == live_manifest.build_id:
        raise MMSearchError(
            f"Build {candidate_id} is the live build of '{collection.name}'; name another "
            "build as the candidate (see: mmsearch collections)."
        )
    live_refs = ensure_reference(collection, live_manifest, settings)
    candidate_refs = ensure_reference(collection, candidate_manifest, settings)
    live_enc = live_manifest.encoders
    cand_enc = candidate_manifest.encoders
    results = []
    for role in sorted(set(live_enc) | set(cand_enc)):
        result = DriftResult(role, "candidate", None, None, 0, 0, threshold, None)
        result.reference_build, result.test_source = live_manifest.build_id, candidate_id
        a, b = live_enc.get(role), cand_enc.get(role)
        if a is None or b is None:
            result.note = f"role only in the {'candidate' if a is None else 'live'} build"
        elif (a.spec, a.version) != (b.spec, b.version):
            result.note = (
                f"encoders differ ({a.spec} {a.version} vs {b.spec} "
                f"{b.version}): vectors are in different spaces; compare search "
                "quality instead (mmsearch eval)"
            )
        elif role not in live_refs or role not in candidate_refs:
            result.note = "no vectors of this role in one of the builds"
        else:
            test = candidate_refs[role]
            result = _tested(
                role, "candidate", live_refs[role], test.sample, test.mean, threshold, candidate_id
            )
        result.comparison = (
            f"candidate build {candidate_id}'s vectors vs live build "
            f"{live_manifest.build_id}'s vectors"
        )
        _alert(collection.name, result)
        results.append(result)
    return results


def compare_queries(
    collection: CollectionDir,
    live_manifest: BuildManifest,
    vectors_by_role: dict[str, np.ndarray],
    settings: Settings | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[DriftResult]:
    """Per role: recent queries' embeddings against the live build's reference sample.

    Queries are not documents (a two-word query and a product description differ even
    when the catalog fits its users), so this shows a standing non-zero score on text
    whatever the traffic; the operator's check (``drift_checks.check_collection``)
    compares queries with earlier queries instead (``compare_query_windows``). Kept for
    "do users ask for what the catalog holds at all", which only a person can judge."""
    refs = ensure_reference(collection, live_manifest, settings)
    results = []
    for role, vectors in sorted(vectors_by_role.items()):
        rows = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if role not in refs:
            result = DriftResult(
                role, "queries", None, None, 0, int(rows.shape[0]), threshold, None
            )
            result.reference_build, result.test_source = live_manifest.build_id, "queries"
            result.note = "the live build has no vectors of this role"
        else:
            mean = rows.mean(axis=0) if rows.size else np.zeros(0)
            result = _tested(role, "queries", refs[role], rows, mean, threshold, "queries")
        result.comparison = f"queries vs live build {live_manifest.build_id}'s documents"
        _alert(collection.name, result)
        results.append(result)
    return results


def _mean(rows: np.ndarray) -> np.ndarray:
    return rows.mean(axis=0) if rows.size else np.zeros(0)


def split_query_windows(rows: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference, recent): the newest ``min(window, n // 2)`` vectors, and up to as many
    logged just before them. Equal halves give the test its best power for the rows at
    hand; ``rows`` are oldest first, as ``QueryVectorLog.recent`` returns them."""
    half = min(window, rows.shape[0] // 2)
    if half == 0:
        return rows[:0], rows[:0]
    return rows[-2 * half : -half], rows[-half:]


def compare_query_windows(
    collection_name: str,
    live_build: str,
    vectors_by_role: dict[str, np.ndarray],
    *,
    window: int = MAX_SAMPLES,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[DriftResult]:
    """Per role: the newest queries against the queries just before them.

    Queries are compared with queries: a short query and a long product description sit
    in different regions of the same space, so a queries-vs-documents test "drifts" on
    the first day and says nothing about change. Two windows of the same log, made by the
    same encoder (``drift_checks.recent_query_vectors`` keeps only those), differ only when
    what users ask for has moved."""
    results = []
    for role, vectors in sorted(vectors_by_role.items()):
        rows = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        reference, recent = split_query_windows(rows, window)
        result = _tested_samples(
            role,
            "queries",
            reference,
            _mean(reference),
            live_build,
            recent,
            _mean(recent),
            threshold,
            "queries",
        )
        result.comparison = (
            f"earlier {reference.shape[0]} queries vs the newest {recent.shape[0]} queries "
            f"(of {rows.shape[0]} logged with live's encoders)"
        )
        if result.drifted is None and reference.shape[0] < MIN_SAMPLES:
            result.note = (
                f"too few logged queries for two windows (have {rows.shape[0]}, need "
                f"{2 * MIN_SAMPLES})"
            )
        _alert(collection_name, result)
        results.append(result)
    return results
