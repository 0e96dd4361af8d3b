"""Evaluation-gated publish: a worse build is refused with its reasons, an equal one goes
live, force needs a reason and is recorded, a default gate applies to every publish, and
promote goes through the same gate. Real ingest, LanceDB and search; fake encoders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsearch.builds import lifecycle
from mmsearch.builds.gate import evaluate_gate, paired_drop_p
from mmsearch.builds.gate_config import GateError, load_gate
from mmsearch.builds.gate_report import latest_gate_report
from mmsearch.builds.publishing import (
    GateFailed,
    default_gate,
    gated_publish,
    promote,
    set_default_gate,
)
from mmsearch.cli import app
from mmsearch.errors import MMSearchError
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.workspace import Workspace

from conftest import write_jsonl

NOUNS = "anchor banjo cactus dolphin easel falcon glacier harp igloo jaguar kettle lantern"
ADJECTIVES = "amber bold crisp dusty eager fuzzy gentle hollow icy jolly keen lofty"
PAIRS = list(zip(ADJECTIVES.split(), NOUNS.split(), strict=True))
ITEMS = [f"item-{i}" for i in range(len(PAIRS))]


def catalog(folder: Path, *, scramble: bool = False, keep: int | None = None) -> Path:
    """Item i is "<adjective i> <noun i>"; scrambled, item i carries item i+1's words."""
    rows = []
    for index, item_id in enumerate(ITEMS[:keep]):
        adjective, noun = PAIRS[(index + 1) % len(PAIRS) if scramble else index]
        rows.append(
            {
                "id": item_id,
                "title": f"{adjective} {noun}",
                "description": f"a {adjective} {noun} from the {noun} shelf",
                "category": "things",
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    return write_jsonl(folder / "catalog.jsonl", rows)


def gate_file(folder: Path, extra: str = "", judged: bool = True) -> Path:
    """Judged queries (one per item, its own words) and qrels beside a gate file."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        folder / "queries.jsonl",
        [{"id": f"q{i}", "text": f"{a} {n}"} for i, (a, n) in enumerate(PAIRS)],
    )
    (folder / "qrels.txt").write_text(
        "".join(f"q{i} 0 {item} 1\n" for i, item in enumerate(ITEMS)), encoding="utf-8"
    )
    text = (
        '[judged]\nqueries = "queries.jsonl"\nqrels = "qrels.txt"\nk = 10\n'
        "max_ndcg_drop = 0.02\nmax_recall_drop = 0.02\nalpha = 0.05\n"
        if judged
        else ""
    )
    path = folder / "gate.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


@pytest.fixture
def shop(settings, tmp_path):
    """'shop' with the good catalog live; ``candidate(...)`` adds a ready, not-live build."""
    Ingestor(settings).run(IngestOptions(catalog(tmp_path / "live"), "shop"))
    folder = Workspace(settings.home).collection("shop")
    live = folder.alias("live")

    def candidate(name: str, **kwargs: object) -> str:
        before = folder.alias("live")
        options = IngestOptions(catalog(tmp_path / name, **kwargs), "shop", new_build=True)
        build = Ingestor(settings).run(options).build_id
        assert build is not None and folder.alias("live") == build
        lifecycle.publish(folder, before, "test", reason="back to live for the test")
        return build

    return folder, live, candidate


def test_worse_build_is_refused_with_reasons_and_live_stays(settings, shop, tmp_path):
    folder, live, candidate = shop
    worse = candidate("scrambled", scramble=True)
    gate = gate_file(tmp_path / "gate")
    with pytest.raises(GateFailed) as refused:
        gated_publish(settings, "shop", worse, "tester", gate_path=gate)
    assert folder.alias("live") == live
    message = str(refused.value)
    assert "ndcg@10" in message and "--force" in message and live in message
    report = refused.value.report
    assert report is not None and report.verdict == "fail" and report.live_build == live
    ndcg = next(row for row in report.metrics if row.metric == "ndcg@10")
    assert ndcg.live == pytest.approx(1.0) and ndcg.candidate < 0.5
    assert ndcg.p_value is not None and ndcg.p_value < 0.001 and ndcg.passed is False
    assert {c.name for c in report.checks if not c.passed} == {
        "judged.ndcg@10",
        "judged.recall@10",
    }
    stored = latest_gate_report(folder, worse)
    assert stored is not None and stored.reasons == report.reasons
    assert (folder.folder / stored.report_file).is_file()
    summary = folder.manifest(worse).gate
    assert summary is not None and summary.verdict == "fail" and summary.live_build == live
    assert summary.checks["judged.ndcg@10"] is False
    assert all(p.by != "tester" for p in folder.manifest(worse).publishes)


def test_equal_build_passes_every_check_and_goes_live(settings, shop, tmp_path):
    folder, live, candidate = shop
    same = candidate("same")
    gate = gate_file(
        tmp_path / "gate",
        '\n[[canonical]]\nquery = "icy igloo"\nids = ["item-8"]\nk = 1\n'
        "\n[counts]\nmin_ratio = 0.9\nmax_ratio = 1.1\n"
        "\n[latency]\nmax_p95_ratio = 3.0\nrepeats = 2\nslack_ms = 50\n",
    )
    outcome = gated_publish(settings, "shop", same, "tester", gate_path=gate, reason="rebuild")
    assert folder.alias("live") == same and folder.alias("previous") == live
    report = outcome.report
    assert report is not None and report.passed and report.reasons == []
    names = {check.name for check in report.checks}
    assert names == {
        "judged.ndcg@10",
        "judged.recall@10",
        "canonical[0]",
        "counts",
        "latency.p95",
    }
    assert report.queries == {"judged": 12, "without_judgments": 0, "timed": 12}
    rows = {row.metric: row for row in report.metrics}
    assert rows["items"].live == rows["items"].candidate == 12
    assert rows["latency p95"].live > 0 and rows["latency p95"].candidate > 0
    record = folder.manifest(same).publishes[-1]
    assert record.by == "tester" and record.forced is False
    assert record.reason == "rebuild"
    assert record.gate is not None
    assert record.gate.verdict == "pass" and record.gate.origin == "explicit"
    assert record.gate.live_build == live


def test_canonical_and_count_failures_name_what_is_missing(settings, shop, tmp_path):
    folder, live, candidate = shop
    smaller = candidate("smaller", keep=8)
    gate = gate_file(
        tmp_path / "gate",
        '[[canonical]]\nquery = "jolly jaguar"\nids = ["item-9"]\nk = 5\n'
        '\n[[canonical]]\nquery = "amber anchor"\nids = ["item-0"]\nk = 1\n'
        "\n[counts]\nmin_ratio = 0.9\n",
        judged=False,
    )
    report = evaluate_gate(settings, "shop", smaller, load_gate(gate))
    assert report.verdict == "fail"
    failed = {c.name: c.reason for c in report.checks if not c.passed}
    assert set(failed) == {"canonical[0]", "counts"}
    assert "item-9 not in the top 5" in failed["canonical[0]"]
    assert "live finds 1/1" in failed["canonical[0]"]
    assert "8 against live's 12" in failed["counts"] and "0.667" in failed["counts"]
    assert folder.alias("live") == live
    with pytest.raises(GateFailed):
        gated_publish(settings, "shop", smaller, "tester", gate_path=gate)


def test_force_needs_a_reason_and_is_recorded(settings, shop, tmp_path):
    folder, live, candidate = shop
    worse = candidate("scrambled", scramble=True)
    gate = gate_file(tmp_path / "gate")
    runner = CliRunner()
    base = ["--home", str(settings.home)]
    refused = runner.invoke(app, ["publish", "-c", "shop", worse, "--gate", str(gate), *base])
    assert refused.exit_code == 1, refused.output
    assert "ndcg@10" in refused.output and "fail" in refused.output
    no_reason = runner.invoke(
        app, ["publish", "-c", "shop", worse, "--gate", str(gate), "--force", *base]
    )
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    assert folder.alias("live") == live
    forced = runner.invoke(
        app,
        [
            *("publish", "-c", "shop", worse, "--gate", str(gate), "--force"),
            *("--reason", "hotfix for ticket 42", "--json", *base),
        ],
    )
    assert forced.exit_code == 0, forced.output
    data = json.loads(forced.output)
    assert data["published"] and data["forced"] and data["report"]["verdict"] == "fail"
    assert folder.alias("live") == worse and folder.alias("previous") == live
    record = folder.manifest(worse).publishes[-1]
    assert record.forced is True and record.reason == "hotfix for ticket 42"
    assert record.forced_by == record.by and record.by.startswith("cli")
    assert record.gate is not None and record.gate.verdict == "fail"
    event = lifecycle.switch_history(folder)[-1]
    assert event["action"] == "publish" and event["build_id"] == worse
    assert event["reason"] == "forced past a failing gate: hotfix for ticket 42"
    audit = (settings.home / "audit").glob("*")
    trail = "".join(p.read_text() for p in audit if p.is_file())
    assert trail.count("build.publish") == 3 and "failed its gate" in trail


def test_default_gate_is_copied_and_applies_without_gate_option(settings, shop, tmp_path):
    folder, live, candidate = shop
    worse = candidate("scrambled", scramble=True)
    original = gate_file(tmp_path / "gate", '\n[search]\nfusion = "rrf"\n')
    runner = CliRunner()
    base = ["--home", str(settings.home)]
    assert runner.invoke(app, ["gate", "set", "-c", "shop", str(original), *base]).exit_code == 0
    shutil.rmtree(original.parent)  # the default keeps working when the originals go
    gate = default_gate(folder)
    assert gate is not None and gate.path.is_relative_to(folder.folder.resolve() / "gate")
    assert gate.config.judged is not None and gate.config.judged.queries.is_file()
    assert gate.config.search == {"fusion": "rrf"}
    shown = runner.invoke(app, ["gate", "show", "-c", "shop", *base])
    assert shown.exit_code == 0 and "max_ndcg_drop = 0.02" in shown.output
    refused = runner.invoke(app, ["publish", "-c", "shop", worse, *base])
    assert refused.exit_code == 1 and folder.alias("live") == live
    with pytest.raises(GateFailed):  # the API's door: no gate given, the default applies
        gated_publish(settings, "shop", worse, "key:abc")
    checked = runner.invoke(app, ["gate", "check", "-c", "shop", worse, "--json", *base])
    assert checked.exit_code == 1 and json.loads(checked.output)["verdict"] == "fail"
    report = runner.invoke(app, ["gate", "show", "-c", "shop", "--build", worse, *base])
    assert report.exit_code == 0 and "ndcg@10" in report.output
    assert runner.invoke(app, ["gate", "clear", "-c", "shop", *base]).exit_code == 0
    assert default_gate(folder) is None
    outcome = gated_publish(settings, "shop", worse, "tester")
    assert outcome.gate is None and outcome.report is None and folder.alias("live") == worse
    assert folder.manifest(worse).publishes[-1].gate is None


def test_promote_gates_the_canary(settings, shop, tmp_path):
    folder, live, candidate = shop
    worse = candidate("scrambled", scramble=True)
    same = candidate("same")
    set_default_gate(folder, gate_file(tmp_path / "gate"), "tester")
    lifecycle.start_canary(folder, worse, 10, "tester")
    with pytest.raises(GateFailed):
        promote(settings, "shop", "tester")
    assert folder.alias("live") == live
    assert lifecycle.canary_of(folder.state()).build_id == worse
    lifecycle.start_canary(folder, same, 10, "tester")
    outcome = promote(settings, "shop", "tester")
    assert outcome.report is not None and outcome.report.passed
    assert outcome.gate == "default"
    assert folder.alias("live") == same and lifecycle.canary_of(folder.state()) is None
    assert lifecycle.switch_history(folder)[-1]["action"] == "promote"
    with pytest.raises(lifecycle.SwitchRefused, match="No canary"):
        promote(settings, "shop", "tester")


def test_first_publish_passes_comparisons_with_a_note(settings, shop, tmp_path):
    folder, _, candidate = shop
    same = candidate("same")
    folder.update_state(lambda state: state.aliases.clear("live"))
    gate = gate_file(
        tmp_path / "gate", "\n[counts]\nmin_ratio = 0.9\n[latency]\nmax_p95_ratio = 1.5\n"
    )
    outcome = gated_publish(settings, "shop", same, "tester", gate_path=gate)
    report = outcome.report
    assert report is not None and report.passed and report.live_build is None
    assert any("first publish" in note for note in report.notes)
    ndcg = next(row for row in report.metrics if row.metric == "ndcg@10")
    assert ndcg.live is None and ndcg.candidate == pytest.approx(1.0)
    assert folder.alias("live") == same


def test_live_changing_during_the_gate_refuses_the_switch(settings, shop, tmp_path):
    folder, live, candidate = shop
    same = candidate("same")
    other = candidate("other")
    with pytest.raises(lifecycle.SwitchRefused, match="changed"):
        lifecycle.publish(folder, same, "tester", guard_live=True, expect_live=other)
    assert folder.alias("live") == live


def test_gate_files_are_checked_strictly(tmp_path):
    folder = tmp_path / "gate"
    typo = gate_file(folder, "\n[counts]\nmin_ratio = 0.9\nmax_ratoi = 2\n")
    with pytest.raises(GateError, match=r"counts\.max_ratoi: unknown key"):
        load_gate(typo)
    (folder / "empty.toml").write_text("[search]\nfusion = 'rrf'\n")
    with pytest.raises(GateError, match="at least one"):
        load_gate(folder / "empty.toml")
    (folder / "missing.toml").write_text('[judged]\nqueries = "nope.jsonl"\nqrels = "qrels.txt"\n')
    with pytest.raises(GateError, match="relative to the gate file"):
        load_gate(folder / "missing.toml")
    (folder / "bad-search.toml").write_text("[counts]\nmin_ratio = 1\n[search]\nfusion = 'best'\n")
    with pytest.raises(MMSearchError, match="unknown fusion"):
        load_gate(folder / "bad-search.toml")
    (folder / "canon.toml").write_text('[[canonical]]\nquery = "x"\nids = ["a", "b"]\nk = 1\n')
    with pytest.raises(GateError, match="cannot all be in the top 1"):
        load_gate(folder / "canon.toml")


def test_paired_drop_p_is_one_sided():
    live = [1.0, 0.8, 0.9, 1.0, 0.7, 0.9]
    worse = [0.5, 0.4, 0.6, 0.3, 0.2, 0.5]
    assert paired_drop_p(live, worse) < 0.01
    assert paired_drop_p(worse, live) > 0.99  # an improvement never counts against a build
    assert paired_drop_p(live, live) == 1.0
    assert paired_drop_p([1.0, 1.0, 1.0], [0.9, 0.9, 0.9]) == 0.0


def synthetic_timer(candidate_build: str, candidate_factor: float):
    """A deterministic stand-in for gate._search_ms: a shared host with load bursts (8x
    for 60 searches in every 180) and log-normal jitter, the candidate ``factor`` slower."""
    import numpy as np

    rng = np.random.default_rng(5)
    calls = [0]

    def search_ms(searcher, request) -> float:
        calls[0] += 1
        load = 8.0 if (calls[0] // 60) % 3 == 1 else 1.0
        factor = candidate_factor if searcher.build_id == candidate_build else 1.0
        return 70.0 * factor * load * float(rng.lognormal(0.0, 0.3))

    return search_ms


@pytest.mark.parametrize(("factor", "passes"), [(1.0, True), (3.0, False)])
def test_latency_gate_refuses_only_a_confidently_slower_candidate(
    settings, shop, tmp_path, monkeypatch, factor, passes
):
    from mmsearch.builds import gate as gate_module

    _, _, candidate = shop
    same = candidate("same")
    monkeypatch.setattr(gate_module, "_search_ms", synthetic_timer(same, factor))
    gate = load_gate(
        gate_file(tmp_path / "gate", "\n[latency]\nmax_p95_ratio = 1.5\n", judged=False)
    )
    report = evaluate_gate(settings, "shop", same, gate, store=False)
    assert report.passed is passes, report.reasons
    row = next(row for row in report.metrics if row.metric == "latency p95")
    assert row.ratio_interval is not None
    low, high = row.ratio_interval
    assert low <= high and (low > 1.5) is not passes
    [check] = [c for c in report.checks if c.name == "latency.p95"]
    assert "95% CI [" in check.reason
    pairs = re.search(r"\((\d+) interleaved pairs", check.reason)
    assert pairs is not None and int(pairs.group(1)) >= 200  # repeats raised to min_pairs
    assert json.loads(json.dumps(report.as_dict()))["metrics"][-1]["ratio_interval"] == [low, high]
