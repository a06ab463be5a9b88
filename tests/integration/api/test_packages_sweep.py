"""Packages and the rules they share with staging, end to end: resources that clash with the
zip, manifests held to the tree and link rules before anything is written, and the sweep that
collects files of the file store no package refers to (aged with os.utime, no sleeps)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import tempfile
import time
from pathlib import Path

import pytest

from overcast.controller.package_archive import LINK, REGULAR, ManifestEntry, manifest_bytes
from overcast.controller.package_archive import manifest_sha256 as sha256_of
from overcast.models.resources import Package
from overcast.store.blobs import PACKAGES, DirectoryBlobStore
from tests.integration.api.conftest import Api
from tests.integration.api.test_packages import _app, _failed, _package, _sha1, _v3, _zip

HOUR = 3600.0


def _blobs(api: Api) -> DirectoryBlobStore:
    blobs = api.parts.controller.packages.blobs
    assert isinstance(blobs, DirectoryBlobStore)
    return blobs


def _file(api: Api, data: bytes) -> Path:
    sha1 = _sha1(data)
    return _blobs(api).root / "files" / sha1[:2] / sha1


def _age_all(api: Api, seconds: float = 2 * HOUR) -> None:
    then = time.time() - seconds
    for path in (_blobs(api).root / "files").rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


async def _delete(api: Api, guid: str) -> None:
    deleted = await api.http.delete(f"/v3/packages/{guid}", headers=api.admin)
    assert deleted.status_code == 202, deleted.text
    job = await api.wait_job(deleted.headers["location"])
    assert job["state"] == "COMPLETE", job


# --- the sweep --------------------------------------------------------------------------------


async def test_the_sweep_collects_old_unreferenced_files_only(api: Api) -> None:
    app = await _app(api)
    used = {"app.py": b"print('used')\n", "lib/a.py": b"A = 1\n"}
    assert (await _package(api, app["guid"], _zip(used)))["state"] == "READY"
    blobs = _blobs(api)
    await blobs.add_file(io.BytesIO(b"left by a failed upload"), max_bytes=100)
    _age_all(api)
    fresh = await blobs.add_file(io.BytesIO(b"an upload in flight"), max_bytes=100)

    packages = api.parts.controller.packages
    assert await packages.sweep_orphan_blobs() == 1
    assert not _file(api, b"left by a failed upload").exists()
    for data in used.values():
        assert _file(api, data).exists()
    assert _file(api, b"an upload in flight").exists()
    assert await packages.sweep_orphan_blobs() == 0
    assert {file.sha1 for file in await blobs.stored_files()} == {
        *(_sha1(data) for data in used.values()),
        fresh.sha1,
    }


async def test_a_deleted_packages_files_go_unless_another_package_shares_them(api: Api) -> None:
    app = await _app(api)
    first = await _package(api, app["guid"], _zip({"a.txt": b"only a", "s.txt": b"shared"}))
    second = await _package(api, app["guid"], _zip({"b.txt": b"only b", "s.txt": b"shared"}))
    await _delete(api, first["guid"])
    _age_all(api)
    packages = api.parts.controller.packages
    assert await packages.sweep_orphan_blobs() == 1
    assert not _file(api, b"only a").exists()
    assert _file(api, b"shared").exists() and _file(api, b"only b").exists()
    # The survivor still materializes.
    assert await packages.manifest(second["guid"])
    await _delete(api, second["guid"])
    assert await packages.sweep_orphan_blobs() == 2
    assert await _blobs(api).stored_files() == []


async def test_files_reported_held_are_spared_for_the_grace_period(api: Api) -> None:
    app = await _app(api)
    package = await _package(api, app["guid"], _zip({"keep.txt": b"keep me"}))
    await _delete(api, package["guid"])
    _age_all(api)
    # A client is told the server holds the file, and may now leave it out of its upload ...
    asked = {"resources": [_v3("keep.txt", b"keep me")]}
    matched = await api.http.post("/v3/resource_matches", headers=api.admin, json=asked)
    assert matched.json()["resources"] == asked["resources"]
    packages = api.parts.controller.packages
    assert await packages.sweep_orphan_blobs() == 0
    # ... and does: the package refers to it from then on.
    again = await _package(api, app["guid"], resources=asked["resources"])
    assert again["state"] == "READY", again
    _age_all(api)
    assert await packages.sweep_orphan_blobs() == 0
    assert _file(api, b"keep me").exists()


async def test_an_unreadable_manifest_stops_the_file_sweep(api: Api) -> None:
    app = await _app(api)
    package = await _package(api, app["guid"], _zip({"x.txt": b"x"}))
    await _blobs(api).add_file(io.BytesIO(b"stray"), max_bytes=10)
    _age_all(api)
    (_blobs(api).root / "packages" / f"{package['guid']}.json").write_bytes(b"{not json")
    assert await api.parts.controller.packages.sweep_orphan_blobs() == 0
    assert _file(api, b"stray").exists() and _file(api, b"x").exists()


async def test_the_sweep_runs_periodically_between_start_and_stop(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages = api.parts.controller.packages
    # The harness started the controller: a sweeper waits out its first interval (an hour).
    assert packages._sweeper is not None
    await packages.stop_sweeping()
    assert packages._sweeper is None
    swept = asyncio.Event()

    async def sweep() -> int:
        swept.set()
        return 0

    monkeypatch.setattr(packages, "sweep_orphan_blobs", sweep)
    monkeypatch.setattr(packages, "sweep_interval_seconds", 0)
    packages.start_sweeping()
    assert packages._sweeper is None  # 0 disables it
    monkeypatch.setattr(packages, "sweep_interval_seconds", 0.001)
    packages.start_sweeping()
    await asyncio.wait_for(swept.wait(), timeout=5)
    await api.parts.controller.stop()
    assert packages._sweeper is None


# --- one set of rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "resource", "fragment"),
    [
        ({"lib/util.py": b"u"}, "lib", '"lib": is a file, but other entries are inside it'),
        ({"app.py": b"a"}, "app.py/x", '"app.py/x": would be written inside the file'),
    ],
)
async def test_resources_that_clash_with_the_zip_fail_naming_them(
    api: Api, bits: dict[str, bytes], resource: str, fragment: str
) -> None:
    app = await _app(api)
    await _package(api, app["guid"], _zip({"held.txt": b"held"}))
    detail = await _failed(api, app["guid"], _zip(bits), [_v3(resource, b"held")])
    assert "clash" in detail and fragment in detail, detail


async def test_a_resource_under_a_zip_link_fails(api: Api) -> None:
    app = await _app(api)
    await _package(api, app["guid"], _zip({"held.txt": b"held"}))
    bits = _zip({"lib/util.py": b"u"}, links={"current": "lib"})
    detail = await _failed(api, app["guid"], bits, [_v3("current/x", b"held")])
    assert '"current/x": would be written through a symbolic link' in detail, detail


async def test_resource_modes_agree_with_zip_modes(api: Api) -> None:
    app = await _app(api)
    data = b"#!/bin/sh\n"
    zipped = await _package(api, app["guid"], _zip({"run": data}, modes={"run": 0o100700}))
    matched = await _package(api, app["guid"], resources=[_v3("run", data, "0700")])
    assert zipped["data"]["checksum"] == matched["data"]["checksum"]
    entries = await api.parts.controller.packages.manifest(zipped["guid"])
    assert [entry.mode for entry in entries] == [REGULAR | 0o755]


async def _rewrite_manifest(api: Api, guid: str, entries: list[ManifestEntry]) -> None:
    """Replace a READY package's manifest, checksum included (as only a tampered store could)."""
    data = manifest_bytes({entry.path: entry for entry in entries})
    (_blobs(api).root / PACKAGES / f"{guid}.json").write_bytes(data)

    def retarget(current: Package) -> Package:
        return dataclasses.replace(current, checksum=sha256_of(data))

    async with api.parts.store.write() as tx:
        await tx.packages.update(guid, retarget)


