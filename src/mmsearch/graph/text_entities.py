"""Entities found in text: known names and mined phrases matched in the mapping's
``entity_text_fields``.

Two sources of names: (a) the graph's own entities (attribute and tag values) whose
name reads as a name, not a common word; (b) phrases mined from the same text
(``graph/phrases.py``), at most ``mapping.entity_phrases``. A name found in an item's
text gives an entity of the field ``text:<source>`` (``text:brand`` for a brand named
in a description, ``text:phrase`` for a mined phrase) carrying that item, so a value
entity keeps exactly the items whose attribute holds it, and filters stay exact.

Matching is a dictionary lookup of every run of one to ``MAX_NAME_WORDS`` words of each
segment: linear in the text's length (at most four lookups a word), on the same words
query recognition uses, so a phrase is found in text exactly as a query would name it.
That was chosen over an Aho-Corasick automaton (``pyahocorasick``): names are whole
words, which a character automaton would need boundary checks for, and the lookup
needs no dependency.

What keeps recognition from being noise (the Cranfield measurement found only spurious
matches of attribute values): a text entity must be carried by at least ``MIN_ITEMS``
items and by at most ``MAX_ITEM_SHARE`` of them (a term on one item in ten names the
catalog's topic, not something a query singles out); a known name must be a content
word or phrase, and is dropped when text holds it on more than ``MAX_TEXT_TO_VALUE``
times the items its attribute does: a journal called "Nature" is not what "the nature
of the flow" names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from mmsearch.graph.model import Entity, EntityGraph
from mmsearch.graph.phrases import is_content_word, mine_phrases
from mmsearch.graph.words import query_words

TEXT_PREFIX = "text:"
PHRASE_FIELD = TEXT_PREFIX + "phrase"
MAX_NAME_WORDS = 4
MIN_ITEMS = 3
MAX_ITEM_SHARE = 0.1
MAX_TEXT_TO_VALUE = 3.0


@dataclass
class TextNames:
    """Names to look for, by their normalised words, each with its entity field."""

    fields: dict[tuple[str, ...], str] = field(default_factory=dict)
    value_items: dict[tuple[str, ...], int] = field(default_factory=dict)  # known names

    def add(self, words: tuple[str, ...], source: str, value_items: int | None = None) -> None:
        if words in self.fields or not 0 < len(words) <= MAX_NAME_WORDS:
            return
        self.fields[words] = TEXT_PREFIX + source
        if value_items is not None:
            self.value_items[words] = value_items

    def find(self, segments: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
        """Every name that occurs in the segments (overlaps included: "turbulent
        boundary layer" also holds "boundary layer"), each once, in text order."""
        found: dict[tuple[str, ...], None] = {}
        for words in segments:
            for start in range(len(words)):
                for size in range(1, min(MAX_NAME_WORDS, len(words) - start) + 1):
                    run = tuple(words[start : start + size])
                    if run in self.fields:
                        found.setdefault(run, None)
        return list(found)


def singular(words: tuple[str, ...]) -> tuple[str, ...]:
    """The name with a plural "s" taken off its last word (not "ss", "us" or "is":
    "glass", "radius", "analysis"), the form a name and its plural share."""
    last = words[-1]
    if len(last) > 3 and last.endswith("s") and not last.endswith(("ss", "us", "is")):
        return (*words[:-1], last[:-1])
    return words


def plural_twin(words: tuple[str, ...]) -> tuple[str, ...]:
    """The other spelling of the name: plural for a singular, singular for a plural."""
    form = singular(words)
    return (*form[:-1], form[-1] + "s") if form == words else form


def known_names(graph: EntityGraph) -> TextNames:
    """The graph's value entities whose names may be looked for in text: whole words,
    starting and ending with a content word (no stop word, number or single letter); a
    one-word name must be a word of three letters or more (an initial or an abbreviation
    such as "i.e", split off an author list, is not a name to find in prose)."""
    names = TextNames()
    for entity in graph.entities:
        words = tuple(query_words(entity.value))
        if not words or not (is_content_word(words[0]) and is_content_word(words[-1])):
            continue
        if len(words) == 1 and not (len(words[0]) >= 3 and words[0].replace("-", "").isalpha()):
            continue
        names.add(words, entity.field, len(entity.items))
    return names


def add_text_entities(
    graph: EntityGraph,
    per_item: list[list[int]],
    segments: Sequence[Sequence[Sequence[str]]],
    *,
    phrases: int,
    max_per_item: int,
) -> int:
    """Add the text entities of every item to ``graph`` and to ``per_item`` (each
    item's entities, for co-occurrence; the rarest text entities first, within
    ``max_per_item``); returns how many phrases were mined."""
    names = known_names(graph)
    mined = mine_phrases(segments, limit=phrases)
    for phrase in mined:
        words = tuple(phrase.text.split(" "))
        for spelling in (words, plural_twin(words)):
            names.add(spelling, PHRASE_FIELD.removeprefix(TEXT_PREFIX))
    # One entity per name and its plural ("boundary layer", "boundary layers"): the
    # recogniser reads either spelling in a query as either, so an entity kept for the
    # rarer spelling alone would stand for the whole term with a fraction of its items.
    raw = [names.find(item) for item in segments]
    found = [list(dict.fromkeys(singular(name) for name in item)) for item in raw]
    spellings = Counter(name for item in raw for name in item)
    holders = Counter(form for item in found for form in item)
    most = MAX_ITEM_SHARE * len(segments)
    kept: dict[tuple[str, ...], int] = {}
    for form, count in holders.items():
        variants = [n for n in (form, plural_twin(form)) if n in names.fields]
        values = max((names.value_items.get(n, 0) for n in variants), default=0)
        if count < MIN_ITEMS or count > most:
            continue
        if any(n in names.value_items for n in variants) and count > MAX_TEXT_TO_VALUE * values:
            continue
        label = " ".join(max(variants, key=lambda n: (spellings[n], -len(n))))
        number = kept[form] = len(graph.entities)
        graph.entities.append(Entity(field=names.fields[variants[0]], value=label, label=label))
    size = {number: holders[form] for form, number in kept.items()}
    for row, item in enumerate(found):
        numbers = [kept[form] for form in item if form in kept]
        for number in numbers:
            graph.entities[number].items.append(row)
        numbers.sort(key=lambda n: (size[n], n))
        room = max(0, max_per_item - len(per_item[row]))
        per_item[row] = per_item[row] + numbers[:room]
    return len(mined)
