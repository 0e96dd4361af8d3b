"""Connections to Milvus: one client per address and token, collection and alias names.

Kept apart from ``milvus.py`` so that alias upkeep (``index/open.py::sync_aliases``)
needs no build open. pymilvus is imported only when a client is first made.

Every client handed out is wrapped (``GuardedClient``) so that no pymilvus exception
leaves the store: an unreachable server or a collection that is missing or not
loaded is a ``MilvusStoreError``, anything else Milvus refuses a
``MilvusRequestError``; both are ``MMSearchError``s, which the CLI and the API show as
a message, never a traceback. pymilvus's own error log (a traceback per failed call)
is silenced for the same reason; the store logs the server's message at debug level.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmsearch.errors import MMSearchError

log = logging.getLogger("mmsearch.index")
_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


@dataclass(frozen=True)
class MilvusConnection:
    """Where a build's collections live and how dense fields are indexed; the token is
    never part of ``repr`` or the manifest."""

    uri: str
    token: str | None = field(default=None, repr=False)
    index: str = "hnsw"
    index_params: dict[str, Any] = field(default_factory=dict)
    search_params: dict[str, Any] = field(default_factory=dict)
    # Partition-key buckets of new builds for per-tenant ACLs (0: no partition key).
    tenant_partitions: int = 16
    # Images of new builds: "auto" (Array of Structs where the server has it), "rows", "struct".
    image_layout: str = "auto"
    # A filtered vector search matching at most this many items is answered exactly.
    exact_filter_rows: int = 4096
    # "run": flush at the end of each run and wait for the index; "server": auto-flush.
    flush: str = "run"
    # Seconds a run waits for the index of what it flushed.
    index_wait_s: float = 600.0

    def client(self) -> Any:
        key = (self.uri, self.token or "")
        with _clients_lock:
            if key not in _clients:
                try:
                    from pymilvus import MilvusClient
                except ImportError:
                    raise MMSearchError(
                        "This build is stored in Milvus, but pymilvus is not installed: "
                        "pip install 'mmsearch[milvus]'."
                    ) from None
                # pymilvus logs each failed call with its traceback; ours are re-raised
                # as MMSearchErrors (see the module docstring) and logged at debug.
                for name in ("pymilvus", "pymilvus.decorators", "pymilvus.milvus_client"):
                    logging.getLogger(name).setLevel(logging.CRITICAL)
                try:
                    client = MilvusClient(uri=self.uri, token=self.token or "", timeout=30)
                    _clients[key] = GuardedClient(client, self.uri)
                except Exception as exc:
                    log.debug("connecting to Milvus at %s failed: %s", self.uri, exc)
                    raise MMSearchError(
                        f"Cannot reach Milvus at {self.uri}. Start the server, or set "
                        "MMSEARCH_MILVUS_URI (and MMSEARCH_MILVUS_TOKEN or "
                        "MMSEARCH_MILVUS_TOKEN_FILE) to a reachable one."
                    ) from None
            return _clients[key]


class MilvusStoreError(MMSearchError):
    """Milvus cannot serve the build now: unreachable, or a collection missing or not
    loaded. Not the caller's fault: retrying later or fixing the server helps."""


class MilvusRequestError(MMSearchError):
    """Milvus refused a request as given (a filter it cannot parse, a value too long)."""


# MilvusException codes meaning "the server cannot serve this collection", not "the
# request is wrong": 2 unavailable, 100 collection missing, 101 not loaded (Milvus and
# Milvus Lite), 103/106 and 503 (Milvus: not ready, no replica available).
_STORE_CODES = frozenset({2, 100, 101, 103, 106, 503})
_UNREACHABLE = ("MilvusUnavailableException", "ConnectError", "RpcError", "_InactiveRpcError")


_GRPC_UNREACHABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


def _code(exc: Exception) -> Any:
    """A MilvusException's code, or a gRPC error's status name (pymilvus sometimes
    hands the gRPC error's ``code`` method on as the code)."""
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            code = code()
        except Exception:  # not a gRPC call after all
            return None
    return getattr(code, "name", code)


def _unreachable(exc: Exception) -> bool:
    code = _code(exc)
    if code == 2 or code in _GRPC_UNREACHABLE or isinstance(exc, OSError | TimeoutError):
        return True
    grpc_error = any(kind.__name__ in _UNREACHABLE for kind in type(exc).__mro__)
    return grpc_error and not isinstance(code, str)  # a gRPC status other than the above


def store_error(exc: Exception, uri: str, operation: str) -> MMSearchError:
    """The MMSearchError a failed Milvus call becomes, with the server's own words."""
    code = _code(exc)
    details = getattr(exc, "details", None)  # gRPC errors: the status's own words
    text = str(details() if callable(details) else getattr(exc, "message", "") or exc).strip()
    message = (text.splitlines() or [type(exc).__name__])[0][:300]
    log.debug("Milvus at %s: %s failed: %r", uri, operation, exc)
    if _unreachable(exc):
        return MilvusStoreError(
            f"Cannot reach Milvus at {uri} ({operation}: {message}). Start the server, or "
            "set MMSEARCH_MILVUS_URI (and MMSEARCH_MILVUS_TOKEN or "
            "MMSEARCH_MILVUS_TOKEN_FILE) to a reachable one."
        )
    if code in _STORE_CODES or "not loaded" in message or "released" in message:
        return MilvusStoreError(f"Milvus at {uri} could not {operation}: {message}")
    return MilvusRequestError(f"Milvus at {uri} refused to {operation}: {message}")


class GuardedClient:
    """A ``MilvusClient`` whose calls raise ``MMSearchError`` and nothing else."""

    def __init__(self, client: Any, uri: str):
        self._client = client
        self._uri = uri

    @property
    def raw(self) -> Any:
        """The pymilvus client itself (tests and tools that want pymilvus's errors)."""
        return self._client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return self._guarded(name, attr)

    def _guarded(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except MMSearchError:
                raise
            except Exception as exc:
                target = args[0] if args and isinstance(args[0], str) else ""
                raise store_error(exc, self._uri, f"{name} {target}".strip()) from exc

        return guarded


def collection_name(table: str) -> str:
    return f"mmsearch_{table}"


def alias_name(collection: str, folder: str, alias: str) -> str:
    """Readable and unique per workspace folder (many workspaces may share a cluster)."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", collection)[:80]
    digest = hashlib.sha1(folder.encode()).hexdigest()[:8]
    return f"mmsearch_{safe}_{digest}_{alias}"


def is_lite(client: Any) -> bool:
    try:
        return str(client.get_server_version()).startswith("milvus_lite")
    except Exception:  # older servers without the call are full Milvus
        return False


def point_aliases(
    connection: MilvusConnection, wanted: dict[str, str | None], tables: list[str]
) -> None:
    """Make each Milvus alias name the given build table's collection (None: drop it).

    The aliases that exist are read from ``tables`` (the collection's builds on this
    server), so no lookup of a missing alias is made (pymilvus logs those as errors)."""
    client = connection.client()
    existing: set[str] = set()
    for table in tables:
        if client.has_collection(collection_name(table)):
            existing.update(client.list_aliases(collection_name(table)).get("aliases", []))
    for alias, table in wanted.items():
        if table is None:
            if alias in existing:
                client.drop_alias(alias)
        elif alias in existing:
            client.alter_alias(collection_name(table), alias)
        else:
            client.create_alias(collection_name(table), alias)