async def test_materialize_holds_the_manifest_to_the_rules_first(api: Api, tmp_path: Path) -> None:
    app = await _app(api)
    package = await _package(api, app["guid"], _zip({"a.txt": b"a"}))
    guid = package["guid"]
    blobs = _blobs(api)
    packages = api.parts.controller.packages

    async def link(path: str, target: str) -> ManifestEntry:
        stored = await blobs.add_file(io.BytesIO(target.encode()), max_bytes=100)
        return ManifestEntry(path=path, sha1=stored.sha1, size=stored.size, mode=LINK | 0o777)

    file = ManifestEntry(path="a.txt", sha1=_sha1(b"a"), size=1, mode=REGULAR | 0o644)
    cases = [
        # Each link stays inside on its own; through "d/x", "y" climbs out.
        ([file, await link("d/x", ".."), await link("y", "d/x/..")], "resolves outside"),
        ([file, await link("out", "../../etc")], "pointing outside"),
        ([dataclasses.replace(file, path="../a.txt")], "leaves the destination"),
        ([dataclasses.replace(file, path="./a.txt")], "bad path"),
        ([file, dataclasses.replace(file, path="a.txt/b")], "inside the file"),
    ]
    for number, (entries, fragment) in enumerate(cases):
        await _rewrite_manifest(api, guid, entries)
        dest = tmp_path / f"case-{number}"
        with pytest.raises(Exception, match=fragment):
            await packages.materialize(guid, dest)
        assert not dest.exists() or not any(dest.iterdir())
    good = [file, await link("d/x", ".."), await link("here", "a.txt")]
    await _rewrite_manifest(api, guid, good)
    assert await packages.materialize(guid, tmp_path / "good") == 3
    assert os.readlink(tmp_path / "good" / "here") == "a.txt"
    assert (tmp_path / "good" / "a.txt").read_bytes() == b"a"


async def test_a_blobstore_without_local_files_is_checked_from_a_copy(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_blobs(api), "local_path", lambda kind, key: None)
    copies = Path(tempfile.gettempdir())
    before = set(copies.glob("overcast-package-*"))
    app = await _app(api)
    ready = await _package(api, app["guid"], _zip({"a.txt": b"a"}, links={"l": "a.txt"}))
    assert ready["state"] == "READY", ready
    detail = await _failed(api, app["guid"], _zip({"../evil": b"x"}))
    assert '"../evil": leaves' in detail
    assert list((_blobs(api).root / "tmp").iterdir()) == []
    assert set(copies.glob("overcast-package-*")) == before
