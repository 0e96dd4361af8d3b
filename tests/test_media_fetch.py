"""Image URLs against a real HTTP server on 127.0.0.1: limits, guard, redirects, cache."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from mmsearch.config import Settings
from mmsearch.errors import MMSearchError
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.media.fetch import (
    FetchError,
    FetchPolicy,
    ImageFetcher,
    address_refusal,
    check_url,
)

from conftest import write_jsonl


def png_bytes(colour: tuple[int, int, int] = (200, 30, 30), size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class ImageServer:
    port: int
    paths: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def count(self, path: str) -> int:
        return sum(1 for p in self.paths if p == path)


@pytest.fixture
def server() -> Iterator[ImageServer]:
    red, blue = png_bytes((200, 30, 30)), png_bytes((30, 30, 200))
    state = ImageServer(0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str = "image/png") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", '"v1"')
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            state.paths.append(self.path)
            if self.path == "/red.png":
                self._send(200, red)
            elif self.path == "/blue.png":
                self._send(200, blue)
            elif self.path == "/big.png":
                self._send(200, red + b"\0" * 50_000)
            elif self.path == "/page.html":
                self._send(200, b"<html>not an image</html>", "text/html")
            elif self.path == "/stall.png":
                time.sleep(1.5)
                self._send(200, red)
            elif self.path == "/to-loopback":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.2:{state.port}/red.png")
                self.end_headers()
            elif self.path == "/to-red":
                self.send_response(301)
                self.send_header("Location", "/red.png")
                self.end_headers()
            else:
                self._send(404, b"missing", "text/plain")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def fetcher(tmp_path: Path, **policy: object) -> ImageFetcher:
    options: dict[str, object] = {"allow_private": True, **policy}
    return ImageFetcher(tmp_path / "cache", FetchPolicy(**options))  # type: ignore[arg-type]


def test_fetch_returns_the_image_bytes(server: ImageServer, tmp_path: Path) -> None:
    with fetcher(tmp_path) as images:
        fetched = images.fetch(server.url("/red.png"))
    assert fetched.data == png_bytes((200, 30, 30))
    assert fetched.from_cache is False and len(fetched.sha256) == 64


def test_fetch_follows_a_relative_redirect(server: ImageServer, tmp_path: Path) -> None:
    with fetcher(tmp_path) as images:
        assert images.fetch(server.url("/to-red")).data == png_bytes((200, 30, 30))
    assert server.paths == ["/to-red", "/red.png"]


def test_fetch_stops_at_the_byte_cap(server: ImageServer, tmp_path: Path) -> None:
    with fetcher(tmp_path, max_bytes=10_000) as images, pytest.raises(FetchError) as caught:
        images.fetch(server.url("/big.png"))
    assert "over the limit of 10000" in str(caught.value)
    assert server.url("/big.png") in str(caught.value)


def test_fetch_refuses_a_non_image_content_type(server: ImageServer, tmp_path: Path) -> None:
    with fetcher(tmp_path) as images, pytest.raises(FetchError, match="text/html"):
        images.fetch(server.url("/page.html"))


def test_fetch_times_out_on_a_stalled_server(server: ImageServer, tmp_path: Path) -> None:
    with fetcher(tmp_path, read_timeout_s=0.2) as images, pytest.raises(FetchError) as caught:
        images.fetch(server.url("/stall.png"))
    assert "timed out" in str(caught.value)


def test_http_error_status_is_a_fetch_error(server: ImageServer, tmp_path: Path) -> None:
    with fetcher(tmp_path) as images, pytest.raises(FetchError, match="HTTP 404"):
        images.fetch(server.url("/nope.png"))


def test_redirect_to_loopback_is_refused_without_private_urls(
    server: ImageServer, tmp_path: Path
) -> None:
    # 127.0.0.1 is allowed by name (as an internal CDN would be); 127.0.0.2 is not.
    policy = {"allow_private": False, "allowed_networks": ("127.0.0.1/32",)}
    with fetcher(tmp_path, **policy) as images:
        assert images.fetch(server.url("/red.png")).data  # the pinned connection works
        with pytest.raises(FetchError) as caught:
            images.fetch(server.url("/to-loopback"))
    assert "127.0.0.2 is a loopback address" in str(caught.value)
    assert server.paths == ["/red.png", "/to-loopback"]  # the redirect target was never asked


def test_private_server_is_refused_by_default(server: ImageServer, tmp_path: Path) -> None:
    with fetcher(tmp_path, allow_private=False) as images, pytest.raises(FetchError):
        images.fetch(server.url("/red.png"))
    assert server.paths == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://10.1.2.3/a.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://192.168.0.10/a.png",
        "http://224.0.0.1/a.png",
        "http://0.0.0.0/a.png",
    ],
)
def test_guard_refuses_non_public_addresses(url: str) -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise AssertionError("IP literals must not be resolved")

    with pytest.raises(FetchError, match="refused"):
        check_url(url, allow_private=False, resolver=resolver)
    check_url(url, allow_private=True, resolver=resolver)  # allowed when configured


def test_guard_checks_every_resolved_address() -> None:
    calls: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return ["93.184.216.34", "10.0.0.7"]

    with pytest.raises(FetchError, match=r"10\.0\.0\.7 is a private address"):
        check_url("https://shop.example/a.png", allow_private=False, resolver=resolver)
    assert calls == [("shop.example", 443)]


def test_guard_accepts_public_addresses_and_rejects_other_schemes() -> None:
    parsed, addresses = check_url(
        "http://cdn.example:8080/a.png",
        allow_private=False,
        resolver=lambda host, port: ["93.184.216.34"],
    )
    assert parsed.host == "cdn.example" and addresses == ["93.184.216.34"]
    assert address_refusal("8.8.8.8") is None
    assert address_refusal("fe80::1") is not None
    with pytest.raises(FetchError, match="only http and https"):
        check_url("ftp://x.example/a.png", allow_private=True)


def test_bad_allowed_network_is_a_clear_error() -> None:
    with pytest.raises(MMSearchError, match="CIDR"):
        FetchPolicy(allowed_networks=("not-a-net",))


def test_cache_serves_a_known_url_without_a_request(server: ImageServer, tmp_path: Path) -> None:
    url = server.url("/red.png")
    with fetcher(tmp_path) as images:
        images.fetch(url)
    with fetcher(tmp_path) as images:
        again = images.fetch(url)
        assert again.from_cache and images.requests_made == 0
    with fetcher(tmp_path, refresh=True) as images:
        refreshed = images.fetch(url)  # revalidated: a request is made
        assert refreshed.data == again.data and images.requests_made == 1
    assert server.count("/red.png") == 2


def _url_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_urls": True})


def test_ingest_fetches_urls_once_and_reports_failures(
    server: ImageServer, settings: Settings, tmp_path: Path
) -> None:
    catalog = write_jsonl(
        tmp_path / "urls.jsonl",
        [
            {"id": "r", "title": "red square", "image": server.url("/red.png")},
            {"id": "b", "title": "blue square", "image": [server.url("/blue.png")]},
            {"id": "t", "title": "not an image", "image": server.url("/page.html")},
        ],
    )
    settings = _url_settings(settings)
    report = Ingestor(settings).run(IngestOptions(catalog, "web"))
    assert report.counts["added"] == 2
    assert [(e.item_id, e.field) for e in report.errors] == [("t", "image")]
    assert server.url("/page.html") in report.errors[0].reason
    assert "not an image" in report.errors[0].reason
    assert (settings.home / "cache" / "images" / "index.sqlite").is_file()

    second = Ingestor(settings).run(IngestOptions(catalog, "web"))
    assert second.counts["unchanged"] == 2
    assert server.count("/red.png") == 1 and server.count("/blue.png") == 1  # cache hit


def test_ingest_refuses_private_urls_by_default(
    server: ImageServer, settings: Settings, tmp_path: Path
) -> None:
    catalog = write_jsonl(
        tmp_path / "urls.jsonl",
        [
            {"id": "r", "title": "red square", "image": server.url("/red.png")},
            {"id": "x", "title": "plain text row"},
        ],
    )
    report = Ingestor(settings).run(IngestOptions(catalog, "web"))
    assert report.counts["added"] == 1
    assert "loopback" in report.errors[0].reason and report.errors[0].item_id == "r"
    assert server.paths == []
