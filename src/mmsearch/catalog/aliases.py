"""Codes and aliases: exact names of items held in catalog fields other than the title.

A query such as ``flag-eg`` or ``tada`` names an item by a code its catalog stores in
another field; BM25 splits such a name into common tokens and ranks it weakly, so the
mapping's ``aliases`` fields are stored apart, normalised, and matched whole.

The build stores an item's aliases in one text column, ``alias_keys``, as
``|key|key|`` (each key lower case and trimmed; ``|`` never occurs inside a key, being
one of the separators), so that one ``LIKE '%|key|%'`` node finds an item by any of its
keys inside the store (``search/searcher.py``), under the same filter tree (ACL,
moderation) as every retriever.
The column is NULL for an item without aliases.
"""

from __future__ import annotations

import re

ALIAS_COLUMN = "alias_keys"
# Separators of several aliases given in one text value.
_SPLIT = re.compile(r"[,;|]")
# ``:code:``-style tokens inside a longer query.
_CODE_TOKEN = re.compile(r":([^\s:]+):")
MAX_ALIAS_CHARS = 200


def normalise_aliases(value: object) -> list[str]:
    """The keys of one field's value: a list, or text split on ``,`` ``;`` ``|``;
    lower case and trimmed, empty ones dropped, first occurrence kept."""
    if value is None or isinstance(value, bool):
        return []
    values = value if isinstance(value, list) else [value]
    keys: list[str] = []
    for one in values:
        if one is None or isinstance(one, bool | dict | list):
            continue
        keys += [part.strip().lower() for part in _SPLIT.split(str(one))]
    return list(dict.fromkeys(k for k in keys if k and len(k) <= MAX_ALIAS_CHARS))


def encode_keys(keys: list[str]) -> str | None:
    """The stored ``alias_keys`` value: ``|a|b|``, or None when there is no key."""
    return f"|{'|'.join(keys)}|" if keys else None


def decode_keys(stored: str | None) -> list[str]:
    return [key for key in (stored or "").split("|") if key]


def query_keys(text: str) -> list[str]:
    """The aliases a query may name: the whole normalised query, then each ``:code:``
    token in it (``:tada:`` also names ``tada``)."""
    whole = text.strip().lower()
    if not whole or len(whole) > MAX_ALIAS_CHARS:
        return []
    keys = [whole, *(m.group(1) for m in _CODE_TOKEN.finditer(whole))]
    keys = [key for key in keys if not _SPLIT.search(key)]
    return list(dict.fromkeys(keys))


def like_key(key: str) -> str:
    """The key as a LIKE pattern's literal part: a ``%``, ``_`` or ``\\`` becomes the
    one-character wildcard ``_`` (stores disagree on LIKE escapes), so a match may be a
    near key: readers keep only rows whose stored keys hold the query's key exactly."""
    return re.sub(r"[%_\\\\]", "_", key)
