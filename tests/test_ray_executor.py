"""``--executor ray`` against the local executor: same rows, vectors, errors and resume.

One local Ray instance (2 CPUs) serves the module. Ray actors are other processes, so
the fake encoders exist there only once ``conftest`` is imported: the executor imports
the module that registered each encoder family, and the runtime env puts ``tests/`` on
the workers' path so that ``conftest`` is importable there (and this module, which
registers the encoders that count model loads, kill their actor or raise).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmsearch.config import Settings
from mmsearch.encoders.base import register, registered_module
from mmsearch.errors import EncoderError, MMSearchError
from mmsearch.index.open import open_build_index
from mmsearch.index.schema import vector_column
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.ingest.executors import ExecutorError, create_executor
from mmsearch.ingest.ray_executor import RayExecutor, plugin_modules
from mmsearch.workspace import Workspace

from conftest import FakeTextEncoder, save_image, write_jsonl

pytestmark = pytest.mark.ray
# ray is an extra: without it this module is skipped, not a collection error.
ray = pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module", autouse=True)
def ray_instance() -> Iterator[None]:
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield
    ray.shutdown()


@register("counted-text")
def _counted_text(argument: str | None) -> FakeTextEncoder:
    """The fake text encoder, noting each construction (a model load) in the file the
    spec names: one line per process that built it, driver included."""
    assert argument
    with open(argument, "a") as log:
        log.write(f"{os.getpid()}\n")
    return FakeTextEncoder()


class PoisonedTextEncoder(FakeTextEncoder):
    """On a 'poison' text: kills its process (as the OOM killer would) while the file
    named by its spec exists, or raises an ``EncoderError`` when the spec names none."""

    def __init__(self, marker: str | None) -> None:
        super().__init__()
        self.marker = Path(marker) if marker else None

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if any("poison" in text for text in texts):
            if self.marker is None:
                raise EncoderError("the model choked on poison")
            if self.marker.exists():
                os._exit(1)
        return super().encode_texts(texts)


@register("poisoned-text")
def _poisoned_text(argument: str | None) -> PoisonedTextEncoder:
    return PoisonedTextEncoder(argument)


def ingest(settings: Settings, catalog: Path, name: str, **kwargs: Any):
    return Ingestor(settings).run(IngestOptions(catalog, name, **kwargs))


def stored(settings: Settings, name: str, ids: list[str], columns: list[str]) -> dict[str, dict]:
    folder = Workspace(settings.home).collection(name)
    index = open_build_index(folder, folder.live_manifest(), settings)
    return {row["id"]: row for row in index.get(ids, ["id", *columns])}


def mixed_catalog(folder: Path) -> Path:
    """Coloured items with real images, text-only rows, broken images and bad rows."""
    colours = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220)}
    rows: list[dict[str, object] | str] = []
    for n in range(30):
        colour = list(colours)[n % 3]
        save_image(folder / "img" / f"{colour}-{n}.png", colours[colour], size=16 + n)
        rows.append(
            {
                "id": f"item-{n}",
                "title": f"{colour} mug number {n}",
                "description": f"a {colour} mug for tea",
                "price": float(n),
                "image": f"img/{colour}-{n}.png",
            }
        )
    rows += [{"id": f"text-{n}", "title": f"plain row {n}", "price": 1.0} for n in range(12)]
    (folder / "img" / "garbage.png").write_bytes(b"this is not a picture at all")
    good = (folder / "img" / "red-0.png").read_bytes()
    (folder / "img" / "truncated.png").write_bytes(good[:40])
    rows += [
        "{not json",
        {"title": "no id here", "image": "img/red-0.png"},
        {"id": "garbage", "title": "not an image", "image": "img/garbage.png"},
        {"id": "truncated", "title": "cut short", "image": "img/truncated.png"},
        {"id": "ghost", "title": "missing", "image": "img/nowhere.png"},
        {"id": "item-0", "title": "duplicate id", "image": "img/red-0.png"},
        {"id": "bad-price", "title": "pricey", "price": "a lot", "image": "img/blue-2.png"},
    ]
    return write_jsonl(folder / "catalog.jsonl", rows)


def error_lines(report: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in report.errors_path.read_text().splitlines()]


def assert_same_output(
    settings: Settings, local: Any, remote: Any, roles: list[str], atol: float
) -> int:
    """Same ids, record hashes, counts, errors and (within ``atol``) vectors; ids compared."""
    assert local.counts == remote.counts
    assert [e.as_dict() for e in local.errors] == [e.as_dict() for e in remote.errors]
    assert error_lines(local) == error_lines(remote)
    columns = ["record_sha256", "image_phash", *(vector_column(role) for role in roles)]
    ids = sorted(_all_ids(settings, "local"))
    left = stored(settings, "local", ids, columns)
    right = stored(settings, "ray", ids, columns)
    assert sorted(left) == sorted(right) == ids
    for item_id in ids:
        a, b = left[item_id], right[item_id]
        assert a["record_sha256"] == b["record_sha256"]
        assert a["image_phash"] == b["image_phash"]
        for role in roles:
            va, vb = a[vector_column(role)], b[vector_column(role)]
            assert (va is None) == (vb is None), (item_id, role)
            if va is not None:
                np.testing.assert_allclose(np.asarray(va), np.asarray(vb), atol=atol, rtol=0)
    return len(ids)


def _all_ids(settings: Settings, name: str) -> list[str]:
    folder = Workspace(settings.home).collection(name)
    index = open_build_index(folder, folder.live_manifest(), settings)
    return index.scan(["id"]).column("id").to_pylist()


def test_ray_matches_local_rows_vectors_and_errors(settings, tmp_path):
    catalog = mixed_catalog(tmp_path / "cat")
    local = ingest(settings, catalog, "local")
    remote = ingest(settings, catalog, "ray", executor="ray")

    assert remote.counts["added"] == 43 and remote.counts["failed"] == 6
    assert remote.counts["warnings"] == 1
    compared = assert_same_output(settings, local, remote, ["text", "image"], atol=1e-5)
    assert compared == 43
    assert {e.item_id for e in remote.errors if e.field == "image"} >= {"garbage", "truncated"}
    assert ray.is_initialized()  # the module's instance was not started by the run: kept

    again = ingest(settings, catalog, "ray", executor="ray")  # all unchanged: no encoding
    assert again.counts["unchanged"] == 43 and again.counts["added"] == 0


def test_ray_with_the_real_minilm_encoder(tmp_path):
    settings = Settings(home=tmp_path / "ws", batch_size=16, write_batch_rows=64)
    rows = [
        {"id": f"d{n}", "title": f"wing flutter study {n}", "description": f"boundary layer {n}"}
        for n in range(50)
    ]
    catalog = write_jsonl(tmp_path / "text.jsonl", rows)
    local = ingest(settings, catalog, "local", text_encoder="minilm")
    remote = ingest(settings, catalog, "ray", text_encoder="minilm", executor="ray")

    assert remote.counts["added"] == 50
    assert assert_same_output(settings, local, remote, ["text"], atol=1e-5) == 50


class Interrupt(Exception):
    """A kill after some chunks were committed."""


def interrupted_then_resumed(
    settings: Settings, catalog: Path, name: str, executor: str, monkeypatch
) -> Any:
    from mmsearch.ingest.pipeline import ChunkEncoder

    target = RayExecutor if executor == "ray" else ChunkEncoder
    original = target.encode
    calls = {"n": 0}

    def encode(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 1:
            raise Interrupt()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(target, "encode", encode)
    with pytest.raises(Interrupt):
        ingest(settings, catalog, name, executor=executor)
    monkeypatch.undo()
    return ingest(settings, catalog, name, executor=executor)


def test_an_interrupted_ray_run_resumes_like_a_local_one(settings, tmp_path, monkeypatch):
    catalog = mixed_catalog(tmp_path / "cat")
    local = interrupted_then_resumed(settings, catalog, "local", "local", monkeypatch)
    remote = interrupted_then_resumed(settings, catalog, "ray", "ray", monkeypatch)

    assert remote.resumed and local.resumed
    assert remote.counts["resumed"] == local.counts["resumed"] == 16  # the first chunk
    assert remote.counts == local.counts
    assert assert_same_output(settings, local, remote, ["text", "image"], atol=1e-5) == 43


def text_rows(count: int, poison: int | None = None) -> list[dict[str, object]]:
    return [
        {"id": f"t{n}", "title": "poison pill" if n == poison else f"plain row {n}"}
        for n in range(count)
    ]


def test_actors_are_started_once_and_reused_by_every_chunk(settings, tmp_path, monkeypatch):
    log = tmp_path / "constructions.log"
    catalog = write_jsonl(tmp_path / "text.jsonl", text_rows(80))  # 5 chunks of 16
    pools: list[list[Any]] = []
    close = RayExecutor.close

    def recording_close(self: RayExecutor) -> None:
        pools.append(list(getattr(self, "actors", [])))  # (the pool, once there is one)
        close(self)

    monkeypatch.setattr(RayExecutor, "close", recording_close)
    report = ingest(settings, catalog, "ray", executor="ray", text_encoder=f"counted-text:{log}")

    assert report.counts["added"] == 80
    pids = [int(line) for line in log.read_text().split()]
    in_actors = [pid for pid in pids if pid != os.getpid()]
    # A pool per chunk would build the model in (up to) two new actors for each of the
    # five chunks; one pool for the run builds it at most once in each of its two actors
    # (on a busy host one actor may take every chunk before the other asks for work).
    assert len(in_actors) == len(set(in_actors)) and 1 <= len(in_actors) <= 2
    [actors] = pools
    assert len(actors) == 2
    for actor in actors:  # close() killed the pool
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.ready.remote(), timeout=30)


def test_a_dead_actor_fails_the_run_which_then_resumes(settings, tmp_path):
    marker = tmp_path / "kill-on-poison"
    marker.touch()
    catalog = write_jsonl(tmp_path / "text.jsonl", text_rows(48, poison=20))  # in chunk 2
    spec = f"poisoned-text:{marker}"
    with pytest.raises(ExecutorError, match="died while encoding"):
        ingest(settings, catalog, "ray", executor="ray", text_encoder=spec)

    marker.unlink()
    resumed = ingest(settings, catalog, "ray", executor="ray", text_encoder=spec)
    assert resumed.resumed and resumed.counts["resumed"] == 16  # the first chunk
    assert resumed.counts["added"] == 48 and resumed.counts["failed"] == 0


def test_an_encoder_error_in_an_actor_is_raised_as_itself(settings, tmp_path):
    catalog = write_jsonl(tmp_path / "text.jsonl", text_rows(20, poison=3))
    with pytest.raises(EncoderError, match=r"^the model choked on poison$"):
        ingest(settings, catalog, "ray", executor="ray", text_encoder="poisoned-text")


def test_plugin_encoders_are_imported_in_actors():
    assert plugin_modules({"text": "fake-text", "image": "visual"}) == ["conftest"]
    assert registered_module("counted-text") == __name__
    assert registered_module("no-such-family") is None


def test_missing_ray_names_the_extra(settings, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ExecutorError, match=r'pip install "mmsearch\[ray\]"'):
        create_executor("ray", settings, None, None, "run", {})  # type: ignore[arg-type]
    with pytest.raises(MMSearchError, match="--ray-address needs --executor ray"):
        create_executor("local", settings, None, None, "run", {}, ray_address="auto")  # type: ignore[arg-type]


def test_cli_ingest_with_the_ray_executor(tmp_path):
    from typer.testing import CliRunner

    from mmsearch.cli import app

    catalog = mixed_catalog(tmp_path / "cat")
    home = str(tmp_path / "ws")
    common = ["--home", home, "--text-encoder", "fake-text", "--image-encoder", "fake-image"]
    done = CliRunner().invoke(
        app, ["ingest", str(catalog), "--collection", "shop", "--executor", "ray", *common]
    )
    assert done.exit_code == 0, done.output
    assert "43 added" in done.output and "6 failed" in done.output
    refused = CliRunner().invoke(
        app, ["ingest", str(catalog), "--collection", "shop", "--ray-address", "auto", *common]
    )
    assert refused.exit_code != 0 and "--ray-address needs --executor ray" in refused.output
