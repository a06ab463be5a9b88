"""Store conformance for builds (SQLite and PostgreSQL): every field round-trips, filters,
the app cascade, and the build lifecycle's transition table."""

from __future__ import annotations

import dataclasses

import pytest

from overcast.models.errors import IllegalTransition
from overcast.models.lifecycle import BUILD_TRANSITIONS, BuildState, transition
from overcast.models.query import ListQuery
from overcast.models.resources import App, Build, BuildCreator, Metadata
from overcast.store.sql.store import SqlStore
from overcast.testing.clock import FakeClock
from tests.integration.store.test_package_store import _world


def _build(clock: FakeClock, app: App, guid: str, **changes: object) -> Build:
    now = clock.now()
    build = Build(
        guid=guid, app_guid=app.guid, package_guid="pkg-1", created_at=now, updated_at=now
    )
    return dataclasses.replace(build, **changes)  # type: ignore[arg-type]


async def test_build_round_trips_every_field(store: SqlStore, clock: FakeClock) -> None:
    _, _, app, _ = await _world(store, clock)
    build = _build(
        clock,
        app,
        "b-1",
        state=BuildState.FAILED,
        error="BuildpackCompileFailed - no",
        lifecycle_buildpacks=("python", "https://host/bp.git"),
        stack="overcast-linux",
        staging_memory_in_mb=2048,
        staging_disk_in_mb=8192,
        droplet_guid="d-1",
        created_by=BuildCreator(guid="u-1", name="ann", email="ann@example.com"),
        cell_id="cell-a",
        metadata=Metadata(labels={"a": "b"}, annotations={"c": "d"}),
    )
    async with store.write() as tx:
        await tx.builds.add(build)
    async with store.read() as tx:
        assert await tx.builds.get("b-1") == build
        assert await tx.builds.get("nope") is None


async def test_build_filters_order_and_cascade(store: SqlStore, clock: FakeClock) -> None:
    _, space, app, other = await _world(store, clock)
    async with store.write() as tx:
        await tx.builds.add(_build(clock, app, "b-1", state=BuildState.STAGED))
        clock.advance(1)
        await tx.builds.add(_build(clock, app, "b-2", package_guid="pkg-2"))
        clock.advance(1)
        await tx.builds.add(_build(clock, other, "b-3", state=BuildState.STAGED))

    async def guids(query: ListQuery) -> list[str]:
        async with store.read() as tx:
            return [build.guid for build in (await tx.builds.page(query)).items]

    assert await guids(ListQuery(filters={"app_guids": [app.guid]})) == ["b-1", "b-2"]
    assert await guids(ListQuery(filters={"package_guids": ["pkg-2"]})) == ["b-2"]
    assert await guids(ListQuery(filters={"states": ["STAGED"]})) == ["b-1", "b-3"]
    assert await guids(ListQuery(filters={"space_guids": [space.guid]})) == ["b-1", "b-2"]
    latest = ListQuery(
        filters={"app_guids": [app.guid]}, order_by="created_at", descending=True, per_page=1
    )
    assert await guids(latest) == ["b-2"]
    async with store.write() as tx:
        await tx.apps.delete(app.guid)
    assert await guids(ListQuery()) == ["b-3"]


def test_build_transitions() -> None:
    for target in (BuildState.STAGED, BuildState.FAILED):
        assert transition(BUILD_TRANSITIONS, BuildState.STAGING, target, what="Build") == target
    for current, target in (
        (BuildState.STAGED, BuildState.FAILED),
        (BuildState.FAILED, BuildState.STAGED),
        (BuildState.STAGED, BuildState.STAGING),
    ):
        with pytest.raises(IllegalTransition):
            transition(BUILD_TRANSITIONS, current, target, what="Build")
