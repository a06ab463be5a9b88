"""Store conformance for routes and route destinations (SQLite and PostgreSQL): every field
round-trips, filters, uniqueness (host and path ignoring case), and the cascades (an app takes
its destinations, a route its destinations, a space and a domain their routes)."""

from __future__ import annotations

import dataclasses

import pytest

from overcast.models.errors import Uniqueness
from overcast.models.query import ListQuery
from overcast.models.resources import (
    App,
    Domain,
    LoadBalancing,
    Metadata,
    Organization,
    Route,
    RouteDestination,
    Space,
)
from overcast.store.sql.store import SqlStore
from overcast.testing.clock import FakeClock
from tests.integration.store.test_package_store import _world

pytestmark = pytest.mark.asyncio


async def _routes_world(
    store: SqlStore, clock: FakeClock
) -> tuple[Organization, Space, App, App, Domain]:
    org, space, app, other = await _world(store, clock)
    now = clock.now()
    domain = Domain(guid="dom-1", name="apps.example.com", created_at=now, updated_at=now)
    async with store.write() as tx:
        await tx.domains.add(domain)
    return org, space, app, other, domain


def _route(clock: FakeClock, space: Space, domain: Domain, guid: str, **changes: object) -> Route:
    now = clock.now()
    route = Route(
        guid=guid,
        host="web",
        path="",
        domain_guid=domain.guid,
        space_guid=space.guid,
        created_at=now,
        updated_at=now,
    )
    return dataclasses.replace(route, **changes)  # type: ignore[arg-type]


def _destination(
    clock: FakeClock, route: Route, app: App, guid: str, **changes: object
) -> RouteDestination:
    now = clock.now()
    destination = RouteDestination(
        guid=guid, route_guid=route.guid, app_guid=app.guid, created_at=now, updated_at=now
    )
    return dataclasses.replace(destination, **changes)  # type: ignore[arg-type]


async def test_route_and_destination_round_trip_every_field(
    store: SqlStore, clock: FakeClock
) -> None:
    _, space, app, _, domain = await _routes_world(store, clock)
    route = _route(
        clock,
        space,
        domain,
        "r-1",
        host="*",
        path="/Api/V1",
        load_balancing=LoadBalancing.LEAST_CONNECTION,
        metadata=Metadata(labels={"a": "b"}, annotations={"c": "d"}),
    )
    plain = _route(clock, space, domain, "r-2", host="")
    destination = _destination(
        clock, route, app, "d-1", process_type="worker", port=9000, protocol="http2"
    )
    async with store.write() as tx:
        await tx.routes.add(route)
        await tx.routes.add(plain)
        await tx.destinations.add(destination)
    async with store.read() as tx:
        assert await tx.routes.get("r-1") == route
        assert await tx.routes.get("r-2") == plain
        assert await tx.destinations.get("d-1") == destination
        assert await tx.routes.by_address(domain.guid, "*", "/api/v1") == route
        assert await tx.routes.by_address(domain.guid, "", "") == plain
        assert await tx.routes.by_address(domain.guid, "web", "") is None


async def test_route_uniqueness_ignores_case_of_host_and_path(
    store: SqlStore, clock: FakeClock
) -> None:
    _, space, _, _, domain = await _routes_world(store, clock)
    async with store.write() as tx:
        await tx.routes.add(_route(clock, space, domain, "r-1", path="/Shop"))
        # Same host on another path, and the same path without a host, are other routes.
        await tx.routes.add(_route(clock, space, domain, "r-2", path="/other"))
        await tx.routes.add(_route(clock, space, domain, "r-3", host="", path="/shop"))
    with pytest.raises(Uniqueness):
        async with store.write() as tx:
            await tx.routes.add(_route(clock, space, domain, "r-4", path="/shop"))


async def test_destination_uniqueness(store: SqlStore, clock: FakeClock) -> None:
    _, space, app, _, domain = await _routes_world(store, clock)
    route = _route(clock, space, domain, "r-1")
    async with store.write() as tx:
        await tx.routes.add(route)
        await tx.destinations.add(_destination(clock, route, app, "d-1"))
        # Another port or process type of the same app is another destination.
        await tx.destinations.add(_destination(clock, route, app, "d-2", port=9090))
        await tx.destinations.add(_destination(clock, route, app, "d-3", process_type="api"))
    with pytest.raises(Uniqueness):
        async with store.write() as tx:
            await tx.destinations.add(_destination(clock, route, app, "d-4"))
    async with store.read() as tx:
        assert [d.guid for d in await tx.destinations.of_routes([route.guid])] == [
            "d-1",
            "d-2",
            "d-3",
        ]
        assert await tx.destinations.of_routes([]) == []


