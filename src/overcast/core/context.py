"""The context id of the current request or job, carried in structlog's context and in bus
headers (`ctx`) and HTTP headers (`X-Request-Id`), so one push can be followed everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from overcast.core.ids import new_context_id

CONTEXT_KEY = "ctx"


def current_context_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get(CONTEXT_KEY)
    return str(value) if value else None


@contextmanager
def context_scope(context_id: str | None = None, **extra: object) -> Iterator[str]:
    """Bind a context id (a new one when none is given) for the duration of the block."""
    ctx = context_id or new_context_id()
    tokens = structlog.contextvars.bind_contextvars(**{CONTEXT_KEY: ctx}, **extra)
    try:
        yield ctx
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
