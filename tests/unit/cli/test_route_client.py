"""The client's routes and domains methods against httpx.MockTransport: the requests they
make and what they return."""

from __future__ import annotations

import json
from typing import Any

import httpx

from overcast.client import OvercastClient, Tokens
from tests.unit.cli.fake_server import API, FakeApi, page


def client_for(api: FakeApi) -> OvercastClient:
    return OvercastClient(API, tokens=Tokens("t"), transport=httpx.MockTransport(api.handle))


def _last(api: FakeApi) -> httpx.Request:
    return api.requests[-1]


def _body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_route_methods() -> None:
    api = FakeApi()
    route = {"guid": "r1", "host": "shop", "path": "", "destinations": []}
    destinations = {"destinations": [], "links": {}}
    api.on("GET", "/v3/routes", page([route]))
    api.on("GET", "/v3/routes/r1", route)
    api.on("PATCH", "/v3/routes/r1", route)
    api.on("GET", "/v3/apps/a1/routes", page([route]))
    api.on("GET", "/v3/routes/r1/destinations", destinations)
    api.on("PATCH", "/v3/routes/r1/destinations", destinations)
    api.on("POST", "/v3/routes/r1/destinations", destinations)
    api.on("DELETE", "/v3/routes/r1/destinations/d1", httpx.Response(204))
    api.on(
        "DELETE", "/v3/routes/r1", httpx.Response(202, headers={"Location": f"{API}/v3/jobs/j1"})
    )
    with client_for(api) as client:
        assert client.list_routes(space_guids=["s1"], hosts=["shop"], org_guids=["o1"]) == [route]
        assert dict(_last(api).url.params) == {
            "space_guids": "s1",
            "hosts": "shop",
            "organization_guids": "o1",
        }
        assert client.find_route("dom", "SHOP") == route
        assert client.find_route("dom", "shop", "/x") is None
        assert client.get_route("r1") == route
        client.update_route("r1", load_balancing=None)
        assert _body(_last(api)) == {"options": {"loadbalancing": None}}
        assert client.app_routes("a1") == [route]
        assert client.route_destinations("r1") == destinations
        client.replace_route_destinations("r1", ["a1", "a2"], process_type="worker")
        assert _body(_last(api)) == {
            "destinations": [
                {"app": {"guid": "a1", "process": {"type": "worker"}}},
                {"app": {"guid": "a2", "process": {"type": "worker"}}},
            ]
        }
        client.replace_route_destinations("r1", [])
        assert _body(_last(api)) == {"destinations": []}
        client.remove_route_destination("r1", "d1")
        assert client.delete_route("r1") == "j1"


def test_create_route_options() -> None:
    api = FakeApi()
    api.on("POST", "/v3/routes", lambda request: httpx.Response(201, json=_body(request)))
    with client_for(api) as client:
        client.create_route("s1", "dom", load_balancing="least-connection")
    assert _body(_last(api)) == {
        "relationships": {"space": {"data": {"guid": "s1"}}, "domain": {"data": {"guid": "dom"}}},
        "options": {"loadbalancing": "least-connection"},
    }


def test_domain_methods() -> None:
    api = FakeApi()
    domain = {"guid": "d1", "name": "apps.example.com"}
    api.on("GET", "/v3/domains", page([domain]))
    api.on("GET", "/v3/domains/d1", domain)
    api.on(
        "DELETE", "/v3/domains/d1", httpx.Response(202, headers={"Location": f"{API}/v3/jobs/j2"})
    )
    with client_for(api) as client:
        assert client.list_domains(guids=["d1"]) == [domain]
        assert dict(_last(api).url.params) == {"guids": "d1"}
        assert client.domain_by_name("apps.example.com") == domain
        assert client.get_domain("d1") == domain
        assert client.delete_domain("d1") == "j2"
