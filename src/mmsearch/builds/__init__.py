"""The build lifecycle: which build answers, how a build gets there, and what it holds.

A collection's builds are versions of its index. This package owns everything that
moves between them or describes them: the aliases (``live``, ``canary``, ``previous``)
and their switch log (``lifecycle``), the run history of a build (``history``),
listing, diff and prune (``listing``), the publish gate (``gate*``) and gated
publishing (``publishing``), canary routing figures and rollback guards (``canary``,
``canary_report``), and item lineage (``lineage``).

Layering: ``builds`` sits below ``ingest`` (which writes builds and asks here which one
to write) and above ``monitoring``, ``governance``, ``evaluation`` and ``search`` (which
it uses to judge a build); nothing below imports it.
"""

from __future__ import annotations
