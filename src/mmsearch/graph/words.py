"""How the graph cuts text into words, shared by entity building, phrase mining, text
matching and query recognition, so a phrase found in a description is spelled the same
way when a query names it."""

from __future__ import annotations

import re

_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[\w][\w'&.-]*", re.UNICODE)
# Where a phrase cannot run on: sentence and clause punctuation, brackets, slashes.
_BREAKS = re.compile(r"[.,;:!?()\[\]{}\"/]+(?:\s|$)|[()\[\]{}\"/;:!?]")


def normalise_value(text: str) -> str:
    """What makes two spellings one entity: case and runs of spaces."""
    return _SPACES.sub(" ", text.strip().lower())


def query_words(text: str) -> list[str]:
    """The normalised words of ``text``, with leading and trailing dots, quotes and
    hyphens taken off each."""
    return [w.strip(".'-") for w in _WORD.findall(normalise_value(text)) if w.strip(".'-")]


def text_segments(text: str) -> list[list[str]]:
    """``text`` as runs of words between punctuation: a phrase never spans "layer. The"
    or "(mach 3)", so neither mining nor matching joins words across a break."""
    segments = (query_words(part) for part in _BREAKS.split(normalise_value(text)))
    return [words for words in segments if words]
