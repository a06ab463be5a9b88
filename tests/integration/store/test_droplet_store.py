"""Store conformance for droplets (SQLite and PostgreSQL) and the directory blobstore."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from overcast.models.errors import IllegalTransition, NotFound, RequestTooLarge, Unprocessable
from overcast.models.lifecycle import DROPLET_TRANSITIONS, DropletState, transition
from overcast.models.query import ListQuery
from overcast.models.resources import (
    App,
    Droplet,
    DropletBuildpack,
    Metadata,
    Organization,
    Process,
    Space,
)
from overcast.store.blobs import DROPLETS, UPLOADS, BlobTooLarge, DirectoryBlobStore
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


def _droplet(clock: FakeClock, app: App, guid: str, **changes: object) -> Droplet:
    now = clock.now()
    droplet = Droplet(guid=guid, app_guid=app.guid, created_at=now, updated_at=now)
    return dataclasses.replace(droplet, **changes)  # type: ignore[arg-type]


async def test_droplet_round_trips_every_field(store: SqlStore, clock: FakeClock) -> None:
    _, _, app, _ = await _world(store, clock)
    droplet = _droplet(
        clock,
        app,
        "d-1",
        state=DropletState.STAGED,
        error="none",
        lifecycle_buildpacks=("python", "https://example.com/bp.git"),
        stack="overcast-linux",
        execution_metadata="meta",
        process_types={"web": "python app.py", "worker": "python w.py"},
        checksum="a" * 64,
        size_in_bytes=5 * 1024**3,  # past 32 bits
        buildpacks=(
            DropletBuildpack(
                name="python", detect_output="3.11", buildpack_name="python", version="1.0"
            ),
        ),
        package_guid="pkg-1",
        metadata=Metadata(labels={"a": "b"}, annotations={"c": "d"}),
    )
    async with store.write() as tx:
        await tx.droplets.add(droplet)
    async with store.read() as tx:
        stored = await tx.droplets.get("d-1")
        assert await tx.droplets.get("nope") is None
        with pytest.raises(NotFound):
            await tx.droplets.require("nope")
    assert stored == droplet


async def test_droplet_update_and_states(store: SqlStore, clock: FakeClock) -> None:
    _, _, app, _ = await _world(store, clock)
    async with store.write() as tx:
        await tx.droplets.add(_droplet(clock, app, "d-1"))
    clock.advance(3)

    def processing(current: Droplet) -> Droplet:
        state = transition(
            DROPLET_TRANSITIONS, current.state, DropletState.PROCESSING_UPLOAD, what="Droplet"
        )
        return dataclasses.replace(current, state=state)

    async with store.write() as tx:
        before, after = await tx.droplets.update("d-1", processing)
    assert before.state == DropletState.AWAITING_UPLOAD
    assert after.state == DropletState.PROCESSING_UPLOAD
    assert after.updated_at == before.updated_at + timedelta(seconds=3)
    with pytest.raises(IllegalTransition):
        transition(DROPLET_TRANSITIONS, after.state, DropletState.AWAITING_UPLOAD, what="D")
    with pytest.raises(IllegalTransition):
        transition(DROPLET_TRANSITIONS, DropletState.STAGED, DropletState.FAILED, what="D")
    assert (
        transition(DROPLET_TRANSITIONS, DropletState.STAGED, DropletState.EXPIRED, what="D")
        == DropletState.EXPIRED
    )


async def test_droplet_filters_and_cascade(store: SqlStore, clock: FakeClock) -> None:
    org, space, app, other = await _world(store, clock)
    async with store.write() as tx:
        await tx.droplets.add(_droplet(clock, app, "d-1", state=DropletState.STAGED))
        clock.advance(1)
        await tx.droplets.add(_droplet(clock, app, "d-2"))
        clock.advance(1)
        await tx.droplets.add(_droplet(clock, other, "d-3", state=DropletState.STAGED))

    async def guids(**filters: list[str]) -> list[str]:
        async with store.read() as tx:
            page = await tx.droplets.page(ListQuery(filters=filters))
        return [d.guid for d in page.items]

    assert await guids() == ["d-1", "d-2", "d-3"]
    assert await guids(app_guids=[app.guid]) == ["d-1", "d-2"]
    assert await guids(states=["STAGED"]) == ["d-1", "d-3"]
    assert await guids(states=["STAGED"], app_guids=[app.guid]) == ["d-1"]
    assert await guids(space_guids=[space.guid]) == ["d-1", "d-2"]
    assert await guids(space_guids=[]) == []
    assert await guids(organization_guids=[org.guid]) == ["d-1", "d-2", "d-3"]
    assert await guids(guids=["d-3", "x"]) == ["d-3"]
    async with store.read() as tx:
        newest = await tx.droplets.page(ListQuery(order_by="created_at", descending=True))
        assert [d.guid for d in newest.items] == ["d-3", "d-2", "d-1"]
        assert sorted(await tx.droplets.guids({"app_guids": [other.guid]})) == ["d-3"]
    # A droplet of an app that does not exist is refused; deleting the app takes its droplets.
    async with store.write() as tx:
        with pytest.raises(Unprocessable):
            await tx.droplets.add(dataclasses.replace(_droplet(clock, app, "d-9"), app_guid="x"))
    async with store.write() as tx:
        await tx.apps.delete(app.guid)
    assert await guids() == ["d-3"]
    async with store.write() as tx:
        assert (await tx.droplets.delete("d-3")) is not None
        assert await tx.droplets.delete("d-3") is None


async def test_process_placement_error_round_trips(store: SqlStore, clock: FakeClock) -> None:
    _, _, app, _ = await _world(store, clock)
    now = clock.now()
    process = Process(
        guid="p-1", app_guid=app.guid, type="web", created_at=now, updated_at=now, version="v"
    )
    async with store.write() as tx:
        await tx.processes.add(process)
        assert (await tx.processes.require("p-1")).placement_error is None
        _, after = await tx.processes.update(
            "p-1", lambda p: dataclasses.replace(p, placement_error="no cell has 4 GB free")
        )
    async with store.read() as tx:
        assert await tx.processes.require("p-1") == after
    assert after.placement_error == "no cell has 4 GB free"


# --- the directory blobstore ------------------------------------------------------------------


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.fixture
def blobs(tmp_path: Path) -> DirectoryBlobStore:
    return DirectoryBlobStore(tmp_path / "blobs")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_blob_write_read_move_delete(blobs: DirectoryBlobStore) -> None:
    data = [b"a" * 700_000, b"b" * 700_000, b"", b"c"]
    info = await blobs.write(UPLOADS, "u-1", _chunks(*data), max_bytes=10**7)
    joined = b"".join(data)
    assert (info.size, info.sha256) == (len(joined), hashlib.sha256(joined).hexdigest())
    assert _files(blobs.root) == ["uploads/u-1.upload"]
    await blobs.move(UPLOADS, "u-1", DROPLETS, "d-1")
    assert _files(blobs.root) == ["droplets/d-1.tgz"]
    assert await blobs.size(DROPLETS, "d-1") == len(joined)
    assert await blobs.sha256(DROPLETS, "d-1") == info.sha256
    handle = await blobs.open(DROPLETS, "d-1")
    assert handle is not None
    with handle:
        assert handle.read() == joined
    assert blobs.local_path(DROPLETS, "d-1") == blobs.root / "droplets" / "d-1.tgz"
    assert await blobs.keys(DROPLETS) == ["d-1"]
    assert await blobs.keys(UPLOADS) == []
    # Replacing is all or nothing.
    await blobs.write(DROPLETS, "d-1", _chunks(b"new"), max_bytes=10)
    assert await blobs.size(DROPLETS, "d-1") == 3
    assert await blobs.delete(DROPLETS, "d-1") is True
    assert await blobs.delete(DROPLETS, "d-1") is False
    assert await blobs.open(DROPLETS, "d-1") is None
    assert await blobs.size(DROPLETS, "d-1") is None
    assert await blobs.sha256(DROPLETS, "d-1") is None
    assert blobs.local_path(DROPLETS, "d-1") is None
    assert _files(blobs.root) == []


async def test_blob_limits_and_failures_leave_nothing(blobs: DirectoryBlobStore) -> None:
    await blobs.write(DROPLETS, "d-1", _chunks(b"old"), max_bytes=10)
    with pytest.raises(BlobTooLarge) as error:
        await blobs.write(DROPLETS, "d-1", _chunks(b"x" * 6, b"x" * 6), max_bytes=10)
    assert isinstance(error.value, RequestTooLarge) and "10 bytes" in error.value.detail
    assert _files(blobs.root) == ["droplets/d-1.tgz"]
    assert await blobs.size(DROPLETS, "d-1") == 3  # the old blob is untouched

    async def broken() -> AsyncIterator[bytes]:
        yield b"some"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await blobs.write(DROPLETS, "d-2", broken(), max_bytes=10**6)
    assert _files(blobs.root) == ["droplets/d-1.tgz"]

    capped = DirectoryBlobStore(blobs.root, max_blob_bytes=4)
    with pytest.raises(BlobTooLarge):
        await capped.write(DROPLETS, "d-3", _chunks(b"12345"), max_bytes=10**6)


@pytest.mark.parametrize("key", ["../x", "a/b", "", ".hidden", "x" * 200, "a b", "a\x00"])
async def test_blob_keys_cannot_escape(blobs: DirectoryBlobStore, key: str) -> None:
    with pytest.raises(Unprocessable):
        await blobs.write(DROPLETS, key, _chunks(b"x"), max_bytes=10)
    with pytest.raises(Unprocessable):
        await blobs.open(DROPLETS, key)
    with pytest.raises(ValueError):
        await blobs.size("secrets", "ok")
