"""Which retrievers answer a request, given what the build holds.

A retriever is a (query modality → store column) pair: the keyword retriever runs
BM25 over ``search_text``; a vector retriever embeds the query with the encoder of a
role and searches that role's vector column. Planning is separate from running so
that evaluation can compare subsets of signals on equal terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mmsearch.errors import QueryError
from mmsearch.index.schema import vector_column

KEYWORD, TEXT_VECTOR, IMAGE_VECTOR = "keyword", "text_vector", "image_vector"
QueryModality = Literal["text", "image"]


@dataclass(frozen=True)
class RetrieverPlan:
    name: str
    kind: Literal["keyword", "vector"]
    query_modality: QueryModality
    role: str | None = None  # encoder role whose vectors are searched

    @property
    def column(self) -> str | None:
        return vector_column(self.role) if self.role else None


def plan_retrievers(
    *,
    has_text: bool,
    has_image: bool,
    encoders: dict[str, dict[str, Any]],
    only: list[str] | None = None,
) -> list[RetrieverPlan]:
    """Every retriever the query and the build allow, optionally narrowed to ``only``."""
    plans: list[RetrieverPlan] = []
    if has_text:
        plans.append(RetrieverPlan(KEYWORD, "keyword", "text"))
        if "text" in encoders:
            plans.append(RetrieverPlan(TEXT_VECTOR, "vector", "text", "text"))
    if has_image:
        if "image" not in encoders:
            raise QueryError("This collection has no image vectors; search it by text.")
        plans.append(RetrieverPlan(IMAGE_VECTOR, "vector", "image", "image"))
    if only is not None:
        known = {plan.name for plan in plans}
        unknown = [name for name in only if name not in known]
        if unknown:
            raise QueryError(
                f"Signal(s) {', '.join(unknown)} cannot answer this query; "
                f"available: {', '.join(sorted(known)) or 'none'}."
            )
        plans = [plan for plan in plans if plan.name in only]
    return plans
