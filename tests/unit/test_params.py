"""Query parameter parsing of list endpoints."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overcast.api.params import no_query, parse_list
from overcast.models.errors import BadQueryParameter


def _parse(query: dict[str, list[str]], **options: object):  # type: ignore[no-untyped-def]
    options.setdefault("filters", ("names", "guids"))
    return parse_list(query, **options)  # type: ignore[arg-type]


def test_defaults() -> None:
    parsed = _parse({})
    assert (parsed.query.page, parsed.query.per_page, parsed.query.order_by) == (
        1,
        50,
        "created_at",
    )
    assert not parsed.query.descending and parsed.includes == frozenset()


def test_filters_split_on_commas_and_merge() -> None:
    parsed = _parse({"names": ["a,b", "c"], "name": ["d"], "order_by": ["-updated_at"]})
    assert parsed.query.filters == {"names": ["a", "b", "c", "d"]}
    assert parsed.query.order_by == "updated_at" and parsed.query.descending


def test_timestamps() -> None:
    parsed = _parse({"created_ats[gte]": ["2026-01-01T00:00:00Z"]})
    ((column, operator, value),) = parsed.query.timestamps
    assert (column, operator, value.year) == ("created_at", "gte", 2026)


def test_includes() -> None:
    assert _parse(
        {"include": ["space,space.organization"]}, includes=("space", "space.organization")
    ).includes == {"space", "space.organization"}
    with pytest.raises(BadQueryParameter):
        _parse({"include": ["org"]}, includes=("space",))


@given(st.integers())
def test_per_page_range(value: int) -> None:
    if 1 <= value <= 5000:
        assert _parse({"per_page": [str(value)]}).query.per_page == value
    else:
        with pytest.raises(BadQueryParameter, match="Per page must be between 1 and 5000"):
            _parse({"per_page": [str(value)]})


@given(st.text(max_size=10).filter(lambda text: not text.strip().lstrip("+-").isdigit()))
def test_page_must_be_an_integer(text: str) -> None:
    with pytest.raises(BadQueryParameter):
        _parse({"page": [text]})


def test_unknown_parameters_are_named() -> None:
    with pytest.raises(BadQueryParameter, match="'colour'"):
        _parse({"colour": ["red"]})
    with pytest.raises(BadQueryParameter):
        no_query({"x": ["1"]})
    no_query({})
