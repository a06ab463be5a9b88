"""What a package is made of, and the rules it is checked with.

A package upload is a zip (`bits`) plus `resources`, files the server already holds (found by
POST /v3/resource_matches). Nothing is ever extracted to a directory: every regular file and
link of the zip is copied into the content-addressed file store, and the package is a manifest
listing `path -> sha1, size, mode`.

The rules for names, links and trees (DESIGN.md section 9) are the staging layer's, one set for
droplets and packages alike; the controller may not import staging, so the composition root
hands them over as `ArchiveRules` (`overcast.staging.archives`: `check_zip`, `entry_path`,
`EntryTree`). This module keeps only what is particular to packages: the `resources` list, the
manifest, and the package limits. Every refusal names the entry.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from overcast.models.errors import Unprocessable

DEFAULT_FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
REGULAR = stat.S_IFREG
LINK = stat.S_IFLNK
MANIFEST_VERSION = 1
_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")
_MODE = re.compile(r"^[0-7]{1,12}$")

EntryKind = Literal["file", "directory", "symlink"]


class InvalidPackage(Unprocessable):
    """The uploaded bits or resources cannot make a package."""


@dataclass(frozen=True)
class PackageLimits:
    max_file_bytes: int
    max_expanded_bytes: int
    max_files: int


# --- the rules, from the composition root -----------------------------------------------------


class CheckedEntry(Protocol):
    """One entry of a checked zip (`overcast.staging.archives.ZipEntryInfo`)."""

    @property
    def path(self) -> str:
        """Relative, "/"-separated and normalised; never "" (the root is not listed)."""
        ...

    @property
    def kind(self) -> EntryKind: ...

    @property
    def size(self) -> int:
        """Bytes of content: the file's, or the link's target; 0 for a directory."""
        ...

    @property
    def sha1(self) -> str | None:
        """Hex sha1 of that content; None for a directory."""
        ...

    @property
    def mode(self) -> int:
        """Permission bits only (0o644 or 0o755 for a file, 0o777 for a link)."""
        ...


class ZipCheck(Protocol):
    def __call__(self, path: Path, /) -> Sequence[CheckedEntry]:
        """Every entry of the zip at `path`, inflated and hashed but written nowhere, in
        archive order; ValueError naming the first offending entry."""
        ...


class PathCheck(Protocol):
    def __call__(self, name: str, /) -> str:
        """The name as a normalised relative path ("" for the root itself); ValueError when it
        could leave the tree or is not a portable name."""
        ...


class PathTree(Protocol):
    """The paths of one tree, added one at a time; ValueError naming the entry as soon as one
    would replace another, sit under a link or a file, or a link would lead outside."""

    def add(self, entry: str, path: str, kind: EntryKind) -> None: ...

    def add_link(self, entry: str, path: str, target: str) -> None: ...

    def check_link_chains(self) -> None: ...


@dataclass(frozen=True)
class ArchiveRules:
    zip_check: ZipCheck
    path_check: PathCheck
    new_tree: Callable[[], PathTree]


def reason(error: ValueError) -> str:
    """What a rule says is wrong, without the entry's name (when it keeps the two apart)."""
    said = getattr(error, "reason", None)
    return said if isinstance(said, str) else str(error)


# --- what a package holds ---------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceRef:
    """A file the client says the server holds: where it goes, and which content."""

    path: str
    sha1: str
    size: int
    mode: int = REGULAR | DEFAULT_FILE_MODE


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    sha1: str
    size: int
    # File type and permission bits (REGULAR or LINK | 0oNNN).
    mode: int

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def kind(self) -> EntryKind:
        return "symlink" if self.is_link else "file"

    @classmethod
    def of(cls, entry: CheckedEntry, sha1: str) -> ManifestEntry:
        kind = LINK if entry.kind == "symlink" else REGULAR
        return cls(path=entry.path, sha1=sha1, size=entry.size, mode=kind | entry.mode)


def corrupt_entry(path: str) -> InvalidPackage:
    return InvalidPackage(f"The package has a corrupt entry (bad compressed data or CRC): {path!r}")


# --- resources --------------------------------------------------------------------------------


def _mode(value: object, path: str) -> int:
    if value is None:
        return REGULAR | DEFAULT_FILE_MODE
    if not isinstance(value, str) or not _MODE.match(value):
        raise InvalidPackage(f"resources: the mode of {path!r} must be an octal string")
    # As for the zip's files: only the executable bit survives, so that a file gives the same
    # package whether it was uploaded or matched.
    return REGULAR | (EXECUTABLE_MODE if int(value, 8) & 0o111 else DEFAULT_FILE_MODE)


