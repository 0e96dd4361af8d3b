"""Per-collection fusion tuning: the choice never falls below the best single signal."""

from __future__ import annotations

import random

import pytest

from mmsearch.errors import MMSearchError
from mmsearch.index.base import Match
from mmsearch.ranking.tuning import (
    FEEDBACK_VARIANT,
    PLAIN_VARIANT,
    FusionChoice,
    TunedFusion,
    held_out,
    load_tuned,
    save_tuned,
    tune_fusion,
    tuned_path,
)


def scored(ids: list[str], top: float) -> list[Match]:
    return [Match(item, top * (1.0 - i / 40)) for i, item in enumerate(ids)]


def lists(queries: int, seed: int, noisy_keyword: bool) -> tuple[dict, dict]:
    """Query q has relevant items q-0..q-2. The vector signal ranks them near the top;
    the keyword signal ranks them high only when not ``noisy_keyword``."""
    rng = random.Random(seed)
    out, judgments = {}, {}
    for q in range(queries):
        # Ids sort the noise first, so ties in score can never favour the relevant items.
        relevant = [f"r{q}-{i}" for i in range(3)]
        others = [f"a{q}-{i}" for i in range(20)]
        vector = [*others[:2], *relevant, *others[2:]]
        keyword = list(others)
        rng.shuffle(keyword)
        if not noisy_keyword:
            keyword.insert(0, relevant[0])
        out[f"q{q}"] = {"keyword": scored(keyword, 12.0), "text_vector": scored(vector, 0.9)}
        judgments[f"q{q}"] = dict.fromkeys(relevant, 1)
    return out, judgments


def test_a_noise_signal_is_weighted_down_and_the_choice_beats_rrf() -> None:
    dev, judgments = lists(30, seed=1, noisy_keyword=True)
    choice, scores = tune_fusion({PLAIN_VARIANT: dev}, judgments)
    assert scores["chosen"] >= max(scores["single:keyword"], scores["single:text_vector"])
    assert scores["chosen"] > scores["rrf"]
    assert choice.method == "weighted" and choice.weights is not None
    assert choice.weights["text_vector"] > choice.weights["keyword"]
    test, test_judgments = lists(30, seed=2, noisy_keyword=True)
    report = held_out({PLAIN_VARIANT: test}, choice, test_judgments)
    assert report.best_single_signal == "text_vector"
    assert report.chosen >= report.best_single and report.chosen > report.rrf
    assert report.p_vs_rrf is not None and report.p_vs_rrf < 0.05


def test_the_feedback_variant_is_chosen_only_when_it_scores_better() -> None:
    plain, judgments = lists(20, seed=3, noisy_keyword=True)
    better, _ = lists(20, seed=3, noisy_keyword=False)
    choice, _ = tune_fusion({PLAIN_VARIANT: plain, FEEDBACK_VARIANT: better}, judgments)
    assert choice.feedback
    choice, _ = tune_fusion({PLAIN_VARIANT: better, FEEDBACK_VARIANT: plain}, judgments)
    assert not choice.feedback


def test_tuning_without_results_is_a_clear_error() -> None:
    with pytest.raises(MMSearchError, match="no dev queries"):
        tune_fusion({PLAIN_VARIANT: {}}, {})


def test_saved_choice_round_trips_and_a_broken_file_names_itself(tmp_path) -> None:
    tuned = TunedFusion(
        build_id="b1",
        choice=FusionChoice(method="weighted", weights={"keyword": 0.2, "text_vector": 0.8}),
        dev_queries=10,
        dev_ndcg10=0.5,
        dev_rrf=0.4,
        dev_best_single=0.45,
        dev_best_single_signal="text_vector",
    )
    assert load_tuned(tmp_path) is None
    save_tuned(tmp_path, tuned)
    assert load_tuned(tmp_path) == tuned
    tuned_path(tmp_path).write_text("{not json", encoding="utf-8")
    with pytest.raises(MMSearchError, match=r"tuned_fusion\.json"):
        load_tuned(tmp_path)
