"""The learned reranker: a LightGBM LambdaMART model plus the metadata that guards it.

A model is a directory holding ``model.txt`` (LightGBM's own text format) and
``meta.json``: the feature names in order, the encoders (spec + version) whose
scores it was trained on, the collection and build, a hash of the training data and
the mmsearch version. At query time a model is used only if the collection's
feature list and encoders are the ones it was trained on; a model trained on cosine
scores of another encoder would rank garbage without failing, so it is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch import __version__
from mmsearch.errors import MMSearchError
from mmsearch.manifest import BuildManifest

MODEL_FILE, META_FILE = "model.txt", "meta.json"


class RankerError(MMSearchError):
    """A reranker model cannot be loaded, trained, or used with this collection."""


@dataclass
class RankerMeta:
    features: list[str]
    encoders: dict[str, str]  # role -> "spec@version"
    collection: str
    build_id: str
    training_sha256: str
    mmsearch_version: str = __version__
    params: dict[str, Any] = field(default_factory=dict)
    cv: dict[str, Any] = field(default_factory=dict)
    source: str = "qrels"  # qrels | clicks


def encoder_signature(manifest: BuildManifest) -> dict[str, str]:
    return {role: f"{e.spec}@{e.version}" for role, e in sorted(manifest.encoders.items())}


# 7 leaves: on Cranfield's 225 queries (5-fold CV) 7 leaves beat 15 by about 0.015
# nDCG@10 with the feedback features; a deeper tree learns the training queries.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_child_samples": 5,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "lambdarank_truncation_level": 20,
    "deterministic": True,
    "force_row_wise": True,
    "n_jobs": 1,
    "random_state": 7,
    "verbose": -1,
}


def fit_lambdamart(
    x: np.ndarray,
    y: np.ndarray,
    groups: list[int],
    params: dict[str, Any] | None = None,
    weights: np.ndarray | None = None,
) -> Any:
    """Train ``lgb.LGBMRanker`` (LambdaMART); rows must be grouped by query, in order."""
    import lightgbm as lgb

    if len(groups) == 0 or x.shape[0] == 0:
        raise RankerError("There is no training data: no query returned any candidate.")
    if not np.any(y > 0):
        raise RankerError(
            "No candidate of any query is judged relevant; check that the qrels or clicks "
            "use the collection's item ids."
        )
    model = lgb.LGBMRanker(**{**DEFAULT_PARAMS, **(params or {})})
    model.fit(x, y.astype(np.int32), group=groups, sample_weight=weights)
    return model.booster_


class RankerModel:
    """A trained booster with its metadata; predicts scores and SHAP contributions."""

    def __init__(self, booster: Any, meta: RankerMeta, path: Path | None = None):
        self.booster = booster
        self.meta = meta
        self.path = path

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "in-memory"

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x), dtype=np.float64)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """SHAP values: a column per feature, then the expected value; a row sums to the score."""
        return np.asarray(self.booster.predict(x, pred_contrib=True), dtype=np.float64)

    def save(self, path: Path) -> Path:
        path = Path(path).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / MODEL_FILE))
        (path / META_FILE).write_text(json.dumps(asdict(self.meta), indent=2) + "\n", "utf-8")
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> RankerModel:
        import lightgbm as lgb

        folder = Path(path).expanduser()
        if not (folder / MODEL_FILE).is_file() or not (folder / META_FILE).is_file():
            raise RankerError(
                f"{folder} is not a reranker model (it needs {MODEL_FILE} and {META_FILE}); "
                "train one with `mmsearch train-ranker`."
            )
        try:
            meta = RankerMeta(**json.loads((folder / META_FILE).read_text("utf-8")))
            booster = lgb.Booster(model_file=str(folder / MODEL_FILE))
        except (OSError, ValueError, TypeError, lgb.basic.LightGBMError) as exc:
            raise RankerError(f"The reranker model in {folder} cannot be read: {exc}") from exc
        if booster.num_feature() != len(meta.features):
            raise RankerError(
                f"The reranker model in {folder} is inconsistent: {booster.num_feature()} "
                f"features in the model, {len(meta.features)} in {META_FILE}."
            )
        return cls(booster, meta, folder)

    def columns(self, features: list[str]) -> list[int]:
        """Where the model's features sit among ``features`` (the build's feature space):
        a model saved before features were added to the space reads its own columns."""
        position = {name: i for i, name in enumerate(features)}
        return [position[name] for name in self.meta.features]

    def score(self, matrix: np.ndarray, features: list[str]) -> np.ndarray:
        """Scores of rows laid out as ``features``, the model's own columns picked out."""
        return self.predict(self._own(matrix, features))

    def _own(self, matrix: np.ndarray, features: list[str]) -> np.ndarray:
        if self.meta.features == features:
            return matrix
        return matrix[:, self.columns(features)]

    def incompatibility(self, features: list[str], manifest: BuildManifest) -> str | None:
        """Why this model cannot rank this build, or None when it can.

        The model's features must all be in the build's space (in any order; the model
        records its own list, so a space that gained features since it was trained,
        such as the graph features, still serves it)."""
        missing = sorted(set(self.meta.features) - set(features))
        if missing:
            return (
                f"the reranker {self.name} was trained on other features (the collection "
                f"lacks {', '.join(missing[:5])}); "
                f"retrain it on collection '{manifest.collection}' "
                "with `mmsearch train-ranker`"
            )
        signature = encoder_signature(manifest)
        if self.meta.encoders != signature:
            return (
                f"the reranker {self.name} was trained with encoders {self.meta.encoders}, "
                f"but build {manifest.build_id} uses {signature}; retrain it on this build"
            )
        return None
