"""`overcast logs` against a fake API, the line format, and the client's SSE reading (token
refresh on a stream, errors, event parsing)."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

import httpx
import pytest

from overcast.cli.log_commands import format_entry
from overcast.client import ApiError, ApiUnreachable, OvercastClient, Tokens
from overcast.client.resources import LogEntry
from overcast.client.session import sse_data
from tests.unit.cli.fake_server import API, FakeApi, cf_error, fake_api, run, sse, with_app

__all__ = ["fake_api"]  # the fixture, used by name

# 2025-11-21T10:00:00.123456789Z
NANOS = 1_763_719_200_123_456_789
LINE_FORMAT = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\d[+-]\d{4} \[(\S+)\] (OUT|ERR) (.*)$"
)


def entry(text: str, *, stream: str = "stdout", source: str = "APP/PROC/WEB/0") -> dict[str, Any]:
    return {
        "timestamp": "2025-11-21T10:00:00.123456789Z",
        "timestamp_ns": NANOS,
        "source": source,
        "stream": stream,
        "line": text,
        "instance_guid": "instance-1",
    }


def log_lines(output: str) -> list[tuple[str, str, str]]:
    found = []
    for line in output.splitlines():
        match = LINE_FORMAT.match(line)
        if match:
            found.append((match.group(1), match.group(2), match.group(3)))
    return found


def test_the_cf_logs_line_format() -> None:
    assert (
        format_entry(LogEntry(**entry("hello")), tz=UTC)  # type: ignore[typeddict-item]
        == "2025-11-21T10:00:00.12+0000 [APP/PROC/WEB/0] OUT hello"
    )
    err = entry("boom", stream="stderr", source="STG")
    assert format_entry(err, tz=UTC) == "2025-11-21T10:00:00.12+0000 [STG] ERR boom"  # type: ignore[arg-type]
    # Without timestamp_ns, the RFC 3339 text is read (nine digits are fine).
    del err["timestamp_ns"]
    assert format_entry(err, tz=UTC).startswith("2025-11-21T10:00:00.12+0000")  # type: ignore[arg-type]


def test_logs_recent(fake_api: FakeApi) -> None:
    with_app(fake_api)
    fake_api.on(
        "GET",
        "/v3/x/apps/app-guid/logs",
        {"resources": [entry("one"), entry("two", stream="stderr", source="API")]},
    )
    result = run("logs", "web", "--recent")
    assert result.exit_code == 0, result.output
    assert "Retrieving logs for app web in org acme / space dev as dev-user..." in result.output
    assert log_lines(result.output) == [("APP/PROC/WEB/0", "OUT", "one"), ("API", "ERR", "two")]
    (request,) = [r for r in fake_api.requests if r.url.path.endswith("/logs")]
    assert request.url.params["limit"] == "1000"


def test_logs_streams_until_ctrl_c(fake_api: FakeApi) -> None:
    with_app(fake_api)
    fake_api.on(
        "GET",
        "/v3/x/apps/app-guid/logs/stream",
        sse([entry("one"), entry("two [bold]x[/bold]")], then=KeyboardInterrupt()),
    )
    result = run("logs", "web")
    assert result.exit_code == 0, result.output
    assert log_lines(result.output) == [
        ("APP/PROC/WEB/0", "OUT", "one"),
        ("APP/PROC/WEB/0", "OUT", "two [bold]x[/bold]"),  # printed as is, never as markup
    ]
    (request,) = [r for r in fake_api.requests if r.url.path.endswith("/stream")]
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["authorization"] == "bearer access"


def test_logs_fails_when_the_server_ends_the_stream(fake_api: FakeApi) -> None:
    with_app(fake_api)
    fake_api.on("GET", "/v3/x/apps/app-guid/logs/stream", sse([entry("one")]))
    result = run("logs", "web")
    assert result.exit_code == 1
    assert log_lines(result.output) == [("APP/PROC/WEB/0", "OUT", "one")]
    assert result.stderr.strip() == "The log stream of app web was closed by the server"


def test_logs_errors(fake_api: FakeApi) -> None:
    with_app(fake_api)
    result = run("logs", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == "App 'nope' not found in space 'dev'"
    fake_api.on(
        "GET",
        "/v3/x/apps/app-guid/logs/stream",
        cf_error(403, 10003, "CF-NotAuthorized", "You are not authorized to perform the action"),
    )
    result = run("logs", "web")
    assert result.exit_code == 1
    assert result.stderr.strip() == "You are not authorized to perform the action"


# --- the client ------------------------------------------------------------------------------


def test_sse_parsing() -> None:
    lines = [
        ": keepalive",
        "",
        "event: log",
        "data: one",
        "",
        "data:two",
        "data: more",
        "id: 7",
        "",
        "",
        "data: last without a blank line",
    ]
    assert list(sse_data(lines)) == ["one", "two\nmore", "last without a blank line"]


class StreamServer:
    """A token endpoint plus one log stream that refuses the first (expired) token."""

    def __init__(self) -> None:
        self.grants = 0
        self.stream_requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(200, json={"links": {"login": {"href": "http://login.test"}}})
        if request.url.host == "login.test":
            self.grants += 1
            return httpx.Response(200, json={"access_token": "fresh", "token_type": "bearer"})
        self.stream_requests.append(request)
        if request.headers["authorization"] != "bearer fresh":
            return cf_error(401, 1000, "CF-InvalidAuthToken", "Invalid Auth Token")
        return sse([entry("after refresh")])


def test_a_stream_refreshes_an_expired_token_once() -> None:
    server = StreamServer()
    saved: list[Tokens] = []
    client = OvercastClient(
        API,
        tokens=Tokens("expired", "refresh-1"),
        token_listener=saved.append,
        transport=httpx.MockTransport(server.handle),
    )
    with client:
        got = list(client.stream_logs("app-guid", recent=5))
    assert [item["line"] for item in got] == ["after refresh"]
    assert server.grants == 1
    assert [t.access_token for t in saved] == ["fresh"]
    assert [r.headers["authorization"] for r in server.stream_requests] == [
        "bearer expired",
        "bearer fresh",
    ]
    assert server.stream_requests[-1].url.params["recent"] == "5"


def test_a_stream_error_is_an_api_error() -> None:
    def handle(_request: httpx.Request) -> httpx.Response:
        return cf_error(404, 10010, "CF-ResourceNotFound", "App not found")

    client = OvercastClient(API, tokens=Tokens("t"), transport=httpx.MockTransport(handle))
    with client, pytest.raises(ApiError) as raised:
        next(client.stream_logs("app-guid"))
    assert (raised.value.status, raised.value.detail) == (404, "App not found")


def test_a_dropped_stream_is_unreachable() -> None:
    def body() -> Any:
        yield b'data: {"line": "x"}\n\n'
        raise httpx.ReadError("connection reset")

    def handle(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body())

    with OvercastClient(API, tokens=Tokens("t"), transport=httpx.MockTransport(handle)) as client:
        stream = client.stream_logs("app-guid")
        assert next(stream)["line"] == "x"
        with pytest.raises(ApiUnreachable, match="connection reset"):
            next(stream)


def test_recent_logs_and_stats_calls() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"resources": []})

    with OvercastClient(API, tokens=Tokens("t"), transport=httpx.MockTransport(handle)) as client:
        assert client.recent_logs("a", 5) == []
        assert client.process_stats("p") == []
        assert client.app_process_stats("a", "worker") == []
        client.restart_instance("p", 3)
    assert seen == [
        f"{API}/v3/x/apps/a/logs?limit=5",
        f"{API}/v3/processes/p/stats",
        f"{API}/v3/apps/a/processes/worker/stats",
        f"{API}/v3/processes/p/instances/3",
    ]