async def test_route_filters(store: SqlStore, clock: FakeClock) -> None:
    org, space, app, other, domain = await _routes_world(store, clock)
    now = clock.now()
    private = Domain(
        guid="dom-2", name="acme.example.com", org_guid=org.guid, created_at=now, updated_at=now
    )
    other_space = await _space_of(store, other)
    async with store.write() as tx:
        await tx.domains.add(private)
        first = await tx.routes.add(_route(clock, space, domain, "r-1", path="/a"))
        clock.advance(1)
        await tx.routes.add(_route(clock, space, private, "r-2", host="shop"))
        clock.advance(1)
        await tx.routes.add(_route(clock, other_space, domain, "r-3", host="api"))
        await tx.destinations.add(_destination(clock, first, app, "d-1"))

    async def guids(**filters: list[str]) -> list[str]:
        async with store.read() as tx:
            return [
                route.guid for route in (await tx.routes.page(ListQuery(filters=filters))).items
            ]

    assert await guids() == ["r-1", "r-2", "r-3"]
    assert await guids(hosts=["WEB", "api"]) == ["r-1", "r-3"]
    assert await guids(paths=["/A"]) == ["r-1"]
    assert await guids(domain_guids=[private.guid]) == ["r-2"]
    assert await guids(space_guids=[space.guid]) == ["r-1", "r-2"]
    assert await guids(organization_guids=[org.guid]) == ["r-1", "r-2", "r-3"]
    assert await guids(organization_guids=["nope"]) == []
    assert await guids(app_guids=[app.guid]) == ["r-1"]
    assert await guids(app_guids=[]) == []
    async with store.read() as tx:
        assert await tx.destinations.guids({"app_guids": [app.guid]}) == ["d-1"]
        assert await tx.destinations.guids({"route_guids": ["r-2"]}) == []


async def _space_of(store: SqlStore, app: App) -> Space:
    async with store.read() as tx:
        return await tx.spaces.require(app.space_guid)


async def test_cascades(store: SqlStore, clock: FakeClock) -> None:
    _, space, app, other, domain = await _routes_world(store, clock)
    now = clock.now()
    second_domain = Domain(guid="dom-2", name="more.example.com", created_at=now, updated_at=now)
    other_space = await _space_of(store, other)
    # Destinations in another space are refused by the use case, not the store: this checks
    # only that each cascade takes what hangs off it.
    r1 = _route(clock, space, domain, "r-1")
    r2 = _route(clock, space, second_domain, "r-2")
    r3 = _route(clock, other_space, domain, "r-3", host="api")
    async with store.write() as tx:
        await tx.domains.add(second_domain)
        for route in (r1, r2, r3):
            await tx.routes.add(route)
        await tx.destinations.add(_destination(clock, r1, app, "d-1"))
        await tx.destinations.add(_destination(clock, r1, other, "d-2"))
        await tx.destinations.add(_destination(clock, r2, app, "d-3"))
        await tx.destinations.add(_destination(clock, r3, other, "d-4"))

    async def remaining() -> tuple[list[str], list[str]]:
        async with store.read() as tx:
            routes = sorted(r.guid for r in await tx.routes.list_all({}))
            destinations = sorted(d.guid for d in await tx.destinations.list_all({}))
            return routes, destinations

    # An app takes its destinations, not the routes.
    async with store.write() as tx:
        await tx.apps.delete(app.guid)
    assert await remaining() == (["r-1", "r-2", "r-3"], ["d-2", "d-4"])
    # A route takes its destinations.
    async with store.write() as tx:
        await tx.routes.delete("r-1")
    assert await remaining() == (["r-2", "r-3"], ["d-4"])
    # A domain takes its routes.
    async with store.write() as tx:
        await tx.domains.delete(second_domain.guid)
    assert await remaining() == (["r-3"], ["d-4"])
    # A space (once its apps are gone) takes its routes and their destinations.
    async with store.write() as tx:
        await tx.apps.delete(other.guid)
        await tx.spaces.delete(other_space.guid)
    assert await remaining() == ([], [])