def _size(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidPackage(f"resources: the size of {path!r} must be a non-negative integer")
    return value


def _sha1(value: object, path: str) -> str:
    if not isinstance(value, str) or not _SHA1.match(value):
        raise InvalidPackage(f"resources: the checksum of {path!r} must be a sha1 (40 hex)")
    return value.lower()


def _path(raw: str, path_check: PathCheck) -> str:
    try:
        path = path_check(raw)
    except ValueError as error:
        raise InvalidPackage(f"resources: unsafe path {raw[:300]!r}: {reason(error)}") from None
    if not path:
        raise InvalidPackage(f"resources: the path {raw!r} names the package itself")
    return path


def _resource(item: object, path_check: PathCheck) -> ResourceRef:
    """One entry, in the v3 shape `{path, size_in_bytes, checksum: {value}, mode}` or the v2
    shape `{fn, size, sha1, mode}` (what the cf CLI sends with an upload)."""
    if not isinstance(item, dict):
        raise InvalidPackage("resources: every entry must be an object")
    keys = set(item)
    if "fn" in keys:
        if not keys <= {"fn", "size", "sha1", "mode"} or not {"fn", "size", "sha1"} <= keys:
            raise InvalidPackage("resources: an entry must have fn, size and sha1 (and mode)")
        raw_path, raw_size, raw_sha1 = item["fn"], item["size"], item["sha1"]
    else:
        allowed = {"path", "size_in_bytes", "checksum", "mode"}
        if not keys <= allowed or not {"path", "size_in_bytes", "checksum"} <= keys:
            raise InvalidPackage(
                "resources: an entry must have path, size_in_bytes and checksum (and mode)"
            )
        checksum = item["checksum"]
        if not isinstance(checksum, dict) or set(checksum) != {"value"}:
            raise InvalidPackage('resources: checksum must be {"value": sha1}')
        raw_path, raw_size, raw_sha1 = item["path"], item["size_in_bytes"], checksum["value"]
    if not isinstance(raw_path, str):
        raise InvalidPackage("resources: every path must be a string")
    return ResourceRef(
        path=_path(raw_path, path_check),
        sha1=_sha1(raw_sha1, raw_path),
        size=_size(raw_size, raw_path),
        mode=_mode(item.get("mode"), raw_path),
    )


def parse_resources(raw: bytes, max_entries: int, path_check: PathCheck) -> list[ResourceRef]:
    """The `resources` part of an upload: a JSON list, checked entry by entry (each path by
    the archive rules' `path_check`)."""
    try:
        loaded = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidPackage("resources must be a JSON list") from None
    if not isinstance(loaded, list):
        raise InvalidPackage("resources must be a JSON list")
    if len(loaded) > max_entries:
        raise InvalidPackage(f"resources must have at most {max_entries} entries")
    refs = [_resource(item, path_check) for item in loaded]
    seen: dict[str, ResourceRef] = {}
    for ref in refs:
        if ref.path in seen and seen[ref.path] != ref:
            raise InvalidPackage(f"resources: the path {ref.path!r} is given twice")
        seen[ref.path] = ref
    return list(seen.values())


def resources_to_params(refs: Sequence[ResourceRef]) -> list[list[Any]]:
    return [[ref.path, ref.sha1, ref.size, ref.mode] for ref in refs]


def resources_from_params(raw: object) -> list[ResourceRef]:
    if not isinstance(raw, list):
        return []
    return [ResourceRef(path=p, sha1=s, size=int(n), mode=int(m)) for p, s, n, m in raw]


# --- the manifest -----------------------------------------------------------------------------


def manifest_bytes(entries: Mapping[str, ManifestEntry]) -> bytes:
    """Canonical JSON of the package: equal files (paths, contents, modes) give equal bytes,
    hence an equal checksum."""
    files = [
        {"path": entry.path, "sha1": entry.sha1, "size": entry.size, "mode": entry.mode}
        for entry in sorted(entries.values(), key=lambda entry: entry.path)
    ]
    document = {"version": MANIFEST_VERSION, "files": files}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def manifest_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_manifest(data: bytes) -> list[ManifestEntry]:
    """A stored manifest, as written by `manifest_bytes`. Only its format is checked here: the
    caller holds its paths to the archive rules before writing anything where they say."""
    try:
        document = json.loads(data.decode("utf-8"))
        if not isinstance(document, dict) or document.get("version") != MANIFEST_VERSION:
            raise ValueError("unknown version")
        return [
            ManifestEntry(
                path=str(item["path"]),
                sha1=str(item["sha1"]),
                size=int(item["size"]),
                mode=int(item["mode"]),
            )
            for item in document["files"]
        ]
    except (ValueError, KeyError, TypeError):
        raise InvalidPackage("The package manifest has an unknown format") from None
