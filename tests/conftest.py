"""Shared fixtures: deterministic fake encoders and tiny catalogs with real image files.

The fake encoders are registered in the same registry users' encoders use, so the
whole pipeline (ingest, LanceDB, search) runs for real, only without model weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image, ImageFont

from mmsearch.config import Settings
from mmsearch.encoders.base import (
    clear_encoder_cache,
    l2_normalise,
    register,
    unsupported_modality,
)

FAKE_DIM = 64
T = TypeVar("T")

# How hard the property and fuzz tests try: "light" (the default: the README's light
# run) gives each a small example budget, "full" (.ci/run) the budget the docs quote.
# Every property runs in both; only the number of generated cases differs.
TEST_PROFILE = os.environ.get("MMSEARCH_TEST_PROFILE", "light")
if TEST_PROFILE not in ("light", "full"):
    raise pytest.UsageError(f"MMSEARCH_TEST_PROFILE must be light or full, not {TEST_PROFILE!r}")


def by_profile(full: T, light: T) -> T:
    """What a property or fuzz test uses under ``MMSEARCH_TEST_PROFILE``: its example
    budget, for one."""
    return full if TEST_PROFILE == "full" else light


class FakeTextEncoder:
    """Bag of hashed words: texts sharing words get similar vectors."""

    name = "fake-text"
    version = "fake-text-v1"
    dim = FAKE_DIM
    modalities = frozenset({"text"})

    def __init__(self) -> None:
        self.calls = 0
        self.texts_seen = 0

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts_seen += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim
                out[row, bucket] += 1.0
        return l2_normalise(out)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        raise unsupported_modality(self, "image")


class FakeImageEncoder:
    """Downsampled pixels: identical images match exactly, similar colours match well."""

    name = "fake-image"
    version = "fake-image-v1"
    dim = 48
    modalities = frozenset({"image"})

    def __init__(self) -> None:
        self.calls = 0
        self.images_seen = 0

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        self.calls += 1
        self.images_seen += len(images)
        rows = [
            np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.float32).reshape(-1) + 1.0
            for image in images
        ]
        return l2_normalise(np.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        raise unsupported_modality(self, "text")


class BrokenTextEncoder(FakeTextEncoder):
    """Loads, then fails at query time, like a model whose runtime broke."""

    name = "broken-text"
    version = "broken-text-v1"
    fail = False

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if BrokenTextEncoder.fail:
            raise RuntimeError("model runtime crashed")
        return super().encode_texts(texts)


FAKES: dict[str, Any] = {}


@register("fake-text")
def _fake_text(argument: str | None) -> FakeTextEncoder:
    encoder = FakeTextEncoder()
    FAKES["text"] = encoder
    return encoder


@register("fake-image")
def _fake_image(argument: str | None) -> FakeImageEncoder:
    encoder = FakeImageEncoder()
    FAKES["image"] = encoder
    return encoder


@register("broken-text")
def _broken_text(argument: str | None) -> BrokenTextEncoder:
    return BrokenTextEncoder()


@pytest.fixture(autouse=True)
def _fresh_encoders() -> None:
    """Each test gets new fake encoders, so call counts belong to that test."""
    for spec in ("fake-text", "fake-image", "broken-text"):
        from mmsearch.encoders import base

        base._CACHE.pop(spec, None)
    FAKES.clear()
    BrokenTextEncoder.fail = False


@pytest.fixture(scope="session", autouse=True)
def _private_user_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The per-user workspace default (config.default_home) points into the session's temp
    folder, so a test that leaves out --home never writes into the real user data dir."""
    import os

    saved = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield
    if saved is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = saved


# argon2id with the smallest cost parameters: the same algorithm, hash format and
# verification, without its deliberate work factor (about 0.1-0.3 CPU-s per hash and per
# first verification at the library defaults), which tests making hundreds of keys would
# pay again and again. Stored hashes carry their parameters, so verification follows.
# tests/test_governance_keys.py checks that the product itself keeps the defaults.
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


@pytest.fixture(scope="session", autouse=True)
def _cheap_argon2_for_test_keys() -> Iterator[None]:
    from argon2 import PasswordHasher

    from mmsearch.governance import keys

    patch = pytest.MonkeyPatch()
    patch.setattr(keys, "PasswordHasher", lambda: PasswordHasher(**CHEAP_ARGON2))
    yield
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def _clear_cache_at_end() -> Iterator[None]:
    yield
    clear_encoder_cache()


STORE_BACKENDS = ["lancedb", "milvus"]


def pytest_report_header(config: pytest.Config) -> str:
    return f"mmsearch test profile: {TEST_PROFILE} (MMSEARCH_TEST_PROFILE=light|full)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends: run the module's tests once per store backend (lancedb, milvus)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked ``backends`` run every test that builds an index on each store."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("backends"):
        # The Milvus run carries the ``milvus`` marker, so that a light run (-m "not
        # milvus") still runs every such test on LanceDB.
        params = [
            pytest.param(name, marks=pytest.mark.milvus) if name == "milvus" else name
            for name in STORE_BACKENDS
        ]
        metafunc.parametrize("backend", params, scope="module")


@pytest.fixture(scope="module")
def backend() -> str:
    """The store new builds go to; parametrised in modules marked ``backends``."""
    return "lancedb"


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Milvus Lite server for the whole session (skipped without the milvus extra)."""
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    from milvus_server import milvus_lite_server

    with milvus_lite_server(tmp_path_factory.mktemp("milvus")) as uri:
        yield uri


def store_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings fields that send new builds to ``backend`` (exact search on Milvus)."""
    if backend == "lancedb":
        return {}
    uri = request.getfixturevalue("milvus_uri")
    return {"backend": "milvus", "milvus_uri": uri, "milvus_index": "flat"}


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    return Settings(
        home=tmp_path / "workspace",
        text_encoder="fake-text",
        image_encoder="fake-image",
        batch_size=8,
        write_batch_rows=16,
        # FastAPI's TestClient sends "Host: testserver"; real servers are reached on loopback.
        allowed_hosts=["testserver", "127.0.0.1", "localhost"],
        **store_settings(backend, request),
    )


COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "black": (10, 10, 10),
}


def save_image(path: Path, colour: tuple[int, int, int], size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), colour)
    image.putpixel((0, 0), (255, 255, 255))
    image.save(path)
    return path


def write_jsonl(path: Path, rows: list[dict[str, object] | str]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def make_catalog(tmp_path: Path) -> Callable[..., Path]:
    """A JSONL catalog of coloured things with one real PNG each."""

    def build(extra_rows: list[dict[str, object] | str] | None = None, name: str = "cat") -> Path:
        folder = tmp_path / name
        rows: list[dict[str, object] | str] = []
        for index, (colour, rgb) in enumerate(COLOURS.items()):
            save_image(folder / "img" / f"{colour}.png", rgb)
            rows.append(
                {
                    "id": f"item-{index}",
                    "title": f"{colour} ceramic mug",
                    "description": f"A {colour} mug for coffee and tea",
                    "tags": ["kitchen", colour],
                    "category": "kitchen" if index % 2 == 0 else "office",
                    "price": 5.0 + index,
                    "in_stock": index != 3,
                    "image": f"img/{colour}.png",
                }
            )
        rows.extend(extra_rows or [])
        return write_jsonl(folder / "catalog.jsonl", rows)

    return build


DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def text_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font for drawing text that OCR should read: DejaVu Sans where the system has
    it (Debian's fonts-dejavu), else Pillow's own scalable default."""
    if DEJAVU.exists():
        return ImageFont.truetype(str(DEJAVU), size)
    return ImageFont.load_default(size=size)
