"""Embedding drift: the MMD permutation test, reference statistics on real LanceDB builds,
the query-vector log, candidate/query comparisons, the CLI and the admin-only API."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from PIL import Image
from typer.testing import CliRunner

from mmsearch.builds.gate import evaluate_gate
from mmsearch.builds.gate_config import load_gate
from mmsearch.cli import app as cli_app
from mmsearch.encoders.base import create_encoder
from mmsearch.governance.keys import KeyStore
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.monitoring.drift import (
    MAX_SAMPLES,
    compare_builds,
    compare_queries,
    compare_query_windows,
    mmd_permutation_test,
)
from mmsearch.monitoring.drift_checks import last_results
from mmsearch.monitoring.drift_reference import (
    SUMMARY_FILE,
    compute_reference,
    ensure_reference,
    load_reference,
    reference_dir,
    reference_from_vectors,
)
from mmsearch.monitoring.query_vectors import QueryVectorLog
from mmsearch.search.request import SearchRequest
from mmsearch.search.searcher import Searcher
from mmsearch.service.app import create_app
from mmsearch.workspace import Workspace

from conftest import save_image, write_jsonl

# Two vocabularies: texts drawn from one look alike to the hashed bag-of-words encoder.
KITCHEN = [
    "mug",
    "cup",
    "plate",
    "bowl",
    "kettle",
    "spoon",
    "fork",
    "knife",
    "pan",
    "pot",
    "teapot",
    "ladle",
    "whisk",
    "tray",
    "jug",
]
ENGINES = [
    "turbine",
    "wing",
    "flap",
    "rotor",
    "nozzle",
    "shock",
    "boundary",
    "layer",
    "mach",
    "lift",
    "drag",
    "airfoil",
]


def texts(words: list[str], count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=4)) for _ in range(count)]


def ingest_texts(settings, tmp_path: Path, name: str, rows: list[str], **options) -> None:
    catalog = write_jsonl(
        tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.jsonl",
        [{"id": f"{name}-{i}", "title": text} for i, text in enumerate(rows)],
    )
    Ingestor(settings).run(IngestOptions(catalog, "docs", **options))


@pytest.fixture
def two_builds(settings, tmp_path):
    """Collection "docs": an older build of kitchen texts, a live build of engine texts."""
    ingest_texts(settings, tmp_path, "k", texts(KITCHEN, 120, 1))
    ingest_texts(settings, tmp_path, "e", texts(ENGINES, 120, 2), new_build=True)
    folder = Workspace(settings.home).collection("docs")
    live = folder.alias("live")
    older = next(b for b in folder.build_ids() if b != live)
    return folder, older, live


# --- the test itself -------------------------------------------------------------------


def naive_mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / bandwidth)

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def test_statistic_is_the_unbiased_mmd2_and_p_is_a_probability():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(40, 5)) + 0.3
    result = mmd_permutation_test(x, y, permutations=99)
    assert result.score == pytest.approx(naive_mmd2(x, y, result.bandwidth), rel=1e-9)
    assert 1 / 100 <= result.p_value <= 1.0
    assert (result.n_x, result.n_y) == (30, 40)


def test_fires_on_shifted_gaussians():
    rng = np.random.default_rng(1)
    for seed in range(5):
        x = rng.normal(size=(200, 16))
        y = rng.normal(size=(200, 16))
        y[:, 0] += 1.0
        assert mmd_permutation_test(x, y, seed=seed).p_value < 0.01


def test_fires_on_a_change_of_spread_with_the_same_mean():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 8)), 1.5 * rng.normal(size=(200, 8))
    assert mmd_permutation_test(x, y).p_value < 0.01


def test_quiet_on_one_distribution_across_seeds():
    rng = np.random.default_rng(3)
    p_values = [
        mmd_permutation_test(
            rng.normal(size=(150, 16)), rng.normal(size=(150, 16)), seed=s, permutations=199
        ).p_value
        for s in range(40)
    ]
    assert sum(p < 0.01 for p in p_values) <= 2  # 0.4 expected
    assert 0.3 < float(np.median(p_values)) < 0.7  # p-values spread over [0, 1]


def test_sample_sizes_are_capped_whatever_the_input():
    rng = np.random.default_rng(4)
    result = mmd_permutation_test(rng.normal(size=(3000, 8)), rng.normal(size=(700, 8)))
    assert (result.n_x, result.n_y) == (MAX_SAMPLES, MAX_SAMPLES)


def test_unusable_samples_are_refused():
    with pytest.raises(ValueError, match="dimensions"):
        mmd_permutation_test(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="two vectors"):
        mmd_permutation_test(np.zeros((1, 3)), np.zeros((5, 3)))


# --- reference statistics --------------------------------------------------------------


def test_reference_from_chunks_matches_the_whole_matrix():
    rng = np.random.default_rng(5)
    data = (rng.normal(size=(1000, 12)) * np.linspace(3, 0.1, 12)).astype(np.float32)
    whole = reference_from_vectors([data], 1000, 12, sample_size=100, components=4)
    chunked = reference_from_vectors(
        [data[:333], data[333:800], data[800:]], 1000, 12, sample_size=100, components=4
    )
    np.testing.assert_allclose(whole.mean, data.mean(axis=0), atol=1e-5)
    np.testing.assert_array_equal(whole.sample, chunked.sample)  # same seed, same draw
    assert len({tuple(r) for r in whole.sample.tolist()}) == 100  # without replacement
    values, vectors = np.linalg.eigh(np.cov(data.T, bias=True))
    np.testing.assert_allclose(whole.explained_variance, values[::-1][:4], rtol=1e-3)
    top = vectors[:, -1]
    assert abs(float(whole.components[0] @ top)) == pytest.approx(1.0, abs=1e-4)
    norms = np.linalg.norm(data, axis=1)
    assert whole.norm_quantiles[0] == pytest.approx(norms.min())
    assert whole.norm_quantiles[-1] == pytest.approx(norms.max())


def test_reference_round_trip_on_a_lancedb_build_with_multivectors(settings, tmp_path):
    folder_img = tmp_path / "imgs"
    colours = [(200, 20, 20), (20, 200, 20), (20, 20, 200), (200, 200, 20)]
    for i, rgb in enumerate(colours):
        save_image(folder_img / f"{i}.png", rgb)
    rows = [
        {"id": "a", "title": "two images", "image": ["imgs/0.png", "imgs/1.png"]},
        {"id": "b", "title": "one image", "image": "imgs/2.png"},
        {"id": "c", "title": "three images", "image": ["imgs/3.png", "imgs/0.png", "imgs/1.png"]},
        {"id": "d", "title": "no image at all"},
    ]
    catalog = write_jsonl(tmp_path / "multi.jsonl", rows)
    Ingestor(settings).run(IngestOptions(catalog, "multi"))
    folder = Workspace(settings.home).collection("multi")
    manifest = folder.live_manifest()

    computed = compute_reference(folder, manifest, settings)
    assert computed["text"].count == 4 and computed["text"].dim == 64
    assert computed["image"].count == 6  # flattened: one vector per image
    assert computed["image"].sample.shape == (6, 48)
    summary = json.loads((reference_dir(folder, manifest.build_id) / SUMMARY_FILE).read_text())
    assert summary["table_version"] == manifest.table_version
    assert summary["roles"]["image"]["count"] == 6

    loaded = load_reference(folder, manifest.build_id, "image")
    np.testing.assert_array_equal(loaded.sample, computed["image"].sample)
    np.testing.assert_allclose(loaded.mean, computed["image"].mean)
    assert loaded.encoder_version == "fake-image-v1"
    # The stored image vectors are the encoder's: each sample row is one of the images.
    pixels = create_encoder("fake-image").encode_images(
        [Image.open(folder_img / f"{i}.png") for i in range(4)]
    )
    for row in loaded.sample:
        assert np.min(np.linalg.norm(pixels - row, axis=1)) < 1e-5


def test_ensure_reference_computes_missing_and_stale_references(settings, tmp_path):
    ingest_texts(settings, tmp_path, "k", texts(KITCHEN, 30, 1))
    folder = Workspace(settings.home).collection("docs")
    manifest = folder.live_manifest()
    build_id = manifest.build_id
    assert (reference_dir(folder, build_id) / "text.npz").is_file()  # stored by the ingest
    shutil.rmtree(reference_dir(folder, build_id))  # as for builds from before the feature
    assert ensure_reference(folder, manifest, settings)["text"].count == 30
    stamp = (reference_dir(folder, build_id) / "text.npz").stat().st_mtime_ns
    assert ensure_reference(folder, manifest, settings)["text"].count == 30
    assert (reference_dir(folder, build_id) / "text.npz").stat().st_mtime_ns == stamp  # reused

    ingest_texts(settings, tmp_path, "more", texts(KITCHEN, 10, 9))  # upsert: new version
    updated = folder.live_manifest()
    assert updated.build_id == build_id
    assert ensure_reference(folder, updated, settings)["text"].count == 40


# --- comparisons -----------------------------------------------------------------------


def test_candidate_from_another_source_drifts_and_alerts(two_builds, settings, caplog):
    folder, older, live = two_builds
    with caplog.at_level(logging.WARNING, logger="mmsearch.drift"):
        results = compare_builds(folder, folder.manifest(older), folder.manifest(live), settings)
    [text] = results
    assert (text.role, text.kind, text.drifted) == ("text", "candidate", True)
    assert text.p_value < 0.01 and text.score > 0
    assert (text.reference_build, text.test_source) == (live, older)
    assert text.n_reference == text.n_test == 120
    assert any("embedding drift" in r.message and "role=text" in r.message for r in caplog.records)


def test_halves_of_one_source_do_not_drift(settings, tmp_path, caplog):
    rows = texts(KITCHEN, 240, 3)
    ingest_texts(settings, tmp_path, "h1", rows[:120])
    ingest_texts(settings, tmp_path, "h2", rows[120:], new_build=True)
    folder = Workspace(settings.home).collection("docs")
    live = folder.alias("live")
    older = next(b for b in folder.build_ids() if b != live)
    with caplog.at_level(logging.WARNING, logger="mmsearch.drift"):
        [text] = compare_builds(folder, folder.manifest(older), folder.manifest(live), settings)
    assert text.drifted is False and text.p_value >= 0.01
    assert not caplog.records


def test_builds_with_different_encoders_are_not_compared(two_builds, settings, tmp_path):
    folder, _, live = two_builds
    other = settings.model_copy(update={"text_encoder": "broken-text"})
    ingest_texts(other, tmp_path, "x", texts(ENGINES, 30, 4), new_build=True)
    newest = folder.alias("live")
    [text] = compare_builds(folder, folder.manifest(newest), folder.manifest(live), settings)
    assert text.drifted is None and text.p_value is None
    assert "encoders differ" in text.note


def test_queries_against_the_live_reference(two_builds, settings, caplog):
    folder, _, live = two_builds
    encoder = create_encoder("fake-text")
    manifest = folder.manifest(live)
    same = encoder.encode_texts(texts(ENGINES, 200, 11))
    other = encoder.encode_texts(texts(KITCHEN, 200, 12))
    [quiet] = compare_queries(folder, manifest, {"text": same}, settings)
    assert quiet.drifted is False and quiet.kind == "queries"
    with caplog.at_level(logging.WARNING, logger="mmsearch.drift"):
        [loud] = compare_queries(folder, manifest, {"text": other}, settings)
    assert loud.drifted is True and len(caplog.records) == 1
    [few] = compare_queries(folder, manifest, {"text": other[:5]}, settings)
    assert few.drifted is None and "too few" in few.note
    [missing] = compare_queries(folder, manifest, {"image": other}, settings)
    assert missing.drifted is None and "no vectors" in missing.note


def test_queries_are_compared_with_earlier_queries_not_documents():
    encoder = create_encoder("fake-text")
    engines = encoder.encode_texts(texts(ENGINES, 200, 21))
    kitchen = encoder.encode_texts(texts(KITCHEN, 100, 22))
    # only kitchen queries on a catalog of engines: steady, so no drift
    [steady] = compare_query_windows("docs", "b1", {"text": kitchen})
    assert steady.drifted is False and (steady.n_reference, steady.n_test) == (50, 50)
    assert steady.comparison.startswith("earlier 50 queries vs the newest 50 queries")
    # engine queries, then kitchen ones: what users ask for moved
    moved = np.concatenate([engines, kitchen])
    [loud] = compare_query_windows("docs", "b1", {"text": moved}, window=100)
    assert loud.drifted is True and (loud.n_reference, loud.n_test) == (100, 100)
    [few] = compare_query_windows("docs", "b1", {"text": kitchen[:30]})
    assert few.drifted is None and "two windows" in few.note


# --- the query-vector log --------------------------------------------------------------


def test_a_running_services_query_vectors_are_seen_by_another_process(settings):
    """70 searches (< the old 256-row chunk) reach the disk without a shutdown."""
    encoder = create_encoder("fake-text")
    vectors = encoder.encode_texts(texts(ENGINES, 70, 31))
    with TestClient(create_app(settings)) as client:
        recorder = client.app.state.mmsearch.query_vectors  # type: ignore[attr-defined]
        for row in vectors:
            recorder.record("docs", "b1", {"text": row})
        fresh = QueryVectorLog(settings.home)  # what `mmsearch drift` opens
        assert fresh.recent("docs", "text").shape[0] == 64  # four chunks of 16
    # the service's shutdown writes the rest
    np.testing.assert_allclose(QueryVectorLog(settings.home).recent("docs", "text"), vectors)


def test_query_vectors_are_written_on_a_timer(tmp_path):
    import time

    log = QueryVectorLog(tmp_path, flush_rows=1000, flush_seconds=0.05)
    for i in range(5):
        log.record("shop", "b1", {"text": np.full(3, i, np.float32)})
    deadline = time.monotonic() + 5.0
    fresh = QueryVectorLog(tmp_path)
    while fresh.recent("shop", "text").shape[0] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fresh.recent("shop", "text")[:, 0].tolist() == [0, 1, 2, 3, 4]
    log.record("shop", "b1", {"text": np.full(3, 5, np.float32)})  # a new timer starts
    log.close()  # ... and is cancelled; close writes the row
    assert fresh.recent("shop", "text").shape[0] == 6


def test_query_vector_log_is_bounded_and_keeps_the_newest(tmp_path):
    log = QueryVectorLog(tmp_path, max_rows=100, flush_rows=10)
    for i in range(350):
        log.record("shop", "b1", {"text": np.full(4, i, np.float32)})
    log.close()
    files = list(log.role_dir("shop", "text").iterdir())
    stored = sum(np.load(f).shape[0] for f in files)
    assert 90 <= stored <= 100
    recent = log.recent("shop", "text", 50)
    assert recent[:, 0].tolist() == list(range(300, 350))  # newest last, in order
    assert log.recent("shop", "image", 10).shape == (0, 0)
    assert log.recent("shop", "text", 0).shape[0] == 0


def test_query_vector_log_buffers_filters_builds_and_drops_bad_rows(tmp_path):
    log = QueryVectorLog(tmp_path, flush_rows=1000)
    log.record("shop", "b1", {"text": np.ones(3, np.float32), "image": np.zeros(2, np.float32)})
    log.record("shop", "b2", {"text": np.full(3, 2.0, np.float32)})
    log.record("shop", "b2", {"text": np.array([np.nan, 1, 1], np.float32)})
    assert not log.role_dir("shop", "text").exists()  # still buffered
    assert log.recent("shop", "text", 10, builds={"b2"})[:, 0].tolist() == [2.0]  # flushes
    assert log.recent("shop", "text", 10)[:, 0].tolist() == [1.0, 2.0]
    assert log.recent("shop", "image", 10).shape == (1, 2)


def test_query_vector_log_threads_and_processes(tmp_path):
    first = QueryVectorLog(tmp_path, max_rows=10_000, flush_rows=7)
    second = QueryVectorLog(tmp_path, max_rows=10_000, flush_rows=5)  # another worker

    def work(log: QueryVectorLog, start: int) -> None:
        for i in range(start, start + 50):
            log.record("shop", "b1", {"text": np.full(2, i, np.float32)})

    threads = [
        threading.Thread(target=work, args=(first if t % 2 else second, t * 1000)) for t in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first.close()
    second.close()
    values = first.recent("shop", "text", 10_000)[:, 0].astype(int).tolist()
    assert sorted(values) == sorted(t * 1000 + i for t in range(8) for i in range(50))
    assert not [p for p in first.role_dir("shop", "text").iterdir() if p.name.startswith(".")]


def test_search_result_carries_query_vectors_but_not_in_json(settings, make_catalog):
    Ingestor(settings).run(IngestOptions(make_catalog(), "shop"))
    searcher = Searcher(settings, "shop")
    image = Image.new("RGB", (16, 16), (30, 60, 220))
    result = searcher.search(SearchRequest(text="blue mug", image=image))
    assert set(result.query_vectors) == {"text", "image"}
    expected = create_encoder("fake-text").encode_texts(["blue mug"])[0]
    np.testing.assert_allclose(result.query_vectors["text"], expected)
    assert result.query_vectors["image"].shape == (48,)
    data = result.as_dict()
    assert "query_vectors" not in data and json.dumps(data, default=str)
    assert set(result.query_vectors) == {"text", "image"}  # as_dict leaves the result alone


# --- CLI and API -----------------------------------------------------------------------

runner = CliRunner()


def test_cli_reports_drift_with_exit_code_one(two_builds, settings):
    _, older, _ = two_builds
    home = str(settings.home)
    result = runner.invoke(cli_app, ["drift", "-c", "docs", "--candidate", older, "--home", home])
    assert result.exit_code == 1, result.output
    assert "DRIFT" in result.output and "text" in result.output
    as_json = runner.invoke(
        cli_app, ["drift", "-c", "docs", "--candidate", older, "--home", home, "--json"]
    )
    assert as_json.exit_code == 1
    [text] = json.loads(as_json.stdout)["results"]
    assert text["drifted"] is True and text["kind"] == "candidate"
    [last] = last_results(settings.home)
    assert last["collection"] == "docs" and last["results"][0]["test_source"] == older


def test_cli_quiet_cases_and_errors(two_builds, settings):
    folder, older, live = two_builds
    home = str(settings.home)
    nothing = runner.invoke(cli_app, ["drift", "-c", "docs", "--home", home])
    assert nothing.exit_code == 0 and "Nothing to compare" in nothing.output
    log = QueryVectorLog(settings.home)  # what the service does per search, then on shutdown
    log.record(
        "docs", live, {"text": create_encoder("fake-text").encode_texts(texts(ENGINES, 60, 5))}
    )
    log.close()
    quiet = runner.invoke(cli_app, ["drift", "-c", "docs", "--home", home, "--json"])
    assert quiet.exit_code == 0, quiet.output
    [text] = json.loads(quiet.stdout)["results"]
    assert text["kind"] == "queries" and text["drifted"] is False
    assert (text["n_reference"], text["n_test"]) == (30, 30)  # earlier half vs newest half
    assert text["comparison"].startswith("earlier 30 queries vs the newest 30 queries")
    unknown = runner.invoke(cli_app, ["drift", "-c", "docs", "--candidate", "nope", "--home", home])
    assert unknown.exit_code == 2 and "no build 'nope'" in unknown.output
    ref = runner.invoke(cli_app, ["drift", "reference", "-c", "docs", older, "--home", home])
    assert ref.exit_code == 0 and "120 vectors" in ref.output
    assert (reference_dir(folder, older) / "text.npz").is_file()


def test_api_is_admin_only_and_sets_gauges(two_builds, settings):
    _, older, live = two_builds
    keys = KeyStore(settings.home)
    reader = keys.create("reader")[1]
    admin = keys.create("admin")[1]
    log = QueryVectorLog(settings.home)
    encoder = create_encoder("fake-text")
    # users asked about engines (what the catalog holds), then moved on to kitchens
    log.record("docs", live, {"text": encoder.encode_texts(texts(ENGINES, 60, 7))})
    log.record("docs", live, {"text": encoder.encode_texts(texts(KITCHEN, 60, 6))})
    log.close()
    secured = settings.model_copy(update={"auth": "on"})
    url = f"/v1/collections/docs/drift?candidate={older}"
    with TestClient(create_app(secured)) as client:
        refused = client.get(url, headers={"authorization": f"Bearer {reader}"})
        assert refused.status_code == 403
        as_admin = {"authorization": f"Bearer {admin}"}
        answer = client.get(url, headers=as_admin)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["drifted"] is True and body["live_build"] == live
        kinds = {(r["role"], r["kind"]): r for r in body["results"]}
        assert kinds[("text", "candidate")]["drifted"] is True
        assert kinds[("text", "queries")]["drifted"] is True
        missing = client.get("/v1/collections/docs/drift?candidate=nope", headers=as_admin)
        assert missing.status_code == 404
        metrics = client.get("/metrics", headers=as_admin).text
        gauge = [
            line
            for line in metrics.splitlines()
            if line.startswith("mmsearch_drift_p_value{")
            and 'kind="candidate"' in line
            and 'collection="docs"' in line
        ]
        assert gauge and float(gauge[0].rsplit(" ", 1)[1]) < 0.01
        page = client.get("/admin", headers=as_admin)
        assert page.status_code == 200
        assert "Embedding drift" in page.text and older in page.text
        # What each score compares, in words, beside it (not just two ids).
        assert str(escape(kinds[("text", "candidate")]["comparison"])) in page.text
        assert str(escape(kinds[("text", "queries")]["comparison"])) in page.text


@pytest.mark.integration
def test_minilm_texts_from_another_source_drift_and_halves_do_not():
    rng = np.random.default_rng(8)
    subjects = ["boundary layer", "shock wave", "swept wing", "supersonic flow", "heat transfer"]
    verbs = ["is measured on", "is computed for", "was studied over", "is predicted near"]
    objects = ["a flat plate", "a blunt cone", "a delta wing", "a cylinder at mach 3"]
    aero = [
        f"the {rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}" for _ in range(160)
    ]
    things = ["cat", "smiling face", "red heart", "pizza", "rocket", "flag", "tree", "hand"]
    moods = ["with tears of joy", "with heart eyes", "medium skin tone", "winking", "sleeping"]
    names = [f"{rng.choice(things)} {rng.choice(moods)}" for _ in range(80)]
    encoder = create_encoder("minilm")
    a, b = encoder.encode_texts(aero), encoder.encode_texts(names)
    assert mmd_permutation_test(a[:80], b).p_value < 0.01
    assert mmd_permutation_test(a[:80], a[80:]).p_value >= 0.01


def test_a_gate_with_drift_refuses_a_candidate_from_another_source(two_builds, settings, tmp_path):
    folder, older, live = two_builds
    ingest_texts(settings, tmp_path, "e2", texts(ENGINES, 120, 3), stage=True, new_build=True)
    same_source = folder.state().staged
    gate = tmp_path / "drift-gate.toml"
    gate.write_text("[drift]\nthreshold = 0.01\n")
    refused = evaluate_gate(settings, "docs", older, load_gate(gate))
    assert refused.verdict == "fail"
    assert [c.name for c in refused.checks if not c.passed] == ["drift.text"]
    assert "drifted" in refused.reasons[0]
    accepted = evaluate_gate(settings, "docs", same_source, load_gate(gate))
    assert accepted.verdict == "pass", accepted.reasons
    assert folder.alias("live") == live  # evaluating publishes nothing
