from __future__ import annotations

import secrets
import uuid


def new_guid() -> str:
    return str(uuid.uuid4())


def new_context_id() -> str:
    """Short id that ties together every log line of one request or job, across processes."""
    return secrets.token_hex(8)
