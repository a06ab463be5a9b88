"""A tar extractor for archives nobody should trust (droplets, app packages).

Every entry is checked before anything is written: no absolute names or `..`, no writing
through a symbolic link, links that stay inside the destination, only files, directories and
links (no devices or fifos), and limits on the number of entries and their total size. The
first offending entry is named in the error; the caller removes what it half-extracted."""

from __future__ import annotations

import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_BYTES = 4 * 1024 * 1024 * 1024


class UnsafeArchive(ValueError):
    """An archive that is malformed, hostile or over a limit."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = DEFAULT_MAX_ENTRIES
    # Sum of the sizes of the regular files.
    max_bytes: int = DEFAULT_MAX_BYTES


def _normalise(name: str) -> str:
    """The entry's relative path, or UnsafeArchive when it would leave the destination."""
    if not name or name.startswith("/") or "\x00" in name:
        raise UnsafeArchive(f"archive entry {name!r} has an absolute or empty path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"archive entry {name!r} points outside the destination (..)")
    return "/".join(parts)


def _inside(relative: str) -> bool:
    normal = posixpath.normpath(relative)
    return normal != ".." and not normal.startswith("../") and not normal.startswith("/")


class _Checker:
    """Validates entries in archive order, remembering what earlier ones created."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.entries = 0
        self.total = 0
        self.seen: set[str] = set()
        self.files: set[str] = set()
        self.links: set[str] = set()

    def check(self, member: tarfile.TarInfo) -> str:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise UnsafeArchive(
                f"archive has more than {self.limits.max_entries} entries (at {member.name!r})"
            )
        name = _normalise(member.name)
        if not name:
            if member.isdir():
                return name  # "./": the destination itself
            raise UnsafeArchive(f"archive entry {member.name!r} has an empty path")
        if name in self.seen:
            # A second entry of one name could re-point a link after it was checked.
            raise UnsafeArchive(f"archive entry {member.name!r} appears twice")
        self._check_parents(member, name)
        self._check_type(member, name)
        self.seen.add(name)
        return name

    def _check_parents(self, member: tarfile.TarInfo, name: str) -> None:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in self.links:
                raise UnsafeArchive(
                    f"archive entry {member.name!r} would be written through a symbolic link"
                )

    def _check_type(self, member: tarfile.TarInfo, name: str) -> None:
        if member.isreg():
            self.total += member.size
            if self.total > self.limits.max_bytes:
                raise UnsafeArchive(
                    f"archive is larger than {self.limits.max_bytes} bytes (at {member.name!r})"
                )
            self.files.add(name)
        elif member.issym():
            target = member.linkname
            if not target or target.startswith("/"):
                raise UnsafeArchive(
                    f"archive entry {member.name!r} links to an absolute path {target!r}"
                )
            if not _inside(posixpath.join(posixpath.dirname(name), target)):
                raise UnsafeArchive(
                    f"archive entry {member.name!r} links outside the destination ({target!r})"
                )
            self.links.add(name)
        elif member.islnk():
            try:
                linked: str | None = _normalise(member.linkname)
            except UnsafeArchive:
                linked = None
            # Only to a file this archive already wrote: never to one of the host's files.
            if linked is None or linked not in self.files:
                raise UnsafeArchive(
                    f"archive entry {member.name!r} is a hard link to {member.linkname!r}, "
                    "which is not a file of the archive"
                )
        elif not member.isdir():
            raise UnsafeArchive(
                f"archive entry {member.name!r} is a device, fifo or other special file"
            )


def check_archive(path: Path, limits: ArchiveLimits | None = None) -> int:
    """Validate every entry of a tarball (any compression tar knows); the number of entries."""
    checker = _Checker(limits or ArchiveLimits())
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                checker.check(member)
    except tarfile.TarError as error:
        raise UnsafeArchive(f"not a readable tar archive: {error}") from None
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
        raise UnsafeArchive(f"cannot extract archive: {error}") from None
    # Each link was checked alone; a chain of them must not lead out either.
    for link in sorted(checker.links):
        if not _resolves_inside(root / link, root):
            raise UnsafeArchive(f"archive entry {link!r} resolves outside the destination")
    return checker.entries
