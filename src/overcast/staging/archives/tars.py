"""A tar extractor for archives nobody should trust (droplets).

Every entry is checked before anything is written (the rules of `common`), plus what only tar
has: hard links, which may only point at a file the archive itself wrote. The first offending
entry is named in the error; the caller removes what it half-extracted."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from overcast.staging.archives.common import (
    ArchiveLimits,
    EntryKind,
    EntryTree,
    UnsafeArchive,
    entry_path,
)


def _kind(member: tarfile.TarInfo) -> EntryKind:
    if member.isreg() or member.islnk():
        # A hard link is one more name for a file.
        return "file"
    if member.issym():
        return "symlink"
    if member.isdir():
        return "directory"
    raise UnsafeArchive(member.name, "is a device, fifo or other special file")


class _Checker:
    """Validates entries in archive order, remembering what earlier ones created."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.tree = EntryTree(limits)

    @property
    def entries(self) -> int:
        return self.tree.entries

    def check(self, member: tarfile.TarInfo) -> str:
        self.tree.count(member.name)
        path = entry_path(member.name)
        kind = _kind(member)
        self.tree.add(member.name, path, kind)
        if member.isreg():
            self.tree.add_bytes(member.name, member.size)
        elif member.issym():
            self.tree.add_link(member.name, path, member.linkname)
        elif member.islnk():
            self._check_hard_link(member, path)
        return path

    def _check_hard_link(self, member: tarfile.TarInfo, path: str) -> None:
        try:
            linked: str | None = entry_path(member.linkname)
        except UnsafeArchive:
            linked = None
        # Only to a file this archive already wrote: never to one of the host's files.
        if linked is None or linked == path or self.tree.kinds.get(linked) != "file":
            raise UnsafeArchive(
                member.name,
                f"is a hard link to {member.linkname!r}, which is not a file of the archive",
            )


def check_archive(path: Path, limits: ArchiveLimits | None = None) -> int:
    """Validate every entry of a tarball (any compression tar knows); the number of entries."""
    checker = _Checker(limits or ArchiveLimits())
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                checker.check(member)
    except tarfile.TarError as error:
        raise UnsafeArchive(None, f"not a readable tar archive: {error}") from None
    checker.tree.check_link_chains()
    return checker.entries


def _resolves_inside(link: Path, root: Path) -> bool:
    resolved = Path(os.path.realpath(link))
    return resolved == root or root in resolved.parents


def safe_extract(path: Path, destination: Path, limits: ArchiveLimits | None = None) -> int:
    """Extract a tarball into `destination` (created if missing) after checking every entry;
    the number of entries. Raises UnsafeArchive naming the first offending entry."""
    limits = limits or ArchiveLimits()
    check_archive(path, limits)
    destination.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(destination))
    # Checked again while extracting: the file could have changed since the first pass.
    checker = _Checker(limits)
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = checker.check(member)
                if not name:
                    continue
                # The stdlib "data" filter as a second line of defence: it also drops
                # set-uid bits and ownership.
                archive.extract(member, root, set_attrs=True, filter="data")
    except tarfile.TarError as error:
        raise UnsafeArchive(None, f"cannot extract archive: {error}") from None
    # The chains were resolved on paper; the disk must agree.
    for link in sorted(checker.tree.links):
        if not _resolves_inside(root / link, root):
            raise UnsafeArchive(link, "resolves outside the destination directory")
    return checker.entries
