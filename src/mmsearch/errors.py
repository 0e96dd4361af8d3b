"""Exceptions a user can cause. The CLI prints their message without a traceback."""

from __future__ import annotations


class MMSearchError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class CatalogError(MMSearchError):
    """The catalog as a whole cannot be read (missing file, unknown format, bad mapping)."""


class ImageError(MMSearchError):
    """One image cannot be used: missing, unreadable, too large, or corrupt."""


class EncoderError(MMSearchError):
    """An encoder cannot be created or loaded (unknown name, missing weights)."""


class CollectionNotFound(MMSearchError):
    """The named collection does not exist in the workspace."""


class QueryError(MMSearchError):
    """The query cannot be run as given (empty, bad filter, wrong modality)."""


class EvaluationError(MMSearchError):
    """Evaluation inputs are unusable (malformed queries or judgments, unknown config keys)."""
