"""``mmsearch search`` answered by a running ``mmsearch serve``: finding it, asking it.

In-process, a cold search imports the store and the models (about 19 s on two cores);
a running server has them warm. So ``search`` first looks for one: the URL given with
``--server`` (or ``MMSEARCH_SERVER``), else the workspace's ``server.json``
(``commands/server_file.py``). A discovered server is used only when it is certainly
this workspace's, alive and quick to answer, and only for a query that it answers as
this process would; anything else is searched here, silently, or with a note when a
server that looked usable did not answer. A server named by the user is the user's
choice: its failures are errors, never a silent local search.

Only the standard library speaks HTTP here, and nothing on this path imports the store,
the models, NumPy or PIL: that is the whole point (``tests/test_cli_server.py``).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, urlsplit

from mmsearch import __version__
from mmsearch.commands.server_file import read_record
from mmsearch.errors import MMSearchError, QueryError
from mmsearch.processes import pid_alive

if TYPE_CHECKING:
    from mmsearch.config import Settings
    from mmsearch.search.query import SearchQuery
    from mmsearch.search.response import SearchResponse

HEALTH_TIMEOUT_S = 0.3  # a discovered server slower than this is not worth waiting for
SEARCH_TIMEOUT_S = 30.0  # a server's first search may load its models
SERVER_ID_HEADER = "X-MMSearch-Server"  # service/routers/health.py, not imported: FastAPI
API_MAX_K = 100  # service.schemas.SearchBody's bound; tests check that they agree
OFF = {"", "none", "off"}  # ranking.pipeline.OFF


class ServerError(MMSearchError):
    """A server named with --server (or MMSEARCH_SERVER) did not answer the search."""


class ServerFallback(Exception):
    """A discovered server did not answer; the search runs in this process. Not an
    ``MMSearchError``: it never reaches the user as an error, only as a note."""


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str | None
    explicit: bool  # named by the user, not found in server.json


def explicit_server(url: str, api_key: str | None) -> Server:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QueryError(f"--server must be an http:// or https:// URL, not {url!r}.")
    return Server(url.rstrip("/"), api_key, explicit=True)


def discovered_server(settings: Settings, api_key: str | None) -> Server | None:
    """The workspace's own server, if ``server.json`` names one that is certainly it."""
    record = read_record(settings.home)
    if record is None or not is_loopback_url(record.url) or not pid_alive(record.pid):
        return None
    if record.version != __version__:  # an upgrade since it started: its answers may differ
        return None
    try:
        same_home = Path(record.home) == settings.home.expanduser().resolve()
    except OSError:
        return None
    if not same_home:  # a copied or moved workspace: the server serves the other one
        return None
    try:
        status, headers, _ = _request(record.url, "GET", "/healthz", timeout=HEALTH_TIMEOUT_S)
    except OSError:
        return None
    if status != 200 or headers.get(SERVER_ID_HEADER.lower()) != record.server_id:
        return None
    return Server(record.url, api_key, explicit=False)


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def local_reason(
    query: SearchQuery, *, groups: str | None, default_rules: bool, canary: bool
) -> str | None:
    """Why a discovered server would not answer this query as this process does (None:
    it would). Its answer must be this process's answer, or the shortcut is a trap."""
    if groups is not None:
        return "--groups searches as other ACL groups, which only this process can do"
    if query.rules is not None and query.rules.strip().lower() not in OFF:
        return "--rules names a file; a server takes only registered rules"
    if query.reranker is not None and query.reranker.strip().lower() not in OFF:
        return "--ranker names a model folder; a server takes only registered rerankers"
    if query.rules is None and default_rules:
        return "the server applies the collection's default rules, this process does not"
    if query.k + query.offset > API_MAX_K:
        return f"a server answers at most {API_MAX_K} hits"
    if canary:
        return "a canary runs: the server may answer from it, this process from live"
    return None


def search_on_server(
    server: Server, collection: str, query: SearchQuery, image: Path | None
) -> SearchResponse:
    """The server's answer in the CLI's shape, image URLs made absolute. Raises
    ``ServerError``/``QueryError`` for a named server, ``ServerFallback`` for a
    discovered one that cannot answer, and ``QueryError`` for a query either refuses."""
    from mmsearch.search.response import SearchResponse

    body: dict[str, Any] = query.model_dump(mode="json", exclude_none=True)
    if image is not None:
        body["image"] = base64.b64encode(_read_image(image)).decode("ascii")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if server.api_key:
        headers["Authorization"] = f"Bearer {server.api_key}"
    path = f"/v1/collections/{quote(collection, safe='')}/search"
    try:
        status, _, payload = _request(
            server.url,
            "POST",
            path,
            body=json.dumps(body).encode("utf-8"),
            headers=headers,
            timeout=SEARCH_TIMEOUT_S,
        )
    except OSError as exc:
        _unreachable(server, exc)
    if status == 200:
        try:
            response = SearchResponse.model_validate_json(payload)
        except ValueError as exc:  # pydantic's ValidationError: another mmsearch version?
            _unreachable(server, OSError(f"an answer this mmsearch cannot read: {exc}"))
        return response.model_copy(
            update={
                "hits": [
                    hit.model_copy(update={"images": [_absolute(server, u) for u in hit.images]})
                    for hit in response.hits
                ]
            }
        )
    message = _error_message(payload) or f"HTTP {status}"
    if status in (401, 403):
        if not server.explicit:
            raise ServerFallback(f"the server at {server.url} refused the search ({message})")
        raise ServerError(
            f"The server at {server.url} refused the search: {message} Give an API key with "
            "--api-key or MMSEARCH_API_KEY (mmsearch keys create), or search in this "
            "process with --local."
        )
    if status in (429, 503) or status >= 500:
        if not server.explicit:
            raise ServerFallback(f"the server at {server.url} could not answer ({message})")
        raise ServerError(f"The server at {server.url} could not answer: {message}")
    raise QueryError(message)  # the query itself: a bad filter, an unknown collection...


def _unreachable(server: Server, exc: OSError) -> NoReturn:
    reason = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else str(exc)
    if not server.explicit:
        raise ServerFallback(f"the server at {server.url} did not answer ({reason})")
    raise ServerError(
        f"No answer from the server at {server.url} ({reason}); is `mmsearch serve` "
        "running there? Leave out --server (and MMSEARCH_SERVER) or add --local to search "
        "in this process."
    )


def _read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise QueryError(f"Cannot read the query image {path}: {exc.strerror or exc}.") from None


def _absolute(server: Server, url: str) -> str:
    return server.url + url if url.startswith("/") else url


def _error_message(payload: bytes) -> str | None:
    """``{"error": {"type", "message"}}``, the service's one error shape."""
    try:
        error = json.loads(payload).get("error") or {}
    except (ValueError, AttributeError):
        return None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message) if message else None


def _request(
    base_url: str,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange with the standard library (http.client): status, headers with
    lower-case names, body. Network failures are ``OSError`` (timeouts included)."""
    parts = urlsplit(base_url)
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request(method, parts.path.rstrip("/") + path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    except http.client.HTTPException as exc:  # a reply that is not HTTP
        raise OSError(f"not an HTTP answer: {exc!r}") from exc
    finally:
        connection.close()
