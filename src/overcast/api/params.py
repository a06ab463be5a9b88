"""Query parameters of list endpoints, parsed strictly: unknown parameters, bad pages and bad
orderings are a 400 CF-BadQueryParameter, never ignored."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from overcast.models.errors import BadQueryParameter
from overcast.models.query import ListQuery

MAX_PER_PAGE = 5000
DEFAULT_PER_PAGE = 50
_TIMESTAMP_FILTER = re.compile(r"^(created_ats|updated_ats)\[(lt|lte|gt|gte)\]$")
_PAGING = frozenset({"page", "per_page", "order_by", "include"})
# cloudfoundry-client's CLI sends the singular `name`; CC would refuse it, we read it as `names`.
_ALIASES = {"name": "names"}


@dataclass(frozen=True)
class ListRequest:
    query: ListQuery
    includes: frozenset[str] = field(default_factory=frozenset)


def _int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadQueryParameter(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadQueryParameter(f"{name} must be between {low} and {high}")
    return value


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadQueryParameter(f"Invalid timestamp {text!r}; use YYYY-MM-DDThh:mm:ssZ") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _single(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadQueryParameter(f"{name} was given more than once")
    return values[0]


def parse_list(
    params: Mapping[str, list[str]],
    *,
    filters: Iterable[str],
    order_by: Iterable[str] = ("created_at", "updated_at"),
    includes: Iterable[str] = (),
    timestamps: bool = True,
) -> ListRequest:
    allowed_filters = frozenset(filters)
    allowed_orders = frozenset(order_by)
    allowed_includes = frozenset(includes)
    unknown = []
    parsed_filters: dict[str, list[str]] = {}
    comparisons: list[tuple[str, str, datetime]] = []
    for raw_name, values in params.items():
        name = _ALIASES.get(raw_name, raw_name) if raw_name not in allowed_filters else raw_name
        if name in _PAGING:
            continue
        match = _TIMESTAMP_FILTER.match(name)
        if match and timestamps:
            column = match.group(1)[:-1]  # created_ats -> created_at
            comparisons.extend((column, match.group(2), _timestamp(v)) for v in values)
        elif name in allowed_filters:
            items = [item for value in values for item in value.split(",")]
            parsed_filters.setdefault(name, []).extend(item for item in items if item != "")
        else:
            unknown.append(raw_name)
    if unknown:
        valid = ", ".join(sorted(allowed_filters | _PAGING - ({"include"} - allowed_includes)))
        raise BadQueryParameter(
            f"Unknown query parameter(s): {', '.join(repr(u) for u in sorted(unknown))}. "
            f"Valid parameters are: {valid}"
        )
    page_text = _single(params, "page")
    per_page_text = _single(params, "per_page")
    order_text = _single(params, "order_by") or "created_at"
    descending = order_text.startswith("-")
    order_column = order_text.lstrip("+-")
    if order_column not in allowed_orders:
        raise BadQueryParameter(
            f"Order by can only be: {', '.join(repr(o) for o in sorted(allowed_orders))}"
        )
    include_text = _single(params, "include")
    wanted_includes = frozenset(i for i in (include_text or "").split(",") if i)
    if wanted_includes - allowed_includes:
        choices = ", ".join(sorted(allowed_includes)) or "none"
        raise BadQueryParameter(f"Invalid included resource; valid values are: {choices}")
    query = ListQuery(
        filters=parsed_filters,
        page=_int("Page", page_text, 1, 10**9) if page_text is not None else 1,
        per_page=(
            _int("Per page", per_page_text, 1, MAX_PER_PAGE)
            if per_page_text is not None
            else DEFAULT_PER_PAGE
        ),
        order_by=order_column,
        descending=descending,
        timestamps=comparisons,
    )
    return ListRequest(query=query, includes=wanted_includes)


def no_query(params: Mapping[str, list[str]], allowed: Iterable[str] = ()) -> None:
    """Single-resource endpoints: refuse parameters they do not take."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise BadQueryParameter(
            f"Unknown query parameter(s): {', '.join(repr(u) for u in unknown)}"
        )
