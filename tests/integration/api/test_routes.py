"""/v3/routes and their destinations: CF shapes, filters, the address rules (uniqueness,
reserved hosts, the API host, private domains), permissions, cascades, and what the routing
tier is told (`uris_of_processes`, `route_options`, `routes_changed`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api.conftest import BASE, Api

APPS_DOMAIN = "apps.localhost"


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"errors"}, body
    (error,) = body["errors"]
    return dict(error)


class World:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.org: dict[str, Any] = {}
        self.space: dict[str, Any] = {}
        self.app: dict[str, Any] = {}
        self.domain_guid = ""

    async def build(self) -> World:
        api = self.api
        self.org = await api.org("acme")
        self.space = await api.space(self.org["guid"], "dev")
        self.app = await api.app(self.space["guid"], "web")
        apps = (await api.http.get(f"/v3/domains?names={APPS_DOMAIN}", headers=api.admin)).json()
        self.domain_guid = apps["resources"][0]["guid"]
        return self

    def body(self, *, domain: str | None = None, space: str | None = None, **extra: Any) -> dict:
        return {
            "relationships": {
                "space": {"data": {"guid": space or self.space["guid"]}},
                "domain": {"data": {"guid": domain or self.domain_guid}},
            },
            **extra,
        }

    async def route(
        self, headers: dict[str, str] | None = None, expect: int = 201, **body: Any
    ) -> dict[str, Any]:
        response = await self.api.http.post(
            "/v3/routes", headers=headers or self.api.admin, json=self.body(**body)
        )
        assert response.status_code == expect, response.text
        return dict(response.json())

    async def private_domain(self, name: str, org_guid: str | None = None) -> str:
        response = await self.api.http.post(
            "/v3/domains",
            headers=self.api.admin,
            json={
                "name": name,
                "relationships": {"organization": {"data": {"guid": org_guid or self.org["guid"]}}},
            },
        )
        assert response.status_code == 201, response.text
        return str(response.json()["guid"])

    async def developer(self, name: str = "dev1") -> dict[str, str]:
        guid, headers = await self.api.user(name)
        await self.api.role("organization_user", guid, org=self.org["guid"])
        await self.api.role("space_developer", guid, space=self.space["guid"])
        return headers

    async def process_guid(self, app_guid: str, process_type: str = "web") -> str:
        response = await self.api.http.get(
            f"/v3/apps/{app_guid}/processes/{process_type}", headers=self.api.admin
        )
        assert response.status_code == 200, response.text
        return str(response.json()["guid"])

    async def map(
        self, route_guid: str, *destinations: dict[str, Any], method: str = "POST"
    ) -> Any:
        return await self.api.http.request(
            method,
            f"/v3/routes/{route_guid}/destinations",
            headers=self.api.admin,
            json={"destinations": list(destinations)},
        )


@pytest.fixture
async def world(api: Api) -> World:
    return await World(api).build()


async def test_create_and_read_a_route_in_cf_shape(api: Api, world: World) -> None:
    response = await api.http.post(
        "/v3/routes",
        headers=api.admin,
        json=world.body(host="Shop", path="/Cart", metadata={"labels": {"team": "a"}}),
    )
    assert response.status_code == 201, response.text
    assert "location" not in response.headers
    route = response.json()
    guid = route["guid"]
    assert route["created_at"].endswith("Z") and len(route["created_at"]) == 20
    assert {key: route[key] for key in ("protocol", "port", "host", "path", "url")} == {
        "protocol": "http",
        "port": None,
        "host": "shop",
        "path": "/Cart",
        "url": f"shop.{APPS_DOMAIN}/Cart",
    }
    assert route["destinations"] == [] and route["options"] == {}
    assert route["metadata"] == {"labels": {"team": "a"}, "annotations": {}}
    assert route["relationships"] == {
        "space": {"data": {"guid": world.space["guid"]}},
        "domain": {"data": {"guid": world.domain_guid}},
    }
    assert route["links"] == {
        "self": {"href": f"{BASE}/v3/routes/{guid}"},
        "space": {"href": f"{BASE}/v3/spaces/{world.space['guid']}"},
        "domain": {"href": f"{BASE}/v3/domains/{world.domain_guid}"},
        "destinations": {"href": f"{BASE}/v3/routes/{guid}/destinations"},
    }
    got = await api.http.get(f"/v3/routes/{guid}", headers=api.admin)
    assert got.status_code == 200 and got.json() == route
    events = (await api.http.get(f"/v3/audit_events?target_guids={guid}", headers=api.admin)).json()
    (event,) = events["resources"]
    assert event["type"] == "audit.route.create"
    assert event["target"] == {"guid": guid, "type": "route", "name": f"shop.{APPS_DOMAIN}/Cart"}
    assert event["space"] == {"guid": world.space["guid"]}


async def test_route_options_and_metadata_are_patched(api: Api, world: World) -> None:
    route = await world.route(host="shop", options={"loadbalancing": "least-connection"})
    assert route["options"] == {"loadbalancing": "least-connection"}
    url = f"/v3/routes/{route['guid']}"
    patched = await api.http.patch(
        url, headers=api.admin, json={"metadata": {"annotations": {"note": "hi"}}}
    )
    assert patched.status_code == 200
    assert patched.json()["options"] == {"loadbalancing": "least-connection"}
    assert patched.json()["metadata"]["annotations"] == {"note": "hi"}
    patched = await api.http.patch(
        url, headers=api.admin, json={"options": {"loadbalancing": "round-robin"}}
    )
    assert patched.json()["options"] == {"loadbalancing": "round-robin"}
    reset = await api.http.patch(url, headers=api.admin, json={"options": {"loadbalancing": None}})
    assert reset.json()["options"] == {}
    for body in (
        {"options": {"loadbalancing": "random"}},
        {"options": {"sticky": True}},
        {"host": "other"},
        {"options": "round-robin"},
    ):
        response = await api.http.patch(url, headers=api.admin, json=body)
        assert response.status_code == 422, body
    events = (
        await api.http.get(
            f"/v3/audit_events?types=audit.route.update&target_guids={route['guid']}",
            headers=api.admin,
        )
    ).json()
    assert events["pagination"]["total_results"] == 3


async def test_host_domain_and_path_are_unique(api: Api, world: World) -> None:
    await world.route(host="shop", path="/api")
    taken = await world.route(host="SHOP", path="/API", expect=422)
    response = await api.http.post(
        "/v3/routes", headers=api.admin, json=world.body(host="SHOP", path="/API")
    )
    assert _error(response) == {
        "code": 210003,
        "title": "CF-RouteHostTaken",
        "detail": f"Route already exists with host 'shop' and path '/API' for domain "
        f"'{APPS_DOMAIN}'.",
    }
    assert taken["errors"][0]["code"] == 210003
    # Another path, no path, or another host are other routes.
    await world.route(host="shop", path="/web")
    await world.route(host="shop")
    await world.route(host="cart", path="/api")
    response = await api.http.post("/v3/routes", headers=api.admin, json=world.body(host="shop"))
    assert _error(response)["detail"] == (
        f"Route already exists with host 'shop' for domain '{APPS_DOMAIN}'."
    )
    # Unique across the platform, not per space.
    other_space = await api.space(world.org["guid"], "prod")
    response = await api.http.post(
        "/v3/routes", headers=api.admin, json=world.body(host="shop", space=other_space["guid"])
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"host": "bad_host"}, "Host"),
        ({"host": "-x"}, "Host"),
        ({"host": "x-"}, "Host"),
        ({"host": "a.b"}, "Host"),
        ({"host": "a" * 64}, "Host is too long"),
        ({"host": "a" * 300}, "host"),
        ({"host": "x", "path": "noslash"}, "begin with /"),
        ({"host": "x", "path": "/"}, "exactly /"),
        ({"host": "x", "path": "/a?b=1"}, "?"),
        ({"host": "x", "path": "/a#top"}, "#"),
        ({"host": "x", "path": "/a/../b"}, ".."),
        ({"host": "x", "path": "/a b"}, "URL path"),
        ({"host": "x", "path": "/" + "a" * 128}, "too long"),
        ({"host": "x", "port": 8080}, "port"),
        ({"host": "x", "options": {"loadbalancing": "random"}}, "Loadbalancing"),
        ({"host": 5}, "host"),
        ({"host": "x", "path": None, "color": "red"}, "Unknown field(s): 'color'"),
        ({"host": "x", "options": {"loadbalancing": "round-robin", "x": 1}}, "Unknown field(s)"),
        ({"host": "x", "metadata": {"labels": {"bad key!": "v"}}}, "label"),
    ],
)
async def test_invalid_routes(
    api: Api, world: World, fields: dict[str, Any], fragment: str
) -> None:
    response = await api.http.post("/v3/routes", headers=api.admin, json=world.body(**fields))
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["title"] == "CF-UnprocessableEntity" and fragment in error["detail"], error
    listed = (await api.http.get("/v3/routes", headers=api.admin)).json()
    assert listed["pagination"]["total_results"] == 0


async def test_wrong_relationships(api: Api, world: World) -> None:
    for body in (
        {"host": "x"},
        {"host": "x", "relationships": {"space": {"data": {"guid": world.space["guid"]}}}},
        {"host": "x", "relationships": {"space": "x", "domain": "y"}},
    ):
        response = await api.http.post("/v3/routes", headers=api.admin, json=body)
        assert response.status_code == 422, body
    response = await api.http.post(
        "/v3/routes", headers=api.admin, json=world.body(host="x", space="nope")
    )
    assert response.status_code == 422
    assert _error(response)["detail"].startswith("Invalid space.")
    response = await api.http.post(
        "/v3/routes", headers=api.admin, json=world.body(host="x", domain="nope")
    )
    assert response.status_code == 422
    assert _error(response)["detail"].startswith("Invalid domain.")


async def test_reserved_hosts_on_shared_domains(api: Api, world: World) -> None:
    for host in ("api", "uaa", "LOGIN"):
        response = await api.http.post("/v3/routes", headers=api.admin, json=world.body(host=host))
        assert response.status_code == 422, host
        assert "reserved" in _error(response)["detail"]
    # A private domain's owners may use them: they are not the platform's names there.
    private = await world.private_domain("acme.example.com")
    route = await world.route(host="api", domain=private)
    assert route["url"] == "api.acme.example.com"


async def test_the_api_host_cannot_be_a_route(api: Api, world: World) -> None:
    api.parts.controller.set_api_url("https://cloud.example.com:8443")
    private = await world.private_domain("example.com")
    response = await api.http.post(
        "/v3/routes", headers=api.admin, json=world.body(host="Cloud", domain=private)
    )
    assert response.status_code == 422
    assert "reserved" in _error(response)["detail"]
    await world.route(host="www", domain=private)
    # Nor a domain.
    response = await api.http.post(
        "/v3/domains", headers=api.admin, json={"name": "cloud.example.com"}
    )
    assert response.status_code == 422


async def test_a_route_cannot_answer_to_a_domains_name(api: Api, world: World) -> None:
    other = await api.org("other")
    await world.private_domain(f"shop.{APPS_DOMAIN}", other["guid"])
    response = await api.http.post("/v3/routes", headers=api.admin, json=world.body(host="shop"))
    assert response.status_code == 422
    assert "conflicts with domain" in _error(response)["detail"]


async def test_hostless_and_wildcard_routes(api: Api, world: World) -> None:
    developer = await world.developer()
    private = await world.private_domain("acme.example.com")
    # On a shared domain only admins may leave out the host or use a wildcard.
    response = await api.http.post("/v3/routes", headers=developer, json=world.body())
    assert response.status_code == 422
    assert "Missing host" in _error(response)["detail"]
    response = await api.http.post("/v3/routes", headers=developer, json=world.body(host="*"))
    assert response.status_code == 403
    wildcard = await world.route(host="*")
    assert wildcard["url"] == f"*.{APPS_DOMAIN}"
    # On their org's private domain developers may do both.
    bare = await world.route(developer, domain=private, path="/docs")
    assert bare["host"] == "" and bare["url"] == "acme.example.com/docs"
    assert (await world.route(developer, domain=private, host="*"))["url"] == "*.acme.example.com"
    response = await api.http.post(
        "/v3/routes", headers=api.admin, json=world.body(domain=private, path="/docs")
    )
    assert _error(response)["detail"] == (
        "Route already exists with path '/docs' for domain 'acme.example.com'."
    )


async def test_another_orgs_private_domain_is_refused(api: Api, world: World) -> None:
    other = await api.org("other")
    theirs = await world.private_domain("other.example.com", other["guid"])
    response = await api.http.post(
        "/v3/routes", headers=api.admin, json=world.body(host="x", domain=theirs)
    )
    assert response.status_code == 422
    assert _error(response)["detail"] == (
        "Invalid domain. Domain 'other.example.com' is not available in organization 'acme'."
    )
    developer = await world.developer()
    response = await api.http.post(
        "/v3/routes", headers=developer, json=world.body(host="x", domain=theirs)
    )
    assert _error(response)["detail"].startswith("Invalid domain. Ensure")


async def test_internal_domains_take_no_paths(api: Api, world: World) -> None:
    internal = await api.http.post(
        "/v3/domains", headers=api.admin, json={"name": "apps.internal", "internal": True}
    )
    guid = internal.json()["guid"]
    response = await api.http.post(
        "/v3/routes", headers=api.admin, json=world.body(host="x", domain=guid, path="/a")
    )
    assert response.status_code == 422
    await world.route(host="x", domain=guid)


async def test_permissions(api: Api, world: World) -> None:
    route = await world.route(host="shop")
    auditor_guid, auditor = await api.user("auditor")
    await api.role("organization_user", auditor_guid, org=world.org["guid"])
    await api.role("space_auditor", auditor_guid, space=world.space["guid"])
    # An auditor reads but changes nothing.
    response = await api.http.post("/v3/routes", headers=auditor, json=world.body(host="x"))
    assert response.status_code == 403
    assert _error(response)["title"] == "CF-NotAuthorized"
    assert (await api.http.get(f"/v3/routes/{route['guid']}", headers=auditor)).status_code == 200
    listed = (await api.http.get("/v3/routes", headers=auditor)).json()
    assert [r["guid"] for r in listed["resources"]] == [route["guid"]]
    url = f"/v3/routes/{route['guid']}"
    assert (await api.http.patch(url, headers=auditor, json={"metadata": {}})).status_code == 403
    assert (await api.http.delete(url, headers=auditor)).status_code == 403
    mapped = await api.http.post(
        f"{url}/destinations",
        headers=auditor,
        json={"destinations": [{"app": {"guid": world.app["guid"]}}]},
    )
    assert mapped.status_code == 403
    # Someone without a role in the space neither sees nor finds it.
    _, stranger = await api.user("stranger")
    for path in (url, f"{url}/destinations"):
        response = await api.http.get(path, headers=stranger)
        assert response.status_code == 404, path
        assert _error(response)["detail"] == "Route not found"
    assert (await api.http.delete(url, headers=stranger)).status_code == 404
    assert (await api.http.get("/v3/routes", headers=stranger)).json()["resources"] == []
    response = await api.http.post("/v3/routes", headers=stranger, json=world.body(host="y"))
    assert response.status_code == 422
    # A developer may do it all.
    developer = await world.developer()
    created = await world.route(developer, host="dev")
    assert (
        await api.http.patch(
            f"/v3/routes/{created['guid']}",
            headers=developer,
            json={"options": {"loadbalancing": "least-connection"}},
        )
    ).status_code == 200


async def test_route_filters(api: Api, world: World) -> None:
    prod = await api.space(world.org["guid"], "prod")
    other_org = await api.org("other")
    other_space = await api.space(other_org["guid"], "x")
    private = await world.private_domain("acme.example.com")
    shop = await world.route(host="shop", path="/a")
    docs = await world.route(host="docs", domain=private)
    api_route = await world.route(host="api2", space=prod["guid"])
    far = await world.route(host="far", space=other_space["guid"])
    assert (await world.map(shop["guid"], {"app": {"guid": world.app["guid"]}})).status_code == 200

    async def hosts(query: str) -> list[str]:
        body = (await api.http.get(f"/v3/routes?{query}", headers=api.admin)).json()
        return [route["host"] for route in body["resources"]]

    assert await hosts("") == ["shop", "docs", "api2", "far"]
    assert await hosts("hosts=SHOP,far") == ["shop", "far"]
    assert await hosts("paths=/a") == ["shop"]
    assert await hosts(f"domain_guids={private}") == ["docs"]
    assert await hosts(f"space_guids={prod['guid']},{other_space['guid']}") == ["api2", "far"]
    assert await hosts(f"organization_guids={world.org['guid']}") == ["shop", "docs", "api2"]
    assert await hosts(f"app_guids={world.app['guid']}") == ["shop"]
    assert await hosts(f"guids={docs['guid']},{far['guid']}") == ["docs", "far"]
    assert await hosts("order_by=-created_at&per_page=2") == ["far", "api2"]
    assert api_route["url"] == f"api2.{APPS_DOMAIN}"
    assert (await api.http.get("/v3/routes?names=x", headers=api.admin)).status_code == 400
    # What a developer of `dev` sees: the routes of the spaces they are in.
    developer = await world.developer()
    body = (await api.http.get("/v3/routes", headers=developer)).json()
    assert [route["host"] for route in body["resources"]] == ["shop", "docs"]
    body = (await api.http.get(f"/v3/routes?space_guids={prod['guid']}", headers=developer)).json()
    assert body["resources"] == []


async def test_destinations_add_replace_remove(api: Api, world: World) -> None:
    route = await world.route(host="shop")
    worker = await api.app(world.space["guid"], "worker")
    response = await world.map(route["guid"], {"app": {"guid": world.app["guid"]}})
    assert response.status_code == 200, response.text
    body = response.json()
    (first,) = body["destinations"]
    assert first == {
        "guid": first["guid"],
        "app": {"guid": world.app["guid"], "process": {"type": "web"}},
        "weight": None,
        "port": 8080,
        "protocol": "http1",
    }
    assert body["links"] == {
        "self": {"href": f"{BASE}/v3/routes/{route['guid']}/destinations"},
        "route": {"href": f"{BASE}/v3/routes/{route['guid']}"},
    }
    # Adding the same app and process again changes nothing.
    again = await world.map(
        route["guid"], {"app": {"guid": world.app["guid"], "process": {"type": "web"}}}
    )
    assert again.json()["destinations"] == [first]
    added = await world.map(
        route["guid"],
        {"app": {"guid": worker["guid"], "process": {"type": "worker"}}, "port": 9000},
        {"app": {"guid": worker["guid"]}, "protocol": "http2"},
    )
    assert [
        (d["app"]["guid"], d["app"]["process"]["type"], d["port"], d["protocol"])
        for d in added.json()["destinations"]
    ] == [
        (world.app["guid"], "web", 8080, "http1"),
        (worker["guid"], "worker", 9000, "http1"),
        (worker["guid"], "web", 8080, "http2"),
    ]
    got = await api.http.get(f"/v3/routes/{route['guid']}/destinations", headers=api.admin)
    assert got.json() == added.json()
    assert (await api.http.get(f"/v3/routes/{route['guid']}", headers=api.admin)).json()[
        "destinations"
    ] == added.json()["destinations"]
    # Replacing keeps what stays (same guid), drops the rest.
    replaced = await world.map(route["guid"], {"app": {"guid": world.app["guid"]}}, method="PATCH")
    assert replaced.status_code == 200
    assert replaced.json()["destinations"] == [first]
    # Removing one.
    removed = await api.http.delete(
        f"/v3/routes/{route['guid']}/destinations/{first['guid']}", headers=api.admin
    )
    assert removed.status_code == 204 and removed.content == b""
    assert (
        await api.http.get(f"/v3/routes/{route['guid']}/destinations", headers=api.admin)
    ).json()["destinations"] == []
    missing = await api.http.delete(
        f"/v3/routes/{route['guid']}/destinations/{first['guid']}", headers=api.admin
    )
    assert missing.status_code == 404
    # An empty replacement is allowed (nothing mapped).
    assert (await world.map(route["guid"], method="PATCH")).json()["destinations"] == []
    # Events on the apps: map-route and unmap-route.
    events = (
        await api.http.get(
            f"/v3/audit_events?target_guids={world.app['guid']}"
            "&types=audit.app.map-route,audit.app.unmap-route&order_by=created_at",
            headers=api.admin,
        )
    ).json()
    assert [event["type"] for event in events["resources"]] == [
        "audit.app.map-route",
        "audit.app.unmap-route",
    ]
    data = events["resources"][0]["data"]
    assert data["route_guid"] == route["guid"] and data["process_type"] == "web"
    assert data["destination_guid"] == first["guid"] and data["app_port"] == 8080
    worker_events = (
        await api.http.get(
            f"/v3/audit_events?target_guids={worker['guid']}&types=audit.app.unmap-route",
            headers=api.admin,
        )
    ).json()
    assert worker_events["pagination"]["total_results"] == 2


async def test_wrong_destinations(api: Api, world: World) -> None:
    route = await world.route(host="shop")
    elsewhere = await api.app((await api.space(world.org["guid"], "prod"))["guid"], "far")
    cases = [
        ({"app": {"guid": "nope"}}, 'App(s) with guid(s) "nope" do not exist'),
        ({"app": {"guid": elsewhere["guid"]}}, "same space as the route"),
        ({"app": {"guid": world.app["guid"]}, "weight": 10}, "Weighted"),
        ({"app": {"guid": world.app["guid"]}, "protocol": "tcp"}, "protocol"),
        ({"app": {"guid": world.app["guid"]}, "port": 0}, "port"),
        ({"app": {"guid": world.app["guid"]}, "port": 70000}, "port"),
        ({"app": {"guid": world.app["guid"]}, "port": "80"}, "port"),
        ({"app": {"guid": world.app["guid"], "process": {"type": ""}}}, "type"),
        ({"app": {"guid": world.app["guid"]}, "color": "red"}, "Unknown field(s)"),
        ({"app": world.app["guid"]}, "app"),
    ]
    for destination, fragment in cases:
        for method in ("POST", "PATCH"):
            response = await world.map(route["guid"], destination, method=method)
            assert response.status_code == 422, (destination, response.text)
            assert fragment in _error(response)["detail"], (destination, response.text)
    for body in ({}, {"destinations": "x"}, []):
        response = await api.http.post(
            f"/v3/routes/{route['guid']}/destinations", headers=api.admin, json=body
        )
        assert response.status_code == 422, body
    unknown = await world.map("no-route", {"app": {"guid": world.app["guid"]}})
    assert unknown.status_code == 404
    assert (
        await api.http.get(f"/v3/routes/{route['guid']}/destinations", headers=api.admin)
    ).json()["destinations"] == []


async def test_app_routes(api: Api, world: World) -> None:
    shop = await world.route(host="shop")
    await world.route(host="docs")
    other = await api.app(world.space["guid"], "other")
    await world.map(shop["guid"], {"app": {"guid": world.app["guid"]}})
    body = (await api.http.get(f"/v3/apps/{world.app['guid']}/routes", headers=api.admin)).json()
    assert [route["host"] for route in body["resources"]] == ["shop"]
    assert body["pagination"]["first"]["href"].startswith(
        f"{BASE}/v3/apps/{world.app['guid']}/routes?"
    )
    empty = (await api.http.get(f"/v3/apps/{other['guid']}/routes", headers=api.admin)).json()
    assert empty["resources"] == []
    assert (await api.http.get("/v3/apps/nope/routes", headers=api.admin)).status_code == 404
    _, stranger = await api.user("stranger")
    hidden = await api.http.get(f"/v3/apps/{world.app['guid']}/routes", headers=stranger)
    assert hidden.status_code == 404


async def test_delete_route(api: Api, world: World) -> None:
    route = await world.route(host="shop")
    await world.map(route["guid"], {"app": {"guid": world.app["guid"]}})
    response = await api.http.delete(f"/v3/routes/{route['guid']}", headers=api.admin)
    assert response.status_code == 202 and response.content == b""
    job = await api.wait_job(response.headers["location"])
    assert job["state"] == "COMPLETE" and job["operation"] == "route.delete"
    assert (await api.http.get(f"/v3/routes/{route['guid']}", headers=api.admin)).status_code == 404
    assert (await api.http.get(f"/v3/apps/{world.app['guid']}/routes", headers=api.admin)).json()[
        "resources"
    ] == []
    events = (
        await api.http.get(
            f"/v3/audit_events?target_guids={route['guid']}&types=audit.route.delete-request",
            headers=api.admin,
        )
    ).json()
    assert events["pagination"]["total_results"] == 1
    # The address is free again.
    await world.route(host="shop")


async def test_deleting_an_app_or_a_space_cascades(api: Api, world: World) -> None:
    route = await world.route(host="shop")
    await world.map(route["guid"], {"app": {"guid": world.app["guid"]}})
    response = await api.http.delete(f"/v3/apps/{world.app['guid']}", headers=api.admin)
    assert (await api.wait_job(response.headers["location"]))["state"] == "COMPLETE"
    kept = (await api.http.get(f"/v3/routes/{route['guid']}", headers=api.admin)).json()
    assert kept["destinations"] == []
    response = await api.http.delete(f"/v3/spaces/{world.space['guid']}", headers=api.admin)
    assert (await api.wait_job(response.headers["location"]))["state"] == "COMPLETE"
    assert (await api.http.get(f"/v3/routes/{route['guid']}", headers=api.admin)).status_code == 404


async def test_what_the_routing_tier_is_told(api: Api, world: World) -> None:
    routes = api.parts.controller.routes
    calls: list[list[str]] = []

    async def changed(process_guids: list[str]) -> None:
        calls.append(process_guids)

    routes.routes_changed = changed
    web = await world.process_guid(world.app["guid"])
    shop = await world.route(host="Shop")
    cart = await world.route(host="shop", path="/Cart")
    private = await world.private_domain("acme.example.com")
    bare = await world.route(domain=private)
    assert calls == []

    assert (await world.map(shop["guid"], {"app": {"guid": world.app["guid"]}})).status_code == 200
    assert calls == [[web]]
    await world.map(shop["guid"], {"app": {"guid": world.app["guid"]}})  # nothing new
    assert calls == [[web]]
    await world.map(cart["guid"], {"app": {"guid": world.app["guid"]}})
    await world.map(bare["guid"], {"app": {"guid": world.app["guid"]}})
    # A process type the app does not run yet: no process to tell.
    await world.map(
        cart["guid"], {"app": {"guid": world.app["guid"], "process": {"type": "worker"}}}
    )
    assert calls == [[web], [web], [web]]
    calls.clear()

    uris = await routes.uris_of_processes([web, "no-such-process"])
    assert uris == {
        web: ["acme.example.com", f"shop.{APPS_DOMAIN}", f"shop.{APPS_DOMAIN}/cart"],
        "no-such-process": [],
    }
    assert await routes.uris_of_processes([]) == {}

    # Load balancing, per uri.
    await api.http.patch(
        f"/v3/routes/{cart['guid']}",
        headers=api.admin,
        json={"options": {"loadbalancing": "least-connection"}},
    )
    assert calls == [[web]]
    calls.clear()
    options = await routes.route_options(
        [f"shop.{APPS_DOMAIN}", f"shop.{APPS_DOMAIN}/cart", "acme.example.com", "nowhere.com/x"]
    )
    assert options == {
        f"shop.{APPS_DOMAIN}": "round-robin",
        f"shop.{APPS_DOMAIN}/cart": "least-connection",
        "acme.example.com": "round-robin",
        "nowhere.com/x": "round-robin",
    }

    # Replacing, removing, deleting a route, deleting a domain: each tells.
    replaced = await world.map(shop["guid"], method="PATCH")
    assert replaced.status_code == 200 and calls == [[web]]
    cart_destinations = (
        await api.http.get(f"/v3/routes/{cart['guid']}/destinations", headers=api.admin)
    ).json()["destinations"]
    web_destination = next(d for d in cart_destinations if d["app"]["process"]["type"] == "web")
    await api.http.delete(
        f"/v3/routes/{cart['guid']}/destinations/{web_destination['guid']}", headers=api.admin
    )
    assert calls == [[web], [web]]
    assert (await routes.uris_of_processes([web]))[web] == ["acme.example.com"]
    await world.map(cart["guid"], {"app": {"guid": world.app["guid"]}})
    calls.clear()
    response = await api.http.delete(f"/v3/routes/{cart['guid']}", headers=api.admin)
    await api.wait_job(response.headers["location"])
    assert calls == [[web]]
    response = await api.http.delete(f"/v3/domains/{private}", headers=api.admin)
    await api.wait_job(response.headers["location"])
    assert calls == [[web], [web]]
    assert (await routes.uris_of_processes([web]))[web] == []


async def test_internal_routes_are_not_for_the_public_router(api: Api, world: World) -> None:
    internal = await api.http.post(
        "/v3/domains", headers=api.admin, json={"name": "apps.internal", "internal": True}
    )
    route = await world.route(host="svc", domain=internal.json()["guid"])
    await world.map(route["guid"], {"app": {"guid": world.app["guid"]}})
    web = await world.process_guid(world.app["guid"])
    assert await api.parts.controller.routes.uris_of_processes([web]) == {web: []}


async def test_a_failing_listener_does_not_fail_the_change(api: Api, world: World) -> None:
    async def broken(_process_guids: list[str]) -> None:
        raise RuntimeError("router down")

    api.parts.controller.routes.routes_changed = broken
    route = await world.route(host="shop")
    response = await world.map(route["guid"], {"app": {"guid": world.app["guid"]}})
    assert response.status_code == 200
    assert len(response.json()["destinations"]) == 1
