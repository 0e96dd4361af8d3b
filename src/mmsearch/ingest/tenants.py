"""One catalog, one collection per tenant (``mmsearch ingest --split-by acl``).

Per-item ACLs keep a tenant's items out of every other tenant's results, but a
collection's keyword statistics (BM25 document frequencies) are shared by all its
items: scores a reader sees for its own items move with words that occur only in
items it may not see. Where tenants must not learn even that, each gets its own
collection, and so its own statistics. This module cuts a catalog into one JSONL file
per tenant before anything is encoded:

- a row whose ACL is one group, or a list of groups, goes to each of those tenants;
- a row with no ACL (shared, public items) goes to every tenant;
- a row that cannot be read, or a tenant whose name cannot be part of a collection
  name, stops the split with a message naming the row or the tenant, before any
  collection is created.

Each row keeps its ACL field, so item ACLs still apply inside a tenant's collection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mmsearch.catalog.item import RawRecord, RowError
from mmsearch.catalog.readers import read_catalog
from mmsearch.errors import CatalogError, MMSearchError
from mmsearch.workspace import check_collection_name

SPLIT_FIELDS = ("acl",)
MAX_TENANTS = 1_000
MAX_SHOWN_ERRORS = 5


@dataclass
class TenantSplit:
    """Where each tenant's rows went, and how many rows each got."""

    files: dict[str, Path] = field(default_factory=dict)  # tenant → its JSONL catalog
    rows: dict[str, int] = field(default_factory=dict)  # tenant → rows written for it
    shared: int = 0  # rows without an ACL, written for every tenant
    read: int = 0  # catalog rows read


def tenant_collection(base: str, tenant: str) -> str:
    """The collection that holds ``tenant``'s items of the collection ``base``."""
    return f"{base}-{tenant}"


def tenants_of(value: object) -> list[str]:
    """The tenants a row's ACL value names: a group, a list of groups, or none."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, Iterable) and not isinstance(value, bytes | dict):
        return sorted({str(group).strip() for group in value if str(group).strip()})
    return [str(value)]


def split_catalog(catalog: Path, acl_field: str, base: str, folder: Path) -> TenantSplit:
    """Write one JSONL catalog per tenant under ``folder``; refuse before writing any
    when a row is unreadable or a tenant cannot name a collection. Two streaming passes
    (tenants and errors, then rows), so a large catalog is never held in memory."""
    errors: list[RowError] = []
    error_count = 0
    tenants_seen: set[str] = set()
    for row in read_catalog(catalog):
        if isinstance(row, RowError):
            error_count += 1
            if len(errors) < MAX_SHOWN_ERRORS:
                errors.append(row)
            continue
        tenants_seen.update(tenants_of(row.data.get(acl_field)))
    if error_count:
        shown = "; ".join(f"row {e.row}: {e.reason}" for e in errors)
        raise CatalogError(
            f"{error_count} rows of {catalog.name} cannot be read, so it cannot be split by "
            f"tenant: {shown}. Fix them, or ingest without --split-by."
        )
    tenants = sorted(tenants_seen)
    if not tenants:
        raise CatalogError(
            f"No row of {catalog.name} has a value in its ACL field '{acl_field}': there is "
            "no tenant to split by. Name the field with --acl-field."
        )
    if len(tenants) > MAX_TENANTS:
        raise CatalogError(
            f"{catalog.name} names {len(tenants)} tenants; --split-by makes at most "
            f"{MAX_TENANTS} collections."
        )
    for tenant in tenants:
        try:
            check_collection_name(tenant_collection(base, tenant))
        except MMSearchError:
            raise CatalogError(
                f"The tenant {tenant!r} cannot be part of a collection name "
                f"('{tenant_collection(base, tenant)}'): use letters, digits, '-' and '_'."
            ) from None
    split = TenantSplit(files={t: folder / f"{t}.jsonl" for t in tenants})
    folder.mkdir(parents=True, exist_ok=True)
    handles = {t: path.open("w", encoding="utf-8") for t, path in split.files.items()}
    try:
        for row in read_catalog(catalog):
            assert isinstance(row, RawRecord)  # the first pass found no errors
            split.read += 1
            named = tenants_of(row.data.get(acl_field))
            line = json.dumps(row.data, ensure_ascii=False, default=str) + "\n"
            if not named:
                split.shared += 1
            for tenant in named or tenants:
                handles[tenant].write(line)
                split.rows[tenant] = split.rows.get(tenant, 0) + 1
    finally:
        for handle in handles.values():
            handle.close()
    return split
