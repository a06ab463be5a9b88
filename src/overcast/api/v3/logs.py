"""/v3/x/apps/:guid/logs: an app's recent log lines, and a live stream of them (SSE).

A line: `{"timestamp": "2026-11-21T10:00:00.123456789Z" (RFC 3339, UTC, nanoseconds),
"timestamp_ns": <Unix time in ns, an integer>, "source": "APP/PROC/WEB/0" | "STG" | "RTR" |
"API" | "CELL" | "LGR", "stream": "stdout" | "stderr", "line": ..., "instance_guid": ...|null}`.

Reading logs takes a role that may see them: admin, org manager, or space developer, manager
or auditor (404 when the app is not visible at all, 403 when it is but logs are not).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from overcast.api.deps import caller_of, controller_of, ok, params_of
from overcast.api.params import no_query
from overcast.api.presenters import Json
from overcast.controller.logs import LogBuffer, LogLine, StreamEnded
from overcast.models.errors import BadQueryParameter

router = APIRouter(tags=["logs (x)"])

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Reverse proxies (nginx) must pass events on at once instead of buffering them.
    "X-Accel-Buffering": "no",
}
KEEPALIVE = b": keepalive\n\n"


def rfc3339_nanos(unix_ns: int) -> str:
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def present_line(line: LogLine) -> Json:
    return {
        "timestamp": rfc3339_nanos(line.timestamp),
        "timestamp_ns": line.timestamp,
        "source": line.source,
        "stream": line.stream,
        "line": line.line,
        "instance_guid": line.instance_guid,
    }


def _count(params: Mapping[str, list[str]], name: str, default: int, low: int) -> int:
    values = params.get(name)
    if not values:
        return default
    if len(values) > 1:
        raise BadQueryParameter(f"{name} was given more than once")
    text = values[0]
    if not text.isdigit() or not low <= int(text) <= MAX_LIMIT:
        raise BadQueryParameter(f"{name} must be an integer between {low} and {MAX_LIMIT}")
    return int(text)


@router.get("/v3/x/apps/{guid}/logs")
async def recent_logs(request: Request, guid: str) -> JSONResponse:
    """The app's most recent lines, oldest first (`limit`: 1 to 1000, default 100)."""
    params = params_of(request)
    no_query(params, allowed=("limit",))
    limit = _count(params, "limit", DEFAULT_LIMIT, 1)
    lines = await controller_of(request).logs.recent(await caller_of(request), guid, limit)
    return ok({"resources": [present_line(line) for line in lines]})


def sse_event(line: LogLine) -> bytes:
    # json.dumps escapes newlines, so one line is always one `data:` field.
    return b"data: " + json.dumps(present_line(line)).encode() + b"\n\n"


async def _events(buffer: LogBuffer, app_guid: str, recent: int) -> AsyncIterator[bytes]:
    """Ends when the buffer stops (server shutdown); when the client goes away the server
    cancels it. The listener exists only while this runs, so neither case leaves it behind."""
    with buffer.listen(app_guid, recent=recent) as listener:
        while True:
            try:
                line = await listener.get(timeout=buffer.keepalive_seconds)
            except StreamEnded:
                return
            yield KEEPALIVE if line is None else sse_event(line)


@router.get("/v3/x/apps/{guid}/logs/stream")
async def stream_logs(request: Request, guid: str) -> StreamingResponse:
    """Server-Sent Events: one `data: <line JSON>` event per line as it arrives, after the
    last `recent` lines (0 to 1000, default 0); a `: keepalive` comment when idle."""
    params = params_of(request)
    no_query(params, allowed=("recent",))
    recent = _count(params, "recent", 0, 0)
    controller = controller_of(request)
    await controller.logs.check_readable(await caller_of(request), guid)
    return StreamingResponse(
        _events(controller.log_buffer, guid, recent),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
