"""The web UI in a real headless Chromium (Playwright), against a real uvicorn server.

Screenshots land in ``test-artifacts/`` for a human to look at. Chromium is Debian's
(``/usr/bin/chromium``); the test is skipped where it is not installed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.sample_data import SAMPLE_EMOJI_DIR, sample_catalog_path
from mmsearch.service.app import create_app
from service_support import running_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROCKET, DOG = "1F680", "1F436"
ROWS = 60

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A 60-emoji collection (fake encoders) behind uvicorn on 127.0.0.1."""
    from mmsearch.config import Settings

    tmp = tmp_path_factory.mktemp("ui")
    rows = [json.loads(line) for line in sample_catalog_path().read_text("utf-8").splitlines()]
    chosen = [r for r in rows if r["id"] in {ROCKET, DOG}] + [
        r for r in rows[:ROWS] if r["id"] not in {ROCKET, DOG}
    ]
    catalog = tmp / "emoji.jsonl"
    catalog.write_text("\n".join(json.dumps(r) for r in chosen) + "\n", encoding="utf-8")
    settings = Settings(
        home=tmp / "workspace",
        text_encoder="fake-text",
        image_encoder="fake-image",
        auth="off",  # the sign-in test adds a key to this workspace; these pages stay open
    )
    Ingestor(settings).run(IngestOptions(catalog, "emoji", images_root=SAMPLE_EMOJI_DIR))
    with running_server(create_app(settings)) as url:
        yield url, settings


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    ARTIFACTS.mkdir(exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.requested = requested  # type: ignore[attr-defined]
        yield page
        context.close()


def first_card(page):
    return page.locator("#results .card").first


def test_text_search_renders_the_expected_top_result(server, page):
    base_url, _ = server
    page.goto(f"{base_url}/?collection=emoji")
    page.wait_for_selector("#facets select")  # filters built from the attributes
    options = page.locator("#facets select").first.locator("option").all_text_contents()
    assert any("Travel & Places" in option for option in options)
    page.fill("#query", "rocket")
    page.press("#query", "Enter")
    page.wait_for_selector(f'#results .card[data-id="{ROCKET}"]')
    assert first_card(page).get_attribute("data-id") == ROCKET
    assert first_card(page).locator(".card-title").inner_text() == "rocket"
    first_card(page).locator("summary").click()
    explanation = first_card(page).locator(".explain").inner_text()
    assert "keywords (BM25)" in explanation
    page.screenshot(path=str(ARTIFACTS / "ui-text-search.png"), full_page=True)


def test_words_typed_while_the_facets_load_are_kept_and_searched(server, page):
    """On a slow server the facets answer last: what the user typed meanwhile stays in the
    box, their search's results stay on screen, and the empty URL's state replaces neither."""
    base_url, _ = server
    held = []

    def hold(route):
        held.append(route)

    page.route("**/facets", hold)
    try:
        page.goto(f"{base_url}/?collection=emoji")
        page.fill("#query", "rocket")
        while not held:
            page.wait_for_timeout(20)
        page.press("#query", "Enter")
        page.wait_for_selector(f'#results .card[data-id="{ROCKET}"]')
        held[0].continue_()
        page.wait_for_selector("#facets select")
        assert page.input_value("#query") == "rocket"
        assert first_card(page).get_attribute("data-id") == ROCKET
        assert "q=rocket" in page.url
    finally:
        page.unroute("**/facets")
    page.goto(f"{base_url}/?collection=emoji")
    held.clear()
    page.route("**/facets", hold)
    try:
        page.goto(f"{base_url}/?collection=emoji")
        while not held:
            page.wait_for_timeout(20)
        page.fill("#query", "dog")
        held[0].continue_()
        page.wait_for_selector("#facets select")
        assert page.input_value("#query") == "dog"  # the URL's empty q did not wipe it
        page.press("#query", "Enter")
        page.wait_for_selector(f'#results .card[data-id="{DOG}"]')
    finally:
        page.unroute("**/facets")


def test_image_upload_search_renders_the_same_picture_first(server, page):
    base_url, _ = server
    page.goto(f"{base_url}/?collection=emoji")
    page.set_input_files("#image-input", str(SAMPLE_EMOJI_DIR / "images" / "1f436.png"))
    page.wait_for_selector(f'#results .card[data-id="{DOG}"]')
    assert first_card(page).get_attribute("data-id") == DOG
    assert first_card(page).locator(".card-title").inner_text() == "dog face"
    assert page.locator("#image-chip").is_visible()
    page.screenshot(path=str(ARTIFACTS / "ui-image-search.png"), full_page=True)


def test_result_click_opens_the_item_page_logs_the_click_and_shows_more_like_this(server, page):
    base_url, settings = server
    page.goto(f"{base_url}/?collection=emoji")
    page.fill("#query", "rocket")
    page.press("#query", "Enter")
    page.wait_for_selector(f'#results .card[data-id="{ROCKET}"]')
    first_card(page).locator(".card-title").click()
    page.wait_for_url(f"**/items/emoji/{ROCKET}")
    assert page.locator("h1").inner_text() == "rocket"
    # The first "more like this" of a server opens the item's vectors cold: on a loaded
    # host that can pass the page's default wait; an error message ends the wait early.
    page.wait_for_selector("#results .card, #status .error", timeout=45_000)
    assert page.locator("#status .error").count() == 0, page.locator("#status").inner_text()
    similar = page.locator("#results .card").evaluate_all("cards => cards.map(c => c.dataset.id)")
    assert ROCKET not in similar and len(similar) > 0
    page.screenshot(path=str(ARTIFACTS / "ui-item.png"), full_page=True)
    clicks = settings.home / "logs" / "clicks.jsonl"
    for _ in range(100):  # the click is sent (fetch keepalive) after navigation started
        if clicks.is_file() and clicks.read_text().strip():
            break
        time.sleep(0.05)
    line = json.loads(clicks.read_text().splitlines()[-1])
    assert line["query"] == "rocket" and line["clicked"] == ROCKET


def test_admin_page_shows_builds_charts_and_no_external_requests(server, page):
    base_url, _ = server
    page.goto(f"{base_url}/admin")
    assert page.locator("svg.chart rect.bar").count() >= 1
    assert "live" in page.locator(".collection-card").first.inner_text()
    page.wait_for_selector("#jobs tbody tr")
    page.screenshot(path=str(ARTIFACTS / "ui-admin.png"), full_page=True)
    page.goto(f"{base_url}/docs")
    page.wait_for_selector(".endpoint")
    assert "/v1/collections/{name}/search" in page.locator("#api").inner_text()
    outside = [
        url
        for url in page.requested  # type: ignore[attr-defined]
        if not url.startswith((base_url, "data:", "blob:"))
    ]
    assert outside == []


def test_sign_in_with_a_key_then_search_with_the_session_and_csrf_token(server, page):
    """With keys, pages redirect to the sign-in page; the key buys a session cookie and
    the search page's POSTs carry the CSRF token, so searching works as before."""
    from mmsearch.governance.keys import KeyStore

    _, settings = server
    secret = KeyStore(settings.home).create("reader", name="browser")[1]
    locked = settings.model_copy(update={"auth": "on"})
    with running_server(create_app(locked)) as base_url:
        page.goto(f"{base_url}/?collection=emoji")
        page.wait_for_url("**/login?next=*")
        page.fill("#api-key", "mms_not_a_key")
        page.click("#login-button")
        page.wait_for_selector("#login-error:not([hidden])")
        assert "not valid" in page.locator("#login-error").inner_text()
        page.fill("#api-key", secret)
        page.click("#login-button")
        page.wait_for_url(f"{base_url}/?collection=emoji")
        page.fill("#query", "rocket")
        page.press("#query", "Enter")
        page.wait_for_selector(f'#results .card[data-id="{ROCKET}"]')
        assert first_card(page).get_attribute("data-id") == ROCKET
        cookies = page.context.cookies(base_url)
        session = next(c for c in cookies if c["name"] == "mmsearch_session")
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        page.screenshot(path=str(ARTIFACTS / "ui-signed-in-search.png"), full_page=True)
        page.click("#sign-out")
        page.wait_for_url("**/login")


@pytest.mark.parametrize("next_path", ["/%5Cevil.example", "/%09/evil.example", "//evil.example"])
def test_sign_in_never_leaves_this_origin(server, page, next_path):
    """A crafted ``next`` that a browser would resolve to another host (a backslash, a
    tab, two slashes) lands on this server's own search page after sign-in."""
    from urllib.parse import urlsplit

    from mmsearch.governance.keys import KeyStore

    _, settings = server
    secret = KeyStore(settings.home).create("reader", name="redirect")[1]
    locked = settings.model_copy(update={"auth": "on"})
    with running_server(create_app(locked)) as base_url:
        page.context.clear_cookies()
        page.goto(f"{base_url}/login?next={next_path}")
        page.fill("#api-key", secret)
        page.click("#login-button")
        page.wait_for_url(lambda url: "/login" not in url)
        landed = urlsplit(page.url)
        assert f"{landed.scheme}://{landed.netloc}" == base_url
        assert landed.path == "/", page.url
        hosts = {urlsplit(url).hostname for url in page.requested}  # type: ignore[attr-defined]
        assert "evil.example" not in hosts


def card_ids(page) -> list[str]:
    return page.locator("#results .card").evaluate_all("cards => cards.map(c => c.dataset.id)")


def test_the_search_lives_in_the_url_pages_and_survives_a_reload(server, page):
    base_url, _ = server
    page.goto(f"{base_url}/?collection=emoji&q=rocket")
    page.wait_for_selector(f'#results .card[data-id="{ROCKET}"]')
    assert first_card(page).get_attribute("data-id") == ROCKET  # searched from the URL
    assert page.input_value("#query") == "rocket"
    first_page = card_ids(page)
    assert page.locator("#prev-page").is_hidden()
    page.click("#next-page")
    page.wait_for_url("**page=2**")
    page.wait_for_function("() => !document.querySelector(`#results .card[data-id='1F680']`)")
    page.wait_for_selector("#results .card")
    second_page = card_ids(page)
    assert second_page and not set(second_page) & set(first_page)
    assert page.locator("#results .card .rank").first.inner_text() == f"#{len(first_page) + 1}"
    assert "q=rocket" in page.url and "collection=emoji" in page.url
    page.reload()
    page.wait_for_selector("#results .card")
    page.wait_for_function(
        "n => document.querySelectorAll('#results .card').length === n", arg=len(second_page)
    )
    assert card_ids(page) == second_page and "page=2" in page.url
    assert page.input_value("#query") == "rocket"
    page.click("#prev-page")
    page.wait_for_selector(f'#results .card[data-id="{ROCKET}"]')
    assert "page=" not in page.url
    page.go_back()  # the history entry of page 2
    page.wait_for_url("**page=2**")
    page.wait_for_function("() => !document.querySelector(`#results .card[data-id='1F680']`)")
    page.screenshot(path=str(ARTIFACTS / "ui-search-url-page-2.png"), full_page=True)


def test_filters_and_mode_ride_in_the_url(server, page):
    base_url, _ = server
    filters = json.dumps({"category": "Travel & Places"})
    page.goto(f"{base_url}/?collection=emoji&q=rocket&mode=text&filters={quote(filters)}")
    page.wait_for_selector(f'#results .card[data-id="{ROCKET}"]')
    assert page.input_value("#mode") == "text"
    assert page.locator("#facets select").first.input_value() == "Travel & Places"
    page.locator("#facets select").first.select_option("")  # any category: a new search
    page.wait_for_function("() => !location.search.includes('filters=')")
    assert "mode=text" in page.url and "q=rocket" in page.url
