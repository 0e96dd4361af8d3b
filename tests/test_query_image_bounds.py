"""Query images are decoded to the ingest size, under a process-wide pixel budget."""

from __future__ import annotations

import io
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from mmsearch.config import Settings
from mmsearch.errors import ImageError
from mmsearch.media import images as images_module
from mmsearch.media.images import ImageLimits, decode_pixels, release_free_memory
from mmsearch.service import query_images
from mmsearch.service.app import create_app
from mmsearch.service.query_images import DecodeBudget, QueryImagesBusy, decode_bounded
from mmsearch.service.searching import decode_base64_image, decode_query_image
from service_support import ingest_shop

from conftest import COLOURS


def big_png(size: tuple[int, int], colour: tuple[int, int, int] = (230, 200, 30)) -> bytes:
    """A large canvas that compresses to a few KB: the shape of the attack."""
    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 10, size[1] // 10), fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def big_jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 60, 200)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def test_a_huge_query_image_is_decoded_to_the_ingest_size():
    settings = Settings()
    side = settings.ingest_image_max_side
    png = big_png((6300, 4200))
    assert len(png) < 200_000
    decoded = decode_query_image(png, "query image", settings)
    assert decoded.image.size == (side, 1067)  # 4200 * 1600 / 6300, rounded
    jpeg = decode_query_image(big_jpeg((5000, 5000)), "query image", settings)
    assert jpeg.image.size == (side, side)
    small = decode_query_image(big_png((300, 200)), "query image", settings)
    assert small.image.size == (300, 200)  # never enlarged
    narrow = settings.model_copy(update={"ingest_image_max_side": 256})
    assert max(decode_query_image(png, "q", narrow).image.size) == 256


def test_a_query_image_over_the_pixel_limit_is_still_refused():
    settings = Settings(max_image_pixels=1_000_000)
    with pytest.raises(ImageError, match="over the limit of 1000000 pixels"):
        decode_query_image(big_png((2000, 1000)), "query image", settings)


def test_decode_pixels_reads_the_header_only():
    assert decode_pixels(big_png((6300, 4200)), 1600) == 6300 * 4200  # PNG: full frame
    assert decode_pixels(big_jpeg((6400, 3200)), 1600) == 1600 * 800  # DCT scale 1/4
    assert decode_pixels(big_jpeg((3000, 2000)), 1600) == 3000 * 2000  # 1/2 is too small
    assert decode_pixels(big_jpeg((800, 600)), 1600) == 800 * 600
    assert decode_pixels(b"not an image", 1600) == 0
    assert isinstance(release_free_memory(), bool)


def test_the_budget_runs_what_fits_and_queues_the_rest():
    budget = DecodeBudget(capacity=100, wait_s=5.0)
    entered = threading.Event()
    with budget.hold(60):
        assert budget.in_use == 60

        def second() -> None:
            with budget.hold(60):
                entered.set()

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.2)
        assert not entered.is_set() and budget.waiting == 1  # 120 > 100: it waits
        with budget.hold(30):  # fits beside the first
            assert budget.in_use == 90
    thread.join(5)
    assert entered.is_set() and budget.in_use == 0


def refused(budget: DecodeBudget, pixels: int) -> bool:
    """Whether holding ``pixels`` is refused as busy (a hold that succeeds ends at once)."""
    try:
        with budget.hold(pixels):
            return False
    except QueryImagesBusy as busy:
        assert busy.retry_after >= 1
        return True


def test_a_wait_is_bounded_in_time_and_in_queue_length():
    budget = DecodeBudget(capacity=100, wait_s=0.2, max_waiting=1)
    with budget.hold(100):
        started = time.monotonic()
        assert refused(budget, 1)
        assert 0.15 < time.monotonic() - started < 2.0

        outcome: list[bool] = []
        waiter = threading.Thread(target=lambda: outcome.append(refused(budget, 1)))
        waiter.start()
        time.sleep(0.05)
        started = time.monotonic()
        assert refused(budget, 1)  # the one queue place is taken: refused without a wait
        assert time.monotonic() - started < 0.1
        waiter.join(5)
        assert outcome == [True]
    assert budget.in_use == 0 and budget.waiting == 0


