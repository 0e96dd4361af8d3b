"""What a restricted writer (an API key bound by ACL groups) may write.

Reads are guarded by the access node (``filters.expr.Visible``) inside every store
query. Writes must be guarded by the same node, or a key that may not *see* an item of
another group could still overwrite it (and so move it into its own group), plant new
items in that group, or remove it with ``sync``. The rule is one sentence: a restricted
writer writes only items it can see, before and after the write. Hence:

* a row whose id is a stored item hidden from the key is refused;
* a row may carry only the key's own groups, and must leave the item visible to the
  key (an empty acl would hide it from everyone but admins);
* a row without an acl gets the key's groups: unlabelled, the item would follow the
  collection's default access, hidden from the key itself where that is private and
  shown to every group where it is public.

Which stored items the key may write is decided by the store, with the access node in
the query (``writable_ids``), never by reading every row and filtering in Python.

A refused row reads the same whatever the reason (``NOT_WRITABLE``): an error that
said "exists" for a hidden id would confirm what every read path hides. The CLI is the
local operator and runs without a ``WriteAccess``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmsearch.filters.evaluate import ACL_COLUMN, matches
from mmsearch.filters.expr import Visible
from mmsearch.index.base import BuildIndex

NOT_WRITABLE = (
    "not writable by this key: it writes only items it can see, labelled only with "
    "its own ACL groups"
)


@dataclass(frozen=True)
class WriteAccess:
    """A restricted writer's groups, under the collection's default access."""

    groups: frozenset[str]
    default_public: bool

    @property
    def visible(self) -> Visible:
        """The access node of this writer's reads: what it may also write."""
        return Visible(self.groups, self.default_public)

    def label(self, acl: list[str] | None) -> list[str] | None:
        """The acl an item of this writer is stored with: its own groups when none is given."""
        if acl is None and self.groups:
            return sorted(self.groups)
        return acl

    def may_label(self, acl: list[str] | None) -> bool:
        """Only the writer's own groups, and the item stays visible to the writer."""
        if acl is not None and not set(acl) <= self.groups:
            return False
        return matches(self.visible, {ACL_COLUMN: acl})

    def writable_ids(self, index: BuildIndex) -> set[str]:
        """Ids of the stored items this writer may write, selected by the store itself."""
        return {str(i) for i in index.scan(["id"], self.visible).column("id").to_pylist()}
