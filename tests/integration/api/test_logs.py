"""Application logs over the API: recent lines, the SSE stream (over a real uvicorn, since
httpx's ASGI transport does not stream), permissions, bad input, and the `API` lines the
controller writes about changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from overcast.bus.messages import LogLine
from overcast.bus.subjects import app_logs
from overcast.client import OvercastClient, Tokens
from overcast.cmd.wiring import start_api, stop_api
from tests.integration.api.conftest import Api

# 2025-11-21T10:00:00.123456789Z
BASE_NS = 1_763_719_200_123_456_789
READ_SECONDS = 5.0


async def publish(
    api: Api,
    app_guid: str,
    text: str,
    *,
    offset: int = 0,
    source: str = "APP/PROC/WEB/0",
    stream: str = "stdout",
) -> None:
    line = LogLine(
        app_guid=app_guid,
        source=source,
        stream=stream,
        line=text,
        timestamp=BASE_NS + offset,
        instance_guid="instance-1",
    )
    await api.parts.bus.publish(app_logs(app_guid), line.wire())


async def recent(api: Api, app_guid: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.http.get(f"/v3/x/apps/{app_guid}/logs", headers=api.admin, params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["resources"])


async def wait_for_lines(api: Api, app_guid: str, count: int) -> list[dict[str, Any]]:
    for _ in range(200):
        lines = await recent(api, app_guid, limit=1000)
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} lines did not arrive; have {lines}")


async def make_app(api: Api) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    org = await api.org("acme")
    space = await api.space(org["guid"], "dev")
    app = await api.app(space["guid"], "web")
    return org, space, app


@pytest.fixture
async def server(api: Api) -> AsyncIterator[str]:
    """The harness's app behind a real uvicorn on loopback; yields its URL."""
    served, task = await start_api(api.parts.app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{served.bound_port()}"
    finally:
        await stop_api(served, task)


async def next_line(lines: AsyncIterator[str]) -> str:
    """The next non-empty line of an SSE body."""
    while True:
        line = await asyncio.wait_for(anext(lines), READ_SECONDS)
        if line:
            return line


def event(line: str) -> dict[str, Any]:
    assert line.startswith("data: "), line
    return dict(json.loads(line.removeprefix("data: ")))


async def next_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The next event, past keepalive comments."""
    while True:
        line = await next_line(lines)
        if line != ": keepalive":
            return event(line)


async def test_recent_lines_oldest_first_with_a_limit(api: Api) -> None:
    _, _, app = await make_app(api)
    guid = app["guid"]
    for number in range(5):
        await publish(api, guid, f"line {number}", offset=number)
    await publish(api, guid, "oops", offset=9, stream="stderr", source="STG")
    lines = await wait_for_lines(api, guid, 6)
    assert [line["line"] for line in lines] == [f"line {n}" for n in range(5)] + ["oops"]
    assert lines[0] == {
        "timestamp": "2025-11-21T10:00:00.123456789Z",
        "timestamp_ns": BASE_NS,
        "source": "APP/PROC/WEB/0",
        "stream": "stdout",
        "line": "line 0",
        "instance_guid": "instance-1",
    }
    assert (lines[-1]["source"], lines[-1]["stream"]) == ("STG", "stderr")
    limited = await recent(api, guid, limit=2)
    assert [line["line"] for line in limited] == ["line 4", "oops"]
    # Another app's lines are its own; an app without lines has none.
    other = await api.app(app["relationships"]["space"]["data"]["guid"], "quiet")
    assert await recent(api, other["guid"]) == []


async def test_the_default_limit_is_100(api: Api) -> None:
    _, _, app = await make_app(api)
    for number in range(120):
        await publish(api, app["guid"], f"line {number}", offset=number)
    await wait_for_lines(api, app["guid"], 120)
    lines = await recent(api, app["guid"])
    assert len(lines) == 100 and lines[-1]["line"] == "line 119"


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "limit=1&limit=2",
        "per_page=5",
    ],
)
async def test_bad_query_parameters_are_400(api: Api, query: str) -> None:
    _, _, app = await make_app(api)
    response = await api.http.get(f"/v3/x/apps/{app['guid']}/logs?{query}", headers=api.admin)
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert (error["code"], error["title"]) == (10005, "CF-BadQueryParameter")


@pytest.mark.parametrize("query", ["recent=1001", "recent=x", "limit=5"])
async def test_bad_stream_parameters_are_400(api: Api, query: str) -> None:
    _, _, app = await make_app(api)
    response = await api.http.get(
        f"/v3/x/apps/{app['guid']}/logs/stream?{query}", headers=api.admin
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["title"] == "CF-BadQueryParameter"


async def test_malformed_bus_payloads_are_dropped(api: Api) -> None:
    _, _, app = await make_app(api)
    guid = app["guid"]
    bus = api.parts.bus
    await bus.publish(app_logs(guid), {"app_guid": guid})
    await bus.publish(app_logs(guid), {"app_guid": guid, "line": 1, "timestamp": "x"})
    await bus.publish(app_logs(guid), {"source": "APP", "line": "no app", "timestamp": 1})
    await bus.publish(
        app_logs(guid),
        {"app_guid": "someone-else", "source": "APP", "line": "forged", "timestamp": 1},
    )
    await publish(api, guid, "good")
    lines = await wait_for_lines(api, guid, 1)
    assert [line["line"] for line in lines] == ["good"]
    assert api.parts.controller.log_buffer.malformed == 4


async def test_who_may_read_logs(api: Api) -> None:
    org, space, app = await make_app(api)
    guid = app["guid"]
    await publish(api, guid, "hello")
    await wait_for_lines(api, guid, 1)
    allowed: dict[str, dict[str, str]] = {}
    for role in ("space_developer", "space_manager", "space_auditor"):
        user_guid, headers = await api.user(role.replace("_", "-"))
        await api.role("organization_user", user_guid, org=org["guid"])
        assert (await api.role(role, user_guid, space=space["guid"])).status_code == 201
        allowed[role] = headers
    manager_guid, allowed["organization_manager"] = await api.user("org-manager")
    await api.role("organization_manager", manager_guid, org=org["guid"])
    for role, headers in allowed.items():
        response = await api.http.get(f"/v3/x/apps/{guid}/logs", headers=headers)
        assert response.status_code == 200, (role, response.text)
        assert [line["line"] for line in response.json()["resources"]] == ["hello"]

    supporter_guid, supporter = await api.user("supporter")
    await api.role("organization_user", supporter_guid, org=org["guid"])
    assert (
        await api.role("space_supporter", supporter_guid, space=space["guid"])
    ).status_code == 201
    org_user_guid, org_user = await api.user("org-user")
    await api.role("organization_user", org_user_guid, org=org["guid"])
    _, nobody = await api.user("nobody")
    for path in (f"/v3/x/apps/{guid}/logs", f"/v3/x/apps/{guid}/logs/stream"):
        # They see the app, but not its logs.
        forbidden = await api.http.get(path, headers=supporter)
        assert forbidden.status_code == 403, path
        assert forbidden.json()["errors"][0]["title"] == "CF-NotAuthorized"
        for headers in (org_user, nobody):
            hidden = await api.http.get(path, headers=headers)
            assert hidden.status_code == 404, path
            assert hidden.json()["errors"][0]["title"] == "CF-ResourceNotFound"
        anonymous = await api.http.get(path)
        assert anonymous.status_code == 401
    missing = await api.http.get("/v3/x/apps/no-such-app/logs", headers=api.admin)
    assert missing.status_code == 404


async def test_changes_write_api_lines_without_secrets(api: Api) -> None:
    _, _, app = await make_app(api)
    guid = app["guid"]
    headers = api.admin
    await api.droplet(guid)
    assert (await api.http.post(f"/v3/apps/{guid}/actions/start", headers=headers)).is_success
    assert (await api.http.post(f"/v3/apps/{guid}/actions/stop", headers=headers)).is_success
    assert (await api.http.post(f"/v3/apps/{guid}/actions/restart", headers=headers)).is_success
    scaled = await api.http.post(
        f"/v3/apps/{guid}/processes/web/actions/scale", headers=headers, json={"instances": 2}
    )
    assert scaled.status_code == 202
    env = await api.http.patch(
        f"/v3/apps/{guid}/environment_variables",
        headers=headers,
        json={"var": {"DB_PASSWORD": "hunter2-very-secret"}},
    )
    assert env.status_code == 200
    command = await api.http.patch(
        f"/v3/apps/{guid}/processes/web",
        headers=headers,
        json={"command": "run --token=hunter2-very-secret"},
    )
    assert command.status_code == 200, command.text
    renamed = await api.http.patch(f"/v3/apps/{guid}", headers=headers, json={"name": "web2"})
    assert renamed.status_code == 200
    expected = [
        f'Updated app with guid {guid} ({{"state": "STARTED"}})',
        f'Updated app with guid {guid} ({{"state": "STOPPED"}})',
        f"Restarted app with guid {guid}",
        f'Updated process "web" of app with guid {guid} ({{"instances": 2}})',
        f'Updated app with guid {guid} ({{"environment_variables": "[PRIVATE DATA HIDDEN]"}})',
        f'Updated process "web" of app with guid {guid} ({{"command": "[PRIVATE DATA HIDDEN]"}})',
        f'Updated app with guid {guid} ({{"name": "web2"}})',
    ]
    for _ in range(200):
        lines = await recent(api, guid, limit=1000)
        api_lines = [line["line"] for line in lines if line["source"] == "API"]
        if all(text in api_lines for text in expected):
            break
        await asyncio.sleep(0.01)
    # In this order (other changes, such as assigning the droplet, may write lines too).
    positions = [api_lines.index(text) for text in expected]
    assert positions == sorted(positions), api_lines
    assert "hunter2" not in json.dumps(lines)


async def test_the_stream_replays_recent_lines_then_follows(api: Api, server: str) -> None:
    _, _, app = await make_app(api)
    guid = app["guid"]
    for number in range(3):
        await publish(api, guid, f"old {number}", offset=number)
    await wait_for_lines(api, guid, 3)
    buffer = api.parts.controller.log_buffer
    buffer.keepalive_seconds = 0.05
    async with (
        httpx.AsyncClient(base_url=server, timeout=READ_SECONDS) as http,
        http.stream(
            "GET", f"/v3/x/apps/{guid}/logs/stream?recent=2", headers=api.admin
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        lines = response.aiter_lines()
        assert (await next_event(lines))["line"] == "old 1"
        assert (await next_event(lines))["line"] == "old 2"
        await publish(api, guid, "live", offset=10, stream="stderr")
        live = await next_event(lines)
        assert (live["line"], live["stream"], live["timestamp_ns"]) == (
            "live",
            "stderr",
            BASE_NS + 10,
        )
        assert buffer.listener_count(guid) == 1
        # Idle: a comment every keepalive_seconds.
        assert await next_line(lines) == ": keepalive"
        assert await next_line(lines) == ": keepalive"
    # The client went away: the server notices and forgets the listener.
    for _ in range(200):
        if buffer.listener_count(guid) == 0:
            break
        await asyncio.sleep(0.02)
    assert buffer.listener_count(guid) == 0


async def test_streams_end_cleanly_when_the_server_stops(api: Api) -> None:
    _, _, app = await make_app(api)
    guid = app["guid"]
    served, task = await start_api(api.parts.app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{served.bound_port()}"
    async with (
        httpx.AsyncClient(base_url=url, timeout=READ_SECONDS) as http,
        http.stream("GET", f"/v3/x/apps/{guid}/logs/stream", headers=api.admin) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        await publish(api, guid, "one")
        assert event(await next_line(lines))["line"] == "one"
        stopping = asyncio.create_task(stop_api(served, task))
        rest = [line async for line in lines if line]  # ends instead of hanging
        assert rest == []
        await asyncio.wait_for(stopping, READ_SECONDS)
    assert task.done()


async def test_the_client_reads_recent_and_streamed_lines(api: Api, server: str) -> None:
    _, _, app = await make_app(api)
    guid = app["guid"]
    await publish(api, guid, "first", offset=1)
    await wait_for_lines(api, guid, 1)
    token = api.admin["Authorization"].split(" ", 1)[1]
    client = OvercastClient(server, tokens=Tokens(token))
    try:
        recent_lines = await asyncio.to_thread(client.recent_logs, guid, 10)
        assert [line["line"] for line in recent_lines] == ["first"]
        stream = client.stream_logs(guid, recent=1)
        replayed = await asyncio.to_thread(next, stream)
        assert replayed["line"] == "first"
        pending = asyncio.create_task(asyncio.to_thread(next, stream))
        await asyncio.sleep(0.1)
        await publish(api, guid, "multi\nline", offset=2)
        streamed = await asyncio.wait_for(pending, READ_SECONDS)
        assert (streamed["line"], streamed["timestamp"]) == (
            "multi\nline",
            "2025-11-21T10:00:00.123456791Z",
        )
        stream.close()
    finally:
        client.close()