def test_one_image_over_the_budget_decodes_alone():
    budget = DecodeBudget(capacity=100, wait_s=0.2)
    with budget.hold(500):
        assert budget.in_use == 100
        assert refused(budget, 1)
    assert not refused(budget, 500)


def test_concurrent_decodes_never_hold_more_than_the_budget(monkeypatch):
    """Six large query images at once: only as many decode together as the budget holds."""
    png = big_png((3000, 3000))  # 9 Mpx each
    budget = DecodeBudget(capacity=20_000_000, wait_s=30.0)
    peak = {"running": 0, "max": 0, "pixels": 0}
    lock = threading.Lock()
    real_decode = images_module.decode_image

    def tracking_decode(*args, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            peak["running"] += 1
            peak["max"] = max(peak["max"], peak["running"])
            peak["pixels"] = max(peak["pixels"], budget.in_use)
        try:
            time.sleep(0.05)
            return real_decode(*args, **kwargs)
        finally:
            with lock:
                peak["running"] -= 1

    monkeypatch.setattr(query_images, "decode_image", tracking_decode)
    results: list[tuple[int, int]] = []
    limits = ImageLimits()

    def run() -> None:
        image = decode_bounded(png, "q", limits, 1600, budget)
        with lock:
            results.append(image.size)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [(1600, 1600)] * 6
    assert peak["max"] == 2 and peak["pixels"] <= 20_000_000
    assert budget.in_use == 0


def test_an_image_over_the_limit_is_refused_without_waiting_for_the_budget():
    budget = DecodeBudget(capacity=100, wait_s=5.0)
    with budget.hold(100):
        started = time.monotonic()
        with pytest.raises(ImageError, match="over the limit"):
            decode_bounded(
                big_png((2000, 1000)), "q", ImageLimits(max_pixels=1_000_000), 1600, budget
            )
        assert time.monotonic() - started < 1.0


@pytest.fixture
def client(settings, make_catalog, tmp_path):
    ingest_shop(settings, make_catalog())
    with TestClient(create_app(settings)) as client:
        yield client


def test_api_searches_with_a_huge_image_and_refuses_one_over_the_limit(client, settings):
    colour = COLOURS["yellow"]
    response = client.post(
        "/v1/collections/shop/search",
        files={"image": ("huge.png", big_png((6000, 4000), colour), "image/png")},
        data={"query": '{"k": 2}'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["hits"][0]["id"] == "item-3"

    limited = settings.model_copy(update={"max_image_pixels": 1_000_000})
    with TestClient(create_app(limited)) as strict:
        refused = strict.post(
            "/v1/collections/shop/search",
            files={"image": ("huge.png", big_png((2000, 1000)), "image/png")},
        )
    assert refused.status_code == 413
    assert "over the limit of 1000000 pixels" in refused.json()["error"]["message"]


def test_api_answers_429_when_the_decode_budget_stays_full(client, monkeypatch):
    budget = DecodeBudget(capacity=1_000_000, wait_s=0.2)
    monkeypatch.setattr(query_images, "QUERY_DECODES", budget)
    with budget.hold(1_000_000):
        busy = client.post(
            "/v1/collections/shop/search",
            files={"image": ("big.png", big_png((2000, 2000)), "image/png")},
        )
    assert busy.status_code == 429, busy.text
    assert busy.json()["error"]["type"] == "QueryImagesBusy"
    assert int(busy.headers["retry-after"]) >= 1
    again = client.post(
        "/v1/collections/shop/search",
        files={"image": ("big.png", big_png((2000, 2000)), "image/png")},
    )
    assert again.status_code == 200, again.text


def test_base64_query_images_take_the_same_path(monkeypatch):
    import base64

    data = base64.b64encode(big_png((4000, 2000))).decode()
    decoded = decode_base64_image(data, Settings())
    assert decoded.image.size == (1600, 800)
