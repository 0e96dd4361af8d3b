"""The JSON API over a real LanceDB collection (fake encoders), through FastAPI's TestClient."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mmsearch.ranking.clicks import read_click_log
from mmsearch.service.app import create_app
from mmsearch.workspace import Workspace
from service_support import ingest_shop

from conftest import COLOURS


def png_bytes(colour: tuple[int, int, int], size: int = 16) -> bytes:
    image = Image.new("RGB", (size, size), colour)
    image.putpixel((0, 0), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def client(settings, make_catalog, tmp_path):
    ingest_shop(settings, make_catalog())
    settings = settings.model_copy(update={"allowed_roots": [tmp_path / "cat"]})
    with TestClient(create_app(settings)) as client:
        yield client


def search(client, **body):
    return client.post("/v1/collections/shop/search", json=body)


def assert_error(response, status, kind=None, match=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message"}
    if kind:
        assert error["type"] == kind
    if match:
        assert match in error["message"]


def test_text_search_returns_hits_with_signals_images_and_timings(client):
    response = search(client, text="blue mug", k=3)
    assert response.status_code == 200
    data = response.json()
    top = data["hits"][0]
    assert top["id"] == "item-2" and top["title"] == "blue ceramic mug" and top["rank"] == 1
    assert set(top["signals"]) == {"keyword", "text_vector"}
    assert top["attributes"]["category"] == "kitchen"
    assert top["explanation"] is None
    assert len(data["query_id"]) == 32 and data["build_id"].startswith("build-")
    assert {"keyword", "text_vector", "fusion", "total"} <= set(data["timings_ms"])
    image = client.get(top["image_urls"][0])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).getpixel((5, 5))[:3] == COLOURS["blue"]


def test_explain_attaches_an_explanation_per_hit(client):
    hit = search(client, text="blue mug", k=1, explain=True).json()["hits"][0]
    assert hit["explanation"] is not None
    assert set(hit["explanation"]["signals"]) == {"keyword", "text_vector"}


def test_offset_pages_through_the_same_ranking(client):
    full = [h["id"] for h in search(client, text="mug", k=5).json()["hits"]]
    page = search(client, text="mug", k=2, offset=2).json()
    assert [h["id"] for h in page["hits"]] == full[2:4]
    assert [h["rank"] for h in page["hits"]] == [3, 4]
    assert_error(search(client, text="mug", k=100, offset=950), 400, match="offset + k")


def test_image_search_by_base64_and_by_multipart_upload(client):
    data = png_bytes(COLOURS["yellow"])
    by_json = search(client, image=base64.b64encode(data).decode(), k=2).json()
    assert by_json["hits"][0]["id"] == "item-3" and by_json["signals"] == ["image_vector"]
    data_url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert search(client, image=data_url, k=1).json()["hits"][0]["id"] == "item-3"
    upload = client.post(
        "/v1/collections/shop/search",
        files={"image": ("query.png", data, "image/png")},
        data={"query": json.dumps({"k": 2, "explain": True})},
    )
    assert upload.status_code == 200, upload.text
    assert upload.json()["hits"][0]["id"] == "item-3"


def test_an_uploaded_copy_of_an_item_image_is_flagged_as_an_exact_duplicate(client, tmp_path):
    data = (tmp_path / "cat" / "img" / "green.png").read_bytes()
    response = client.post(
        "/v1/collections/shop/search", files={"image": ("green.png", data, "image/png")}
    )
    top = response.json()["hits"][0]
    assert top["id"] == "item-1" and top["extra"]["duplicate"] == "exact"


def test_fusion_options_pass_through_to_the_searcher(client):
    weighted = search(
        client,
        text="blue mug",
        k=2,
        fusion="weighted",
        normalisation="zscore",
        weights={"keyword": 0.2, "text_vector": 0.8},
        explain=True,
    ).json()
    assert weighted["warnings"] == []
    assert weighted["hits"][0]["explanation"]["fusion"] == "weighted"
    assert weighted["hits"][0]["explanation"]["signals"]["text_vector"]["weight"] == 0.8


def test_mode_selects_which_part_of_the_query_is_used(client):
    data = base64.b64encode(png_bytes(COLOURS["green"])).decode()
    both = search(client, text="red", image=data, k=1).json()
    assert both["signals"] == ["image_vector", "keyword", "text_vector"]
    text_only = search(client, text="red", image=data, k=1, mode="text").json()
    assert text_only["signals"] == ["keyword", "text_vector"]
    assert text_only["hits"][0]["id"] == "item-0"
    assert_error(search(client, text="red", mode="image"), 400, match="needs a query image")


def test_structured_filters_compile_to_a_store_filter(client):
    office = search(client, text="mug", k=10, filters={"category": "office"}).json()
    assert {h["id"] for h in office["hits"]} == {"item-1", "item-3"}
    ranged = search(client, text="mug", k=10, filters={"price": {"min": 6, "max": 7.5}}).json()
    assert {h["id"] for h in ranged["hits"]} == {"item-1", "item-2"}
    listed = search(client, text="mug", filters={"category": ["office", "kitchen"]}, k=10).json()
    assert len(listed["hits"]) == 5
    combined = search(client, text="mug", k=10, where="in_stock", filters={"category": "office"})
    assert {h["id"] for h in combined.json()["hits"]} == {"item-1"}
    assert_error(search(client, text="mug", filters={"colour": "red"}), 400, match="attributes:")
    assert_error(search(client, text="mug", filters={"price": "cheap"}), 400, match="price")
    injected = search(client, text="mug", k=10, filters={"category": "x' OR '1'='1"})
    assert injected.status_code == 200 and injected.json()["hits"] == []


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"text": "mug", "k": 0}, 422, "ValidationError"),
        ({"text": "mug", "k": 101}, 422, "ValidationError"),
        ({"text": "mug", "colour": "red"}, 422, "ValidationError"),
        ({"text": "x" * 2001}, 422, "ValidationError"),
        ({"k": 3}, 400, "QueryError"),
        ({"image": "not base64!"}, 400, "QueryError"),
        ({"image": base64.b64encode(png_bytes((9, 9, 9), 64)[:60]).decode()}, 400, "ImageError"),
        ({"image": base64.b64encode(b"plain text, no image").decode()}, 415, "ImageError"),
        ({"text": "mug", "where": "no_such_column = 1"}, 400, "FilterError"),
        ({"text": "mug", "fusion": "nope"}, 400, "QueryError"),
    ],
)
def test_bad_requests_are_json_errors_with_the_right_status(client, body, status, kind):
    assert_error(search(client, **body), status, kind)


def test_unknown_collection_and_item_are_404(client):
    assert_error(client.post("/v1/collections/nope/search", json={"text": "x"}), 404)
    assert_error(client.get("/v1/collections/shop/items/nope"), 404, "NotFound")
    assert_error(client.get("/v1/collections/shop/items/item-1/images/1"), 404, match="1 image")
    assert_error(client.get("/v1/nothing-here"), 404)


def test_non_image_upload_is_415_and_oversized_bodies_413(settings, make_catalog):
    ingest_shop(settings, make_catalog())
    small = settings.model_copy(update={"max_upload_bytes": 2048, "max_image_pixels": 100})
    with TestClient(create_app(small)) as client:
        text_file = client.post(
            "/v1/collections/shop/search", files={"image": ("a.txt", b"hello", "text/plain")}
        )
        assert_error(text_file, 415, "UnsupportedMediaType")
        big = search(client, text="mug", where="x" * 1000, image="A" * 4000)
        assert_error(big, 413, "PayloadTooLarge")
        many_pixels = search(client, image=base64.b64encode(png_bytes((1, 2, 3), 16)).decode())
        assert_error(many_pixels, 413, "ImageError", match="pixels")
        wrong_type = client.post(
            "/v1/collections/shop/search",
            content=b"text=mug",
            headers={"content-type": "text/plain"},
        )
        assert_error(wrong_type, 415)


def test_collections_summary_build_manifest_and_facets(client):
    listing = client.get("/v1/collections").json()["collections"]
    assert [c["name"] for c in listing] == ["shop"] and listing[0]["items"] == 5
    summary = client.get("/v1/collections/shop").json()
    assert summary["aliases"]["live"] == summary["live_build"]
    assert {a["field"] for a in summary["attributes"]} == {"category", "price", "in_stock"}
    manifest = client.get(f"/v1/collections/shop/builds/{summary['live_build']}").json()
    assert manifest["build_id"] == summary["live_build"] and "runs" in manifest
    assert_error(client.get("/v1/collections/shop/builds/build-x"), 404)
    facets = {f["field"]: f for f in client.get("/v1/collections/shop/facets").json()["facets"]}
    assert facets["category"]["values"] == ["kitchen", "office"]
    assert facets["category"]["counts"] == [3, 2]
    assert (facets["price"]["min"], facets["price"]["max"]) == (5.0, 9.0)


def test_item_read_put_and_delete(client, tmp_path):
    item = client.get("/v1/collections/shop/items/item-1").json()
    assert item["title"] == "green ceramic mug" and "vector_text" not in item
    assert item["texts"]["description"].startswith("A green mug")

    record = {
        "title": "purple teapot",
        "description": "A purple teapot for tea",
        "tags": ["kitchen"],
        "category": "kitchen",
        "price": 12,  # an int for a float attribute is accepted
        "in_stock": True,
    }
    upload = base64.b64encode(png_bytes((128, 0, 128))).decode()
    put = client.put(
        "/v1/collections/shop/items/new-1", json={"record": record, "images": [{"data": upload}]}
    )
    assert put.status_code == 200, put.text
    assert put.json()["status"] == "added"
    found = search(client, text="purple teapot", k=1).json()
    assert found["hits"][0]["id"] == "new-1"
    assert found["build_id"] == put.json()["build_id"]  # same build: no new schema
    stored = client.get("/v1/collections/shop/items/new-1").json()
    assert stored["price"] == 12.0 and stored["category"] == "kitchen"
    assert client.get(stored["image_urls"][0]).status_code == 200

    again = client.put("/v1/collections/shop/items/new-1", json={"record": record})
    assert again.json()["status"] in {"unchanged", "updated"}

    by_path = dict(record, title="orange cup", image=str(tmp_path / "cat" / "img" / "red.png"))
    assert (
        client.put("/v1/collections/shop/items/new-2", json={"record": by_path}).status_code == 200
    )

    outside = dict(record, image="/etc/hostname")
    assert_error(
        client.put("/v1/collections/shop/items/new-3", json={"record": outside}), 403, "Forbidden"
    )
    wrong = dict(record, price="expensive")
    assert_error(client.put("/v1/collections/shop/items/new-4", json={"record": wrong}), 409)
    mismatch = dict(record, id="other")
    assert_error(client.put("/v1/collections/shop/items/new-5", json={"record": mismatch}), 400)

    deleted = client.delete("/v1/collections/shop/items/new-1")
    assert deleted.status_code == 200
    assert_error(client.get("/v1/collections/shop/items/new-1"), 404)
    assert_error(client.delete("/v1/collections/shop/items/new-1"), 404)
    ids = [h["id"] for h in search(client, text="purple teapot", k=10).json()["hits"]]
    assert "new-1" not in ids
    assert client.get("/v1/collections/shop").json()["items"] == 6


def test_more_like_this_by_look_and_by_meaning_excludes_the_item(client):
    look = client.get("/v1/collections/shop/items/item-3/similar?by=look&k=3").json()
    assert "item-3" not in [h["id"] for h in look["hits"]] and len(look["hits"]) == 3
    assert look["signals"] == ["image_vector"]
    meaning = client.get("/v1/collections/shop/items/item-3/similar?by=meaning&k=2").json()
    assert meaning["signals"] == ["text_vector"] and len(meaning["hits"]) == 2


def wait_for_job(client, url):
    for _ in range(400):
        job = client.get(url).json()
        if job["status"] in {"succeeded", "failed"}:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job did not finish: {job}")


def test_ingest_job_from_a_server_path_and_from_an_upload(client, tmp_path):
    catalog = tmp_path / "cat" / "catalog.jsonl"
    started = client.post("/v1/collections/copy/ingest", json={"catalog": str(catalog)})
    assert started.status_code == 202, started.text
    job = wait_for_job(client, started.json()["url"])
    assert job["status"] == "succeeded", job
    assert job["processed"] == job["total"] == 5 and job["progress"] == 1.0
    assert job["report"]["counts"]["added"] == 5
    assert search_in(client, "copy", "blue")[0] == "item-2"

    lines = b'{"id": "t1", "title": "walnut desk"}\n{"id": "t2", "title": "oak chair"}\n'
    upload = client.post(
        "/v1/collections/texts/ingest", files={"file": ("mine.jsonl", lines, "application/json")}
    )
    job = wait_for_job(client, upload.json()["url"])
    assert job["status"] == "succeeded" and job["report"]["counts"]["added"] == 2
    assert search_in(client, "texts", "desk")[0] == "t1"
    assert client.get("/v1/jobs").json()["jobs"][0]["id"] == job["id"]

    assert_error(client.post("/v1/collections/x/ingest", json={"catalog": "/etc/passwd"}), 403)
    bad = client.post("/v1/collections/x/ingest", files={"file": ("a.exe", b"MZ", "x/y")})
    assert_error(bad, 415)
    assert_error(client.get("/v1/jobs/job-nope"), 404)


def test_ingest_job_refuses_another_schema_unless_new_build_and_syncs(client):
    lines = b'{"id": "t1", "title": "walnut desk"}\n{"id": "t2", "title": "oak chair"}\n'

    def upload(name: str, data: bytes, **flags: str) -> dict:
        files = {"file": ("c.jsonl", data, "application/json")}
        started = client.post(f"/v1/collections/{name}/ingest", files=files, data=flags)
        assert started.status_code == 202, started.text
        return wait_for_job(client, started.json()["url"])

    refused = upload("shop", lines)
    assert refused["status"] == "failed"
    assert "attributes the catalog lacks" in refused["error"] and "new_build" in refused["error"]
    assert search_in(client, "shop", "blue")[0] == "item-2"

    rebuilt = upload("shop", lines, new_build="true")
    assert rebuilt["status"] == "succeeded" and rebuilt["report"]["new_build"]
    assert search_in(client, "shop", "desk")[0] == "t1"

    synced = upload("shop", lines.splitlines()[0] + b"\n", sync="true")
    assert synced["report"]["counts"]["removed"] == 1
    assert "t2" not in search_in(client, "shop", "chair")
    assert_error(
        client.post(
            "/v1/collections/shop/ingest",
            files={"file": ("c.jsonl", lines, "application/json")},
            data={"sync": "maybe"},
        ),
        400,
    )


def search_in(client, name, text):
    response = client.post(f"/v1/collections/{name}/search", json={"text": text, "k": 3})
    return [h["id"] for h in response.json()["hits"]]


def test_feedback_appends_a_click_in_the_ranking_format(client, settings):
    data = search(client, text="red mug", k=3).json()
    clicked = data["hits"][1]["id"]
    response = client.post("/v1/feedback", json={"query_id": data["query_id"], "item_id": clicked})
    assert response.status_code == 201
    events = read_click_log(settings.home / "logs" / "clicks.jsonl")
    assert len(events) == 1
    assert events[0].query == "red mug" and events[0].clicked == [clicked]
    assert events[0].shown == [h["id"] for h in data["hits"]]
    line = json.loads((settings.home / "logs" / "clicks.jsonl").read_text().splitlines()[0])
    assert line["query_id"] == data["query_id"] and line["position"] == 2

    image = base64.b64encode(png_bytes(COLOURS["red"])).decode()
    image_query = search(client, image=image, k=2).json()
    client.post(
        "/v1/feedback",
        json={"query_id": image_query["query_id"], "item_id": image_query["hits"][0]["id"]},
    )
    assert (settings.home / "logs" / "image_clicks.jsonl").is_file()
    assert len(read_click_log(settings.home / "logs" / "clicks.jsonl")) == 1

    assert_error(client.post("/v1/feedback", json={"query_id": "nope", "item_id": "x"}), 404)
    not_shown = {"query_id": data["query_id"], "item_id": "item-999"}
    assert_error(client.post("/v1/feedback", json=not_shown), 400)


def test_health_readiness_openapi_and_local_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["collections"]["shop"]["encoders"] == {"text": "loaded", "image": "loaded"}
    spec = client.get("/openapi.json").json()
    assert "/v1/collections/{name}/search" in spec["paths"]
    assert "SearchBody" in spec["components"]["schemas"]
    for page in ("/docs", "/", "/admin", "/items/shop/item-0"):
        html = client.get(page).text
        assert 'src="http' not in html and 'href="http' not in html, page
        assert "cdn" not in html.lower()
    assert client.get("/static/docs.js").status_code == 200


def test_readiness_fails_when_an_encoder_cannot_be_created(client, settings):
    manifest_path = next(
        (settings.home / "collections" / "shop" / "builds").glob("*/manifest.json")
    )
    manifest = json.loads(manifest_path.read_text())
    manifest["encoders"]["text"]["spec"] = "no-such-encoder"
    manifest_path.write_text(json.dumps(manifest))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "no-such-encoder" in ready.json()["collections"]["shop"]["error"]


def test_admin_lists_evaluation_reports_and_serves_only_files_under_reports(client, settings):
    report = settings.home / "reports" / "exp-1" / "summary.md"
    report.parent.mkdir(parents=True)
    report.write_text("# nDCG@10 0.71\n")
    page = client.get("/admin").text
    assert "exp-1/summary.md" in page
    served = client.get("/admin/reports/exp-1/summary.md")
    assert served.status_code == 200 and "nDCG@10 0.71" in served.text
    assert_error(client.get("/admin/reports/..%2F..%2Fcollections%2Fshop%2Fcollection.json"), 404)
    assert_error(client.get("/admin/reports/missing.md"), 404)


def test_warm_on_start_loads_the_models_before_the_first_search(settings, make_catalog):
    """serve's default: the encoders load in the background as the app starts, so the
    first search (often a CLI search the server answers) does not wait for them."""
    from mmsearch.encoders import base

    ingest_shop(settings, make_catalog())
    specs = {
        e.spec
        for e in Workspace(settings.home).collection("shop").live_manifest().encoders.values()
    }
    for warm in (False, True):
        base.clear_encoder_cache()
        app = create_app(settings.model_copy(update={"warm_on_start": warm}))
        with TestClient(app) as client:
            deadline = time.monotonic() + 60
            while warm and not specs <= set(base._CACHE) and time.monotonic() < deadline:
                time.sleep(0.05)
            loaded = specs <= set(base._CACHE)
            assert client.get("/healthz").status_code == 200
        assert loaded is warm, (warm, specs, set(base._CACHE))


def test_an_encoder_that_two_threads_ask_for_at_once_loads_once():
    """The warm-up thread and a first request may want the same model together."""
    from mmsearch.encoders import base

    calls: list[str | None] = []
    started = threading.Event()

    @base.register("slow-once-text")
    def _slow(argument: str | None) -> Any:
        calls.append(argument)
        started.set()
        time.sleep(0.3)  # a model load, long enough for the second thread to arrive
        return object()

    base.clear_encoder_cache()
    got: list[Any] = []
    threads = [
        threading.Thread(target=lambda: got.append(base.create_encoder("slow-once-text")))
        for _ in range(2)
    ]
    threads[0].start()
    started.wait(5)
    threads[1].start()
    for thread in threads:
        thread.join(10)
    assert calls == [None] and len(got) == 2 and got[0] is got[1]
