"""Connections to Milvus: one client per address and token, collection and alias names.

Kept apart from ``milvus.py`` so that alias upkeep (``index/open.py::sync_aliases``)
needs no build open. pymilvus is imported only when a client is first made.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
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
                try:
                    _clients[key] = MilvusClient(uri=self.uri, token=self.token or "", timeout=30)
                except Exception as exc:
                    log.debug("connecting to Milvus at %s failed: %s", self.uri, exc)
                    raise MMSearchError(
                        f"Cannot reach Milvus at {self.uri}. Start the server, or set "
                        "MMSEARCH_MILVUS_URI (and MMSEARCH_MILVUS_TOKEN or "
                        "MMSEARCH_MILVUS_TOKEN_FILE) to a reachable one."
                    ) from None
            return _clients[key]


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
