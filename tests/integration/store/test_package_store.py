"""Store conformance for packages (SQLite and PostgreSQL) and the blobstore's content-addressed
file store."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from datetime import timedelta
from pathlib import Path

import pytest

from overcast.models.errors import IllegalTransition, NotFound, Unprocessable
from overcast.models.lifecycle import PACKAGE_TRANSITIONS, PackageState, transition
from overcast.models.query import ListQuery
from overcast.models.resources import App, Metadata, Organization, Package, Space
from overcast.store.blobs import BlobTooLarge, DirectoryBlobStore
from overcast.store.sql.store import SqlStore
from overcast.testing.clock import FakeClock

pytestmark = pytest.mark.asyncio


async def _world(store: SqlStore, clock: FakeClock) -> tuple[Organization, Space, App, App]:
    now = clock.now()
    org = Organization(guid="org-1", name="acme", created_at=now, updated_at=now)
    space = Space(guid="space-1", name="dev", org_guid=org.guid, created_at=now, updated_at=now)
    other_space = Space(
        guid="space-2", name="prod", org_guid=org.guid, created_at=now, updated_at=now
    )
    app = App(guid="app-1", name="web", space_guid=space.guid, created_at=now, updated_at=now)
    other = App(
        guid="app-2", name="api", space_guid=other_space.guid, created_at=now, updated_at=now
    )
    async with store.write() as tx:
        await tx.orgs.add(org)
        await tx.spaces.add(space)
        await tx.spaces.add(other_space)
        await tx.apps.add(app)
        await tx.apps.add(other)
    return org, space, app, other


def _package(clock: FakeClock, app: App, guid: str, **changes: object) -> Package:
    now = clock.now()
    package = Package(guid=guid, app_guid=app.guid, created_at=now, updated_at=now)
    return dataclasses.replace(package, **changes)  # type: ignore[arg-type]


async def test_package_round_trips_every_field(store: SqlStore, clock: FakeClock) -> None:
    _, _, app, _ = await _world(store, clock)
    package = _package(
        clock,
        app,
        "p-1",
        state=PackageState.READY,
        error="none",
        checksum="a" * 64,
        size_in_bytes=5 * 1024**3,  # past 32 bits
        file_count=12,
        metadata=Metadata(labels={"a": "b"}, annotations={"c": "d"}),
    )
    async with store.write() as tx:
        await tx.packages.add(package)
    async with store.read() as tx:
        stored = await tx.packages.get("p-1")
        assert await tx.packages.get("nope") is None
        with pytest.raises(NotFound):
            await tx.packages.require("nope")
    assert stored == package


async def test_package_update_and_states(store: SqlStore, clock: FakeClock) -> None:
    _, _, app, _ = await _world(store, clock)
    async with store.write() as tx:
        await tx.packages.add(_package(clock, app, "p-1"))
    clock.advance(3)

    def processing(current: Package) -> Package:
        state = transition(
            PACKAGE_TRANSITIONS, current.state, PackageState.PROCESSING_UPLOAD, what="Package"
        )
        return dataclasses.replace(current, state=state)

    async with store.write() as tx:
        before, after = await tx.packages.update("p-1", processing)
    assert before.state == PackageState.AWAITING_UPLOAD
    assert after.state == PackageState.PROCESSING_UPLOAD
    assert after.updated_at == before.updated_at + timedelta(seconds=3)
    for current, target in (
        (PackageState.PROCESSING_UPLOAD, PackageState.AWAITING_UPLOAD),
        (PackageState.READY, PackageState.FAILED),
        (PackageState.PROCESSING_UPLOAD, PackageState.EXPIRED),
        (PackageState.EXPIRED, PackageState.READY),
    ):
        with pytest.raises(IllegalTransition):
            transition(PACKAGE_TRANSITIONS, current, target, what="Package")
    for current, target in (
        (PackageState.PROCESSING_UPLOAD, PackageState.READY),
        (PackageState.PROCESSING_UPLOAD, PackageState.FAILED),
        (PackageState.READY, PackageState.EXPIRED),
        (PackageState.AWAITING_UPLOAD, PackageState.EXPIRED),
    ):
        assert transition(PACKAGE_TRANSITIONS, current, target, what="Package") == target


async def test_package_filters_and_cascade(store: SqlStore, clock: FakeClock) -> None:
    org, space, app, other = await _world(store, clock)
    async with store.write() as tx:
        await tx.packages.add(_package(clock, app, "p-1", state=PackageState.READY))
        clock.advance(1)
        await tx.packages.add(_package(clock, app, "p-2"))
        clock.advance(1)
        await tx.packages.add(_package(clock, other, "p-3", state=PackageState.READY))

    async def guids(**filters: list[str]) -> list[str]:
        async with store.read() as tx:
            page = await tx.packages.page(ListQuery(filters=filters))
        return [p.guid for p in page.items]

    assert await guids() == ["p-1", "p-2", "p-3"]
    assert await guids(app_guids=[app.guid]) == ["p-1", "p-2"]
    assert await guids(states=["READY"]) == ["p-1", "p-3"]
    assert await guids(types=["bits"]) == ["p-1", "p-2", "p-3"]
    assert await guids(types=["docker"]) == []
    assert await guids(states=["READY"], app_guids=[app.guid]) == ["p-1"]
    assert await guids(space_guids=[space.guid]) == ["p-1", "p-2"]
    assert await guids(space_guids=[]) == []
    assert await guids(organization_guids=[org.guid]) == ["p-1", "p-2", "p-3"]
    assert await guids(guids=["p-3", "x"]) == ["p-3"]
    async with store.read() as tx:
        newest = await tx.packages.page(ListQuery(order_by="created_at", descending=True))
        assert [p.guid for p in newest.items] == ["p-3", "p-2", "p-1"]
    async with store.write() as tx:
        with pytest.raises(Unprocessable):
            await tx.packages.add(dataclasses.replace(_package(clock, app, "p-9"), app_guid="x"))
    async with store.write() as tx:
        await tx.apps.delete(app.guid)
    assert await guids() == ["p-3"]
    async with store.write() as tx:
        assert (await tx.packages.delete("p-3")) is not None
        assert await tx.packages.delete("p-3") is None


# --- the content-addressed file store ---------------------------------------------------------


@pytest.fixture
def blobs(tmp_path: Path) -> DirectoryBlobStore:
    return DirectoryBlobStore(tmp_path / "blobs")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_files_are_stored_by_sha1_once(blobs: DirectoryBlobStore) -> None:
    data = b"x" * 3_000_000
    sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    info = await blobs.add_file(io.BytesIO(data), max_bytes=10**7)
    assert (info.sha1, info.size) == (sha1, len(data))
    again = await blobs.add_file(io.BytesIO(data), max_bytes=10**7)
    assert again == info
    assert _files(blobs.root) == [f"files/{sha1[:2]}/{sha1}"]
    other = await blobs.add_file(io.BytesIO(b""), max_bytes=10)
    assert other.size == 0
    sizes = await blobs.file_sizes([sha1, other.sha1, "f" * 40, "../../etc/passwd", "ABC"])
    assert sizes == {sha1: len(data), other.sha1: 0}
    handle = await blobs.open_file(sha1)
    assert handle is not None
    with handle:
        assert handle.read() == data
    assert await blobs.open_file("0" * 40) is None


async def test_file_limits_and_bad_names(blobs: DirectoryBlobStore) -> None:
    with pytest.raises(BlobTooLarge):
        await blobs.add_file(io.BytesIO(b"x" * 11), max_bytes=10)
    assert _files(blobs.root) == []
    for bad in ("../x", "a" * 39, "A" * 40, "g" * 40):
        with pytest.raises(Unprocessable):
            await blobs.open_file(bad)
