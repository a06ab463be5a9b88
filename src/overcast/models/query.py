"""Value types of list queries: filters, paging, ordering, and a page of results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ListQuery:
    """Filters are ANDed across names and ORed within one name's values. An empty tuple of
    values means "matches nothing" (used for visibility: a user who sees no space)."""

    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    page: int = 1
    per_page: int = 50
    order_by: str = "created_at"
    descending: bool = False
    # Timestamp comparisons: (column, operator, value), operator one of lt, lte, gt, gte.
    timestamps: Sequence[tuple[str, str, datetime]] = ()


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
