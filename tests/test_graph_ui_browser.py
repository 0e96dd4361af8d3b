"""Entity chips on the search page and related entities on item pages, in a real
headless Chromium (Playwright) against a real uvicorn server."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.catalog.mapping import FieldMapping
from mmsearch.datasets.products import MAPPING, build_products
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.service.app import create_app
from service_support import running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from mmsearch.config import Settings

    tmp = tmp_path_factory.mktemp("graph-ui")
    catalog = build_products(tmp / "products")
    settings = Settings(
        home=tmp / "workspace", text_encoder="fake-text", image_encoder="fake-image", auth="off"
    )
    Ingestor(settings).run(IngestOptions(catalog, "shop", FieldMapping.model_validate(MAPPING)))
    with running_server(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        context.close()


def test_recognised_entities_are_chips_that_can_be_removed_and_restored(server, page):
    page.goto(f"{server}/?collection=shop")
    page.fill("#query", "red acme boots")
    page.press("#query", "Enter")
    page.wait_for_selector("#entity-chips .chip.entity")
    chips = page.locator("#entity-chips .chip.entity").all_inner_texts()
    assert {c.split("✕")[0].strip() for c in chips} == {
        "colour=red",
        "brand=acme",
        "category=boots",
    }
    page.click('button[aria-label="remove brand=acme"]')
    page.wait_for_selector("#entity-chips .chip.removed")
    assert page.locator("#entity-chips .chip.removed s").inner_text() == "brand=acme"
    assert page.locator('button[aria-label="remove brand=acme"]').count() == 0
    page.click('button[aria-label="restore brand=acme"]')
    page.wait_for_selector('button[aria-label="remove brand=acme"]')
    assert page.locator("#entity-chips .chip.removed").count() == 0


def test_an_item_page_lists_related_entities(server, page):
    page.goto(f"{server}/items/shop/p1000")  # Acme red boots
    page.wait_for_selector("#related .chip.entity")
    related = page.locator("#related .chip.entity").all_inner_texts()
    assert "department=footwear" in related
    link = page.locator("#related a", has_text="department=footwear").get_attribute("href")
    assert link is not None and "q=footwear" in link
