"""Output: Rich tables for lists, aligned key/value lines for single objects. Every value is
printed as plain Text, so names such as `[hidden]` or `[bold]` are never read as markup."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Piped output is read by scripts and tests: wide enough that no column is cut.
PIPE_WIDTH = 200


@cache
def console() -> Console:
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = PIPE_WIDTH
    return out


def line(text: str = "", *, style: str | None = None) -> None:
    console().print(Text(text, style=style or ""), soft_wrap=True)


def heading(text: str) -> None:
    line(text, style="bold")


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(Text(cell) for cell in row))
    console().print(grid)


def key_values(pairs: Sequence[tuple[str, str]], *, indent: int = 0) -> None:
    """`name:   value` lines, the values aligned in one column."""
    width = max((len(key) for key, _ in pairs), default=0) + 1
    for key, value in pairs:
        line(f"{' ' * indent}{key + ':':<{width}}  {value}")
