"""structlog set-up: JSON lines (or console on a terminal), the context id on every line,
secrets masked before anything is rendered. Configured once per process by its composition
root; the standard library's loggers (uvicorn, sqlalchemy, nats) go through the same pipeline."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from overcast.models.secrets import mask

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _mask_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    masked: dict[str, Any] = mask(dict(event_dict))
    # The message itself is ours, never user data: keep it as written.
    masked["event"] = event_dict.get("event")
    return masked


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]


def configure_logging(level: str = "info", fmt: str = "auto", *, terminal: bool = False) -> None:
    """`fmt` is json, console, or auto (console when `terminal`)."""
    use_console = fmt == "console" or (fmt == "auto" and terminal)
    renderer: Any = (
        # Plain tracebacks: rich ones print local variables, which may hold secrets.
        structlog.dev.ConsoleRenderer(
            colors=terminal, exception_formatter=structlog.dev.plain_traceback
        )
        if use_console
        else structlog.processors.JSONRenderer()
    )
    shared = _shared_processors()
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # Library chatter that would drown ours; their warnings still show.
    for noisy in ("uvicorn.access", "sqlalchemy.engine", "alembic", "nats", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
