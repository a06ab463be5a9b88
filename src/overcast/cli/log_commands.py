"""logs: an app's log lines, recent or live, printed the way `cf logs` prints them."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, tzinfo
from typing import Annotated

import typer

from overcast.cli import render
from overcast.cli.app_commands import AppName, find_app
from overcast.cli.context import add_commands, current
from overcast.cli.errors import CliError
from overcast.client.resources import LogEntry

# What the API keeps per app, and so the most `--recent` can show.
RECENT_LINES = 1000
STREAMS = {"stdout": "OUT", "stderr": "ERR"}


def _moment(entry: LogEntry) -> datetime:
    nanos = entry.get("timestamp_ns")
    if isinstance(nanos, int):
        return datetime.fromtimestamp(nanos // 1_000_000_000, UTC).replace(
            microsecond=(nanos % 1_000_000_000) // 1000
        )
    text = entry.get("timestamp") or ""
    try:
        # RFC 3339 with up to nine fractional digits: Python reads at most six.
        head, _, fraction = text.rstrip("Z").partition(".")
        micros = int((fraction + "000000")[:6]) if fraction else 0
        return datetime.fromisoformat(head).replace(tzinfo=UTC, microsecond=micros)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def format_entry(entry: LogEntry, *, tz: tzinfo | None = None) -> str:
    """`2026-11-21T10:00:00.12+0000 [APP/PROC/WEB/0] OUT line`: local time to the hundredth
    of a second (as `cf logs` prints it), the source, OUT or ERR, and the line."""
    moment = _moment(entry).astimezone(tz)
    hundredths = moment.microsecond // 10_000
    stamp = f"{moment:%Y-%m-%dT%H:%M:%S}.{hundredths:02d}{moment:%z}"
    stream = STREAMS.get(entry.get("stream", "stdout"), "OUT")
    return f"{stamp} [{entry.get('source', '?')}] {stream} {entry.get('line', '')}"


def _print(entry: LogEntry) -> None:
    # Plain writes, flushed per line: the lines are the app's own text, never markup, and a
    # reader piping `overcast logs` into grep wants each line as it comes.
    sys.stdout.write(format_entry(entry) + "\n")
    sys.stdout.flush()


def logs(
    name: AppName,
    recent: Annotated[
        bool,
        typer.Option("--recent", help="Show the recent lines and exit, instead of streaming."),
    ] = False,
) -> None:
    """Show an app's log lines: stream them as they come until Ctrl-C, or (--recent) print
    the recent ones."""
    ctx = current()
    org, space = ctx.require_org(), ctx.require_space()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        user = ctx.config.username or "?"
        render.line(
            f"Retrieving logs for app {name} in org {org.name} / space {space.name} as {user}..."
        )
        render.line()
        if recent:
            for entry in client.recent_logs(found["guid"], RECENT_LINES):
                _print(entry)
            return
        stream = client.stream_logs(found["guid"])
        try:
            for entry in stream:
                _print(entry)
        except KeyboardInterrupt:
            return  # Ctrl-C is how a stream is meant to end
        finally:
            stream.close()
    raise CliError(f"The log stream of app {name} was closed by the server")


def register(app_: typer.Typer) -> None:
    add_commands(app_, "Apps", {"logs": logs})
