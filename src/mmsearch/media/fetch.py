"""Fetching catalog images from http(s) URLs: bounded, guarded, cached.

A catalog URL is chosen by whoever wrote the catalog, and the indexer runs inside the
operator's network. Left unguarded, ``http://169.254.169.254/...`` or
``http://10.0.0.5/admin`` in a catalog would make the indexer probe internal
services (server-side request forgery). So, unless the settings allow private
addresses:

* the host is resolved and *every* address it resolves to must be public (not
  private, loopback, link-local, multicast, reserved or unspecified, including
  IPv4-mapped IPv6 forms); otherwise no request is made;
* the connection goes to the address that was checked (the request is pinned to it,
  with the original ``Host`` header and TLS server name), so a DNS answer that
  changes between the check and the connect cannot redirect it;
* redirects are followed by hand, at most ``max_redirects``, and each target is
  checked the same way.

Every fetch is bounded: connect and read timeouts, an overall deadline (a server
dripping one byte a second cannot hold a worker forever), a byte cap enforced while
streaming, and a ``Content-Type`` that must be ``image/*``.

Fetched bytes land in a content-addressed cache (see ``UrlCache``); a URL already in
the cache is not fetched again unless a refresh is asked for, so re-ingesting a
catalog costs no network traffic.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mmsearch.errors import ImageError, MMSearchError
from mmsearch.media.url_cache import CachedUrl, UrlCache

Resolver = Callable[[str, int], list[str]]
USER_AGENT = "mmsearch-image-fetcher/1"
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


class FetchError(ImageError):
    """One image URL could not be used; the message names the URL and the reason."""


@dataclass(frozen=True)
class FetchPolicy:
    """Limits of one fetch; from ``Settings`` (see ``FetchPolicy.from_settings``)."""

    max_bytes: int = 32 * 1024 * 1024
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 30.0
    max_redirects: int = 5
    allow_private: bool = False
    refresh: bool = False
    # Networks allowed even when private addresses are not (an internal image CDN, say).
    allowed_networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for network in self.allowed_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise MMSearchError(
                    f"url_allowed_networks: {network!r} is not a network; write CIDR such as "
                    "'10.20.0.0/16'"
                ) from None

    @classmethod
    def from_settings(cls, settings: Any) -> FetchPolicy:
        return cls(
            max_bytes=settings.max_image_bytes,
            connect_timeout_s=settings.fetch_connect_timeout_s,
            read_timeout_s=settings.fetch_read_timeout_s,
            total_timeout_s=settings.fetch_total_timeout_s,
            max_redirects=settings.fetch_max_redirects,
            allow_private=settings.allow_private_urls,
            refresh=settings.refetch_image_urls,
            allowed_networks=tuple(settings.url_allowed_networks),
        )


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), in resolver order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc}") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    return addresses


def address_refusal(address: str) -> str | None:
    """Why an IP may not be contacted without ``allow_private_urls``; None when public."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for flag, label in (
        ("is_loopback", "loopback"),
        ("is_private", "private"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_unspecified", "unspecified"),
    ):
        if getattr(ip, flag):
            return f"{address} is a {label} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def check_url(
    url: str,
    *,
    allow_private: bool,
    resolver: Resolver = system_resolver,
    allowed_networks: tuple[str, ...] = (),
) -> tuple[httpx.URL, list[str]]:
    """Parse ``url`` and resolve its host; refuse non-public addresses unless allowed.

    An address inside one of ``allowed_networks`` (CIDR strings) is accepted even
    when private addresses are not.

    Returns the parsed URL and the checked addresses. Raises ``FetchError`` before
    any connection is attempted.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(f"{url}: not a valid URL ({exc})") from None
    if parsed.scheme not in {"http", "https"}:
        raise FetchError(f"{url}: only http and https URLs are fetched")
    if not parsed.host:
        raise FetchError(f"{url}: the URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = [str(ipaddress.ip_address(parsed.host))]
    except ValueError:
        addresses = resolver(parsed.host, port)
    if not addresses:
        raise FetchError(f"{url}: host {parsed.host!r} resolves to no address")
    if not allow_private:
        networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        for address in addresses:
            if any(ipaddress.ip_address(address) in network for network in networks):
                continue
            reason = address_refusal(address)
            if reason is not None:
                raise FetchError(
                    f"{url}: refused, {reason} (set MMSEARCH_ALLOW_PRIVATE_URLS=1 to allow "
                    "fetching from private networks)"
                )
    return parsed, addresses


@dataclass(frozen=True)
class FetchedImage:
    url: str
    data: bytes
    sha256: str
    from_cache: bool


class ImageFetcher:
    """Fetches image URLs for one ingest run, through the workspace's URL cache."""

    def __init__(
        self,
        cache_dir: Path,
        policy: FetchPolicy = FetchPolicy(),
        resolver: Resolver = system_resolver,
    ):
        self.policy = policy
        self.resolver = resolver
        self.cache = UrlCache(cache_dir)
        self.requests_made = 0
        timeout = httpx.Timeout(
            connect=policy.connect_timeout_s,
            read=policy.read_timeout_s,
            write=policy.read_timeout_s,
            pool=policy.connect_timeout_s,
        )
        # trust_env=False: proxies from the environment would bypass the address guard.
        self._client = httpx.Client(
            timeout=timeout, follow_redirects=False, trust_env=False, http2=False
        )

    def __enter__(self) -> ImageFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()
        self.cache.close()

    def fetch(self, url: str) -> FetchedImage:
        """The image bytes of ``url``: from the cache when known, else from the network."""
        cached = self.cache.lookup(url)
        if cached is not None and not self.policy.refresh:
            data = self.cache.read_blob(cached.sha256)
            if data is not None:
                return FetchedImage(url, data, cached.sha256, True)
        data, validators = self._download(url, cached if self.policy.refresh else None)
        if data is None and cached is not None:  # 304 Not Modified
            blob = self.cache.read_blob(cached.sha256)
            if blob is not None:
                return FetchedImage(url, blob, cached.sha256, True)
            data, validators = self._download(url, None)
        assert data is not None
        digest = hashlib.sha256(data).hexdigest()
        self.cache.store(url, data, digest, **validators)
        return FetchedImage(url, data, digest, False)

    def _download(
        self, url: str, cached: CachedUrl | None
    ) -> tuple[bytes | None, dict[str, str | None]]:
        """Follow redirects by hand, checking every hop; None data means "not modified"."""
        deadline = time.monotonic() + self.policy.total_timeout_s
        current = url
        for _hop in range(self.policy.max_redirects + 1):
            parsed, addresses = check_url(
                current,
                allow_private=self.policy.allow_private,
                resolver=self.resolver,
                allowed_networks=self.policy.allowed_networks,
            )
            headers = {"User-Agent": USER_AGENT, "Accept": "image/*"}
            if cached is not None:
                if cached.etag:
                    headers["If-None-Match"] = cached.etag
                if cached.last_modified:
                    headers["If-Modified-Since"] = cached.last_modified
            request_url, extensions = self._pinned(parsed, addresses, headers)
            try:
                self.requests_made += 1
                with self._client.stream(
                    "GET", request_url, headers=headers, extensions=extensions
                ) as response:
                    if response.status_code in _REDIRECT_CODES:
                        location = response.headers.get("location")
                        if not location:
                            raise FetchError(f"{url}: redirect without a Location header")
                        current = str(parsed.join(location))
                        continue
                    if response.status_code == 304 and cached is not None:
                        return None, {}
                    return self._read_body(url, response, deadline), {
                        "etag": response.headers.get("etag"),
                        "last_modified": response.headers.get("last-modified"),
                        "content_type": response.headers.get("content-type"),
                    }
            except httpx.TimeoutException as exc:
                raise FetchError(f"{url}: timed out ({type(exc).__name__})") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"{url}: request failed: {exc or type(exc).__name__}") from None
        raise FetchError(f"{url}: more than {self.policy.max_redirects} redirects")

    def _pinned(
        self, parsed: httpx.URL, addresses: list[str], headers: dict[str, str]
    ) -> tuple[httpx.URL, dict[str, Any]]:
        """Connect to the checked address, keeping the host name for HTTP and TLS."""
        if self.policy.allow_private:
            return parsed, {}
        headers["Host"] = parsed.netloc.decode("ascii")
        extensions: dict[str, Any] = {}
        if parsed.scheme == "https":
            extensions["sni_hostname"] = parsed.host
        return parsed.copy_with(host=addresses[0]), extensions

    def _read_body(self, url: str, response: httpx.Response, deadline: float) -> bytes:
        if response.status_code != 200:
            raise FetchError(f"{url}: server answered HTTP {response.status_code}")
        content_type = response.headers.get("content-type", "")
        if not content_type.split(";", 1)[0].strip().lower().startswith("image/"):
            shown = content_type or "none"
            raise FetchError(f"{url}: content type is {shown!r}, not an image")
        limit = self.policy.max_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise FetchError(f"{url}: image has {declared} bytes, over the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes(chunk_size=64 * 1024):
            size += len(chunk)
            if size > limit:
                raise FetchError(f"{url}: image is larger than the limit of {limit} bytes")
            if time.monotonic() > deadline:
                raise FetchError(
                    f"{url}: timed out (download took over {self.policy.total_timeout_s:g} s)"
                )
            chunks.append(chunk)
        if size == 0:
            raise FetchError(f"{url}: the server sent an empty body")
        return b"".join(chunks)
