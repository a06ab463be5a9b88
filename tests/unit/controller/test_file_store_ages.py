"""The blobstore's file store as the packages' sweep uses it: files listed with their age,
deleted by sha1 only when still old, and made young again whenever they are stored or reported
held. Ages are set with os.utime (no sleeps)."""

from __future__ import annotations

import hashlib
import io
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from overcast.models.errors import Unprocessable
from overcast.store.blobs import DirectoryBlobStore

HOUR = 3600.0


@pytest.fixture
def blobs(tmp_path: Path) -> DirectoryBlobStore:
    return DirectoryBlobStore(tmp_path / "blobs")


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _age(blobs: DirectoryBlobStore, sha1: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(blobs.root / "files" / sha1[:2] / sha1, (then, then))


def _an_hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=HOUR)


async def test_stored_files_are_listed_with_their_age(blobs: DirectoryBlobStore) -> None:
    assert await blobs.stored_files() == []
    old = await blobs.add_file(io.BytesIO(b"old"), max_bytes=10)
    new = await blobs.add_file(io.BytesIO(b"new!"), max_bytes=10)
    _age(blobs, old.sha1, 2 * HOUR)
    # Not a file of the store: ignored.
    (blobs.root / "files" / "zz").mkdir()
    (blobs.root / "files" / "zz" / "notes.txt").write_text("x")
    listed = {file.sha1: file for file in await blobs.stored_files()}
    assert set(listed) == {old.sha1, new.sha1}
    assert (listed[old.sha1].size, listed[new.sha1].size) == (3, 4)
    assert listed[old.sha1].modified < _an_hour_ago() < listed[new.sha1].modified


async def test_delete_file_only_while_old(blobs: DirectoryBlobStore) -> None:
    young = await blobs.add_file(io.BytesIO(b"young"), max_bytes=10)
    old = await blobs.add_file(io.BytesIO(b"old"), max_bytes=10)
    _age(blobs, old.sha1, 2 * HOUR)
    assert not await blobs.delete_file(young.sha1, modified_before=_an_hour_ago())
    assert await blobs.delete_file(old.sha1, modified_before=_an_hour_ago())
    assert not await blobs.delete_file(old.sha1, modified_before=_an_hour_ago())
    assert await blobs.file_sizes([young.sha1, old.sha1]) == {young.sha1: 5}
    assert await blobs.delete_file(young.sha1)
    assert await blobs.stored_files() == []
    # Nothing left behind in tmp/ either way.
    assert list((blobs.root / "tmp").iterdir()) == []
    with pytest.raises(Unprocessable):
        await blobs.delete_file("../x")


async def test_storing_or_asking_with_touch_makes_a_file_young(blobs: DirectoryBlobStore) -> None:
    data = b"shared"
    sha1 = _sha1(data)
    await blobs.add_file(io.BytesIO(data), max_bytes=10)
    _age(blobs, sha1, 2 * HOUR)
    # A plain question does not touch ...
    assert await blobs.file_sizes([sha1]) == {sha1: len(data)}
    (listed,) = await blobs.stored_files()
    assert listed.modified < _an_hour_ago()
    # ... one with touch does ...
    assert await blobs.file_sizes([sha1, "f" * 40], touch=True) == {sha1: len(data)}
    (listed,) = await blobs.stored_files()
    assert listed.modified > _an_hour_ago()
    assert not await blobs.delete_file(sha1, modified_before=_an_hour_ago())
    # ... and so does storing it again.
    _age(blobs, sha1, 2 * HOUR)
    await blobs.add_file(io.BytesIO(data), max_bytes=10)
    (listed,) = await blobs.stored_files()
    assert listed.modified > _an_hour_ago()
