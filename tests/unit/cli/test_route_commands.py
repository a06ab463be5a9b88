"""`routes`, `map-route`, `unmap-route`, `delete-route`, `domains` and `create-domain` against
a fake API: the client calls they make, what they print, and their failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from overcast.cli import route_commands
from overcast.cli.route_commands import normalize_path, route_text
from tests.unit.cli.fake_server import (
    SPACE,
    FakeApi,
    FakeContext,
    app_resource,
    cf_error,
    page,
    run,
    with_app,
)

DOMAIN = "apps.example.com"


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi()
    context = FakeContext(tmp_path / "home", fake)
    monkeypatch.setattr(route_commands, "current", lambda: context)
    return fake


def domain_resource(
    name: str = DOMAIN, guid: str = "domain-guid", org_guid: str | None = None
) -> dict[str, Any]:
    return {
        "guid": guid,
        "name": name,
        "internal": False,
        "supported_protocols": ["http"],
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "metadata": {"labels": {}, "annotations": {}},
        "relationships": {
            "organization": {"data": {"guid": org_guid} if org_guid else None},
            "shared_organizations": {"data": []},
        },
        "links": {},
    }


def route_resource(
    host: str = "shop",
    path: str = "",
    guid: str = "route-guid",
    apps: tuple[str, ...] = (),
    domain_guid: str = "domain-guid",
) -> dict[str, Any]:
    return {
        "guid": guid,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "protocol": "http",
        "port": None,
        "host": host,
        "path": path,
        "url": route_text(host, DOMAIN, path),
        "destinations": [
            {
                "guid": f"dest-{app}",
                "app": {"guid": app, "process": {"type": "web"}},
                "weight": None,
                "port": 8080,
                "protocol": "http1",
            }
            for app in apps
        ],
        "options": {},
        "metadata": {"labels": {}, "annotations": {}},
        "relationships": {
            "space": {"data": {"guid": SPACE.guid}},
            "domain": {"data": {"guid": domain_guid}},
        },
        "links": {},
    }


def with_domain(api: FakeApi, *domains: dict[str, Any]) -> None:
    known = list(domains) or [domain_resource()]

    def listing(request: httpx.Request) -> httpx.Response:
        names = request.url.params.get("names")
        guids = request.url.params.get("guids")
        found = [
            d
            for d in known
            if (names is None or d["name"] in names.split(","))
            and (guids is None or d["guid"] in guids.split(","))
        ]
        return page(found)

    api.on("GET", "/v3/domains", listing)


def with_routes(api: FakeApi, *routes: dict[str, Any]) -> None:
    def listing(request: httpx.Request) -> httpx.Response:
        hosts = request.url.params.get("hosts")
        paths = request.url.params.get("paths")
        found = [
            r
            for r in routes
            if (hosts is None or r["host"] in hosts.split(","))
            and (paths is None or r["path"] in paths.split(","))
        ]
        return page(found)

    api.on("GET", "/v3/routes", listing)


def bodies(api: FakeApi, method: str, path: str) -> list[Any]:
    return [
        json.loads(r.content) for r in api.requests if r.method == method and r.url.path == path
    ]


def test_route_text_and_paths() -> None:
    assert route_text("shop", DOMAIN, "") == f"shop.{DOMAIN}"
    assert route_text("", DOMAIN, "/docs") == f"{DOMAIN}/docs"
    assert normalize_path("api") == "/api" and normalize_path("/api") == "/api"
    assert normalize_path("") == ""


def test_routes_lists_the_space_routes_with_their_apps(api: FakeApi) -> None:
    with_domain(api)
    with_routes(
        api,
        route_resource("shop", apps=("app-guid",)),
        route_resource("", "/docs", guid="r2"),
    )
    api.on("GET", "/v3/apps", page([app_resource("web")]))
    result = run("routes")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["host", "domain", "port", "path", "protocol", "apps"]
    assert lines[2].split() == ["shop", DOMAIN, "http", "web"]
    assert lines[3].split() == [DOMAIN, "/docs", "http"]
    listed = next(r for r in api.requests if r.url.path == "/v3/routes")
    assert listed.url.params["space_guids"] == SPACE.guid


def test_routes_when_there_are_none(api: FakeApi) -> None:
    with_routes(api)
    api.on("GET", "/v3/apps", page([]))
    result = run("routes")
    assert result.exit_code == 0
    assert "No routes in space dev." in result.output


def test_map_route_creates_the_route_and_maps_the_web_process(api: FakeApi) -> None:
    with_app(api)
    with_domain(api)
    with_routes(api)
    api.on("POST", "/v3/routes", httpx.Response(201, json=route_resource("shop", "/api")))
    api.on(
        "POST",
        "/v3/routes/route-guid/destinations",
        {"destinations": [], "links": {}},
    )
    result = run("map-route", "web", DOMAIN, "--hostname", "shop", "--path", "api")
    assert result.exit_code == 0, result.output
    assert f"Created route shop.{DOMAIN}/api." in result.output
    assert f"Mapped route shop.{DOMAIN}/api to app web." in result.output
    assert bodies(api, "POST", "/v3/routes") == [
        {
            "relationships": {
                "space": {"data": {"guid": SPACE.guid}},
                "domain": {"data": {"guid": "domain-guid"}},
            },
            "host": "shop",
            "path": "/api",
        }
    ]
    assert bodies(api, "POST", "/v3/routes/route-guid/destinations") == [
        {"destinations": [{"app": {"guid": "app-guid", "process": {"type": "web"}}}]}
    ]


def test_map_route_is_idempotent(api: FakeApi) -> None:
    with_app(api)
    with_domain(api)
    with_routes(api, route_resource("shop", apps=("app-guid",)))
    result = run("map-route", "web", DOMAIN, "-n", "shop")
    assert result.exit_code == 0, result.output
    assert f"Route shop.{DOMAIN} is already mapped to app web." in result.output
    assert api.paths("POST") == []


def test_map_route_to_an_existing_route(api: FakeApi) -> None:
    with_app(api)
    with_domain(api)
    # The listing matches by host only: the exact route (no path) is chosen.
    with_routes(api, route_resource("shop", "/other", guid="r0"), route_resource("shop"))
    api.on("POST", "/v3/routes/route-guid/destinations", {"destinations": [], "links": {}})
    result = run("map-route", "web", DOMAIN, "-n", "shop")
    assert result.exit_code == 0, result.output
    assert "Created" not in result.output
    assert api.paths("POST") == ["/v3/routes/route-guid/destinations"]


def test_map_route_failures(api: FakeApi) -> None:
    with_app(api)
    with_domain(api)
    with_routes(api)
    result = run("map-route", "ghost", DOMAIN, "-n", "shop")
    assert result.exit_code == 1
    assert "App 'ghost' not found in space 'dev'" in result.output
    result = run("map-route", "web", "nope.example.com", "-n", "shop")
    assert result.exit_code == 1
    assert "Domain 'nope.example.com' not found" in result.output
    api.on(
        "POST",
        "/v3/routes",
        cf_error(
            422,
            210003,
            "CF-RouteHostTaken",
            f"Route already exists with host 'shop' for domain '{DOMAIN}'.",
        ),
    )
    result = run("map-route", "web", DOMAIN, "-n", "shop")
    assert result.exit_code == 1
    assert "Route already exists with host 'shop'" in result.output


def test_unmap_route(api: FakeApi) -> None:
    with_app(api)
    with_domain(api)
    with_routes(api, route_resource("shop", apps=("app-guid", "other-guid")))
    api.on("DELETE", "/v3/routes/route-guid/destinations/dest-app-guid", httpx.Response(204))
    result = run("unmap-route", "web", DOMAIN, "--hostname", "shop")
    assert result.exit_code == 0, result.output
    assert f"Unmapped route shop.{DOMAIN} from app web." in result.output
    assert api.paths("DELETE") == ["/v3/routes/route-guid/destinations/dest-app-guid"]


def test_unmap_route_not_mapped_or_missing(api: FakeApi) -> None:
    with_app(api)
    with_domain(api)
    with_routes(api, route_resource("shop"))
    result = run("unmap-route", "web", DOMAIN, "-n", "shop")
    assert result.exit_code == 0
    assert f"Route shop.{DOMAIN} is not mapped to app web." in result.output
    result = run("unmap-route", "web", DOMAIN, "-n", "cart")
    assert result.exit_code == 1
    assert f"Route cart.{DOMAIN} does not exist" in result.output
    assert api.paths("DELETE") == []


def test_delete_route_waits_for_its_job(api: FakeApi) -> None:
    with_domain(api)
    with_routes(api, route_resource("", "/docs"))
    api.on(
        "DELETE",
        "/v3/routes/route-guid",
        httpx.Response(202, headers={"Location": "http://api.test/v3/jobs/job-1"}),
    )
    api.on("GET", "/v3/jobs/job-1", {"guid": "job-1", "state": "COMPLETE", "errors": []})
    result = run("delete-route", DOMAIN, "--path", "/docs", "-f")
    assert result.exit_code == 0, result.output
    assert f"Deleted route {DOMAIN}/docs." in result.output
    assert "/v3/jobs/job-1" in api.paths("GET")


def test_delete_route_failures(api: FakeApi) -> None:
    with_domain(api)
    with_routes(api, route_resource("shop"))
    result = run("delete-route", DOMAIN, "-n", "shop")
    assert result.exit_code == 1
    assert "pass -f" in result.output
    result = run("delete-route", DOMAIN, "-n", "cart", "-f")
    assert result.exit_code == 1
    assert f"Route cart.{DOMAIN} does not exist" in result.output
    api.on(
        "DELETE",
        "/v3/routes/route-guid",
        httpx.Response(202, headers={"Location": "http://api.test/v3/jobs/job-1"}),
    )
    api.on(
        "GET",
        "/v3/jobs/job-1",
        {
            "guid": "job-1",
            "state": "FAILED",
            "operation": "route.delete",
            "errors": [{"code": 10001, "title": "UnknownError", "detail": "boom"}],
        },
    )
    result = run("delete-route", DOMAIN, "-n", "shop", "-f")
    assert result.exit_code == 1
    assert "boom" in result.output
    assert api.paths("DELETE") == ["/v3/routes/route-guid"]


def test_domains_shows_availability(api: FakeApi) -> None:
    with_domain(
        api,
        domain_resource(),
        domain_resource("acme.example.com", guid="d2", org_guid="org-guid"),
    )
    api.on("GET", "/v3/organizations", page([{"guid": "org-guid", "name": "acme"}]))
    result = run("domains")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["name", "availability", "internal", "org"]
    assert lines[2].split() == [DOMAIN, "shared", "no"]
    assert lines[3].split() == ["acme.example.com", "private", "no", "acme"]


def test_create_domain(api: FakeApi) -> None:
    api.on("GET", "/v3/organizations", page([{"guid": "org-guid", "name": "acme"}]))
    api.on(
        "POST",
        "/v3/domains",
        lambda request: httpx.Response(
            201, json=domain_resource(json.loads(request.content)["name"])
        ),
    )
    result = run("create-domain", "acme.example.com", "--org", "acme")
    assert result.exit_code == 0, result.output
    assert "Created private domain acme.example.com for org acme." in result.output
    result = run("create-domain", "shared.example.com")
    assert result.exit_code == 0, result.output
    assert "Created shared domain shared.example.com." in result.output
    assert bodies(api, "POST", "/v3/domains") == [
        {
            "name": "acme.example.com",
            "internal": False,
            "relationships": {"organization": {"data": {"guid": "org-guid"}}},
        },
        {"name": "shared.example.com", "internal": False},
    ]


def test_create_domain_failures(api: FakeApi) -> None:
    api.on("GET", "/v3/organizations", page([]))
    result = run("create-domain", "acme.example.com", "--org", "ghost")
    assert result.exit_code == 1
    assert "Org 'ghost' not found" in result.output
    api.on(
        "POST",
        "/v3/domains",
        cf_error(
            403, 10003, "CF-NotAuthorized", "You are not authorized to perform the requested action"
        ),
    )
    result = run("create-domain", "shared.example.com")
    assert result.exit_code == 1
    assert "not authorized" in result.output
