"""Running CLI commands in process against a fake API (httpx.MockTransport): a logged-in,
targeted context whose clients talk to a table of routes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from overcast.cli import instance_commands, log_commands
from overcast.cli.app import build_cli
from overcast.cli.commands import register
from overcast.cli.config import ConfigStore, Named
from overcast.cli.context import CliContext
from overcast.client import OvercastClient
from overcast.core.settings import CliSettings

API = "http://api.test"
ORG = Named("org-guid", "acme")
SPACE = Named("space-guid", "dev")
Route = Callable[[httpx.Request], httpx.Response]


def page(resources: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "pagination": {
                "total_results": len(resources),
                "total_pages": 1,
                "first": {"href": f"{API}/first"},
                "last": {"href": f"{API}/last"},
                "next": None,
                "previous": None,
            },
            "resources": resources,
        },
    )


def cf_error(status: int, code: int, title: str, detail: str) -> httpx.Response:
    return httpx.Response(
        status, json={"errors": [{"code": code, "title": title, "detail": detail}]}
    )


def sse(events: Iterable[dict[str, Any]], *, then: BaseException | None = None) -> httpx.Response:
    """A text/event-stream body; `then` is raised while reading after the last event (e.g.
    KeyboardInterrupt, as a Ctrl-C would be)."""

    def body() -> Iterator[bytes]:
        yield b": keepalive\n\n"
        for item in events:
            yield b"data: " + json.dumps(item).encode() + b"\n\n"
        if then is not None:
            raise then

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


class FakeApi:
    """Routes keyed by (method, path); every request is recorded."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, route: Route | httpx.Response | dict[str, Any]) -> None:
        if isinstance(route, httpx.Response):
            response = route
            self.routes[(method, path)] = lambda _request: response
        elif isinstance(route, dict):
            body = route
            self.routes[(method, path)] = lambda _request: httpx.Response(200, json=body)
        else:
            self.routes[(method, path)] = route

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return cf_error(404, 10000, "CF-NotFound", "Unknown request")
        return route(request)

    def paths(self, method: str = "GET") -> list[str]:
        return [r.url.path for r in self.requests if r.method == method]


class FakeContext(CliContext):
    def __init__(self, home: Path, api: FakeApi) -> None:
        super().__init__(CliSettings(home=home), ConfigStore(home))
        self.api = api
        config = self.config
        config.api_url, config.username = API, "dev-user"
        config.access_token, config.refresh_token = "access", "refresh"
        config.org, config.space = ORG, SPACE

    def client(self) -> OvercastClient:
        api_url, tokens = self.require_login()
        return OvercastClient(
            api_url,
            tokens=tokens,
            token_listener=self._remember,
            transport=httpx.MockTransport(self.api.handle),
        )


def app_resource(
    name: str = "web", guid: str = "app-guid", state: str = "STARTED"
) -> dict[str, Any]:
    return {
        "guid": guid,
        "name": name,
        "state": state,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-02T00:00:00Z",
        "lifecycle": {
            "type": "buildpack",
            "data": {"buildpacks": ["python"], "stack": "overcast-linux"},
        },
        "relationships": {"space": {"data": {"guid": SPACE.guid}}},
        "metadata": {"labels": {}, "annotations": {}},
        "links": {},
    }


def process_resource(
    process_type: str = "web", guid: str = "process-guid", instances: int = 2
) -> dict[str, Any]:
    return {
        "guid": guid,
        "type": process_type,
        "command": None,
        "instances": instances,
        "memory_in_mb": 256,
        "disk_in_mb": 1024,
        "log_rate_limit_in_bytes_per_second": -1,
        "health_check": {"type": "port", "data": {}},
        "relationships": {"app": {"data": {"guid": "app-guid"}}},
        "metadata": {"labels": {}, "annotations": {}},
        "version": "v1",
        "links": {},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }


def with_app(api: FakeApi, app: dict[str, Any] | None = None) -> None:
    """`GET /v3/apps?names=...` finds `app` (or nothing for other names)."""
    found = app or app_resource()

    def apps(request: httpx.Request) -> httpx.Response:
        names = request.url.params.get("names", "")
        return page([found] if found["name"] in names.split(",") else [])

    api.on("GET", "/v3/apps", apps)
    api.on("GET", f"/v3/apps/{found['guid']}/routes", page([]))


@pytest.fixture
def fake_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    api = FakeApi()
    context = FakeContext(tmp_path / "home", api)
    for module in (instance_commands, log_commands):
        monkeypatch.setattr(module, "current", lambda: context)
    return api


def run(*args: str, input: str | None = None) -> Result:
    """`overcast ARGS` in process; `input` is its (piped, not a terminal) stdin."""
    cli = build_cli()
    register(cli)
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
