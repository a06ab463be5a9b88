"""Checking an uploaded package without trusting it, and the package's manifest.

A package upload is a zip (`bits`) plus `resources`, files the server already holds (found by
POST /v3/resource_matches). Nothing is ever extracted to a directory: every regular file of
the zip is copied into the content-addressed file store, and the package is a manifest
listing `path -> sha1, size, mode`.

Names follow DESIGN.md section 9, for zip entries and `resources` paths alike: no absolute
paths, `..`, drive letters, backslashes, NUL or other control characters; links must stay
inside the tree and nothing may sit under a link (or under a file). Entries are bounded in
number, each file and the whole package in size, and over-compressed entries are refused.
Every refusal names the entry.

TODO(staging): once `overcast.staging.archives.check_zip` exists, the composition root can
pass it as `Packages(zip_check=...)` (the controller may not import staging); these checks
stay, since ingestion reads the entries itself.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from overcast.models.errors import Unprocessable

MAX_PATH_CHARS = 4096
MAX_NAME_CHARS = 255
MAX_LINK_TARGET_BYTES = 4096
# An entry that expands past this many times its compressed size (and past 1 MiB) is refused.
MAX_COMPRESSION_RATIO = 1000
_RATIO_FLOOR = 1024 * 1024
DEFAULT_FILE_MODE = 0o644
REGULAR = stat.S_IFREG
LINK = stat.S_IFLNK
MANIFEST_VERSION = 1
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")
_MODE = re.compile(r"^[0-7]{1,12}$")
_COMPRESSIONS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)


class InvalidPackage(Unprocessable):
    """The uploaded bits or resources cannot make a package."""


@dataclass(frozen=True)
class PackageLimits:
    max_file_bytes: int
    max_expanded_bytes: int
    max_files: int


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


@dataclass(frozen=True)
class ZipEntry:
    info: zipfile.ZipInfo
    path: str
    mode: int

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)


# --- names ------------------------------------------------------------------------------------


def entry_path(name: str, what: str = "entry") -> str:
    """The entry's normalised relative path (no `./`, no doubled slashes); InvalidPackage
    naming it when it could leave the tree or is not a portable name."""
    shown = repr(name[:300])
    if not name or len(name) > MAX_PATH_CHARS:
        raise InvalidPackage(f"The package has an {what} with an empty or too long path: {shown}")
    if _CONTROL.search(name) or "\\" in name:
        raise InvalidPackage(f"The package has an unsafe {what} name: {shown}")
    if name.startswith("/") or _DRIVE.match(name):
        raise InvalidPackage(f"The package has an {what} with an absolute path: {shown}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidPackage(f"The package has an {what} outside its tree (..): {shown}")
    if not parts:
        raise InvalidPackage(f"The package has an {what} with an empty path: {shown}")
    if any(len(part) > MAX_NAME_CHARS for part in parts):
        raise InvalidPackage(f"The package has an {what} with a too long name: {shown}")
    return "/".join(parts)


def check_link_target(path: str, target: str) -> str:
    """A symbolic link's target, when it resolves (from the link's directory) inside the tree."""
    if not target or _CONTROL.search(target) or "\\" in target:
        raise InvalidPackage(f"The package has a link with an unsafe target: {path!r}")
    if target.startswith("/") or _DRIVE.match(target):
        raise InvalidPackage(f"The package has a link pointing outside its tree: {path!r}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        raise InvalidPackage(f"The package has a link pointing outside its tree: {path!r}")
    return target


def check_tree(entries: Iterable[ManifestEntry | ZipEntry]) -> None:
    """Nothing may sit under a link or under a regular file (it could not be created, or
    would be written through the link)."""
    kinds = {entry.path: entry.is_link for entry in entries}
    for path in kinds:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in kinds:
                under = "a link" if kinds[parent] else "a file"
                raise InvalidPackage(f"The package has an entry under {under}: {path!r}")


# --- the zip ----------------------------------------------------------------------------------


def _mode_of(info: zipfile.ZipInfo) -> int:
    unix = info.external_attr >> 16
    kind = stat.S_IFMT(unix)
    permissions = unix & 0o777
    if kind == stat.S_IFLNK:
        return LINK | 0o777
    if kind not in (0, stat.S_IFREG):
        raise InvalidPackage(
            f"The package has a special file (device, pipe or socket): {info.filename!r}"
        )
    return REGULAR | (permissions or DEFAULT_FILE_MODE)


def scan_zip(archive: zipfile.ZipFile, limits: PackageLimits) -> list[ZipEntry]:
    """Check every entry of the zip's central directory (blocking: run it in a thread); the
    files and links to store, in archive order. Directories are implied by the files."""
    entries: list[ZipEntry] = []
    seen: set[str] = set()
    total = 0
    infos = archive.infolist()
    if len(infos) > limits.max_files:
        raise InvalidPackage(f"The package has more than {limits.max_files} entries")
    for info in infos:
        if info.is_dir() and info.orig_filename == "./":
            continue
        # zipfile cuts a name at NUL; the raw name still shows it.
        path = entry_path(info.orig_filename)
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise InvalidPackage(f"The package has an encrypted entry: {info.filename!r}")
        if info.compress_type not in _COMPRESSIONS:
            raise InvalidPackage(
                f"The package has an entry with an unsupported compression: {info.filename!r}"
            )
        mode = _mode_of(info)
        if path in seen:
            raise InvalidPackage(f"The package has an entry given twice: {info.filename!r}")
        seen.add(path)
        if stat.S_ISLNK(mode) and info.file_size > MAX_LINK_TARGET_BYTES:
            raise InvalidPackage(f"The package has a link with a too long target: {path!r}")
        if info.file_size > limits.max_file_bytes:
            raise InvalidPackage(
                f"The package has a file larger than {limits.max_file_bytes} bytes: {path!r}"
            )
        if info.file_size > _RATIO_FLOOR and info.file_size > MAX_COMPRESSION_RATIO * max(
            info.compress_size, 1
        ):
            raise InvalidPackage(f"The package has an over-compressed entry: {path!r}")
        total += info.file_size
        if total > limits.max_expanded_bytes:
            raise InvalidPackage(
                f"The package expands to more than {limits.max_expanded_bytes} bytes (at {path!r})"
            )
        entries.append(ZipEntry(info=info, path=path, mode=mode))
    check_tree(entries)
    return entries


def read_link(archive: zipfile.ZipFile, entry: ZipEntry) -> bytes:
    """A link entry's target (checked), as stored in the zip."""
    data = read_entry(archive, entry, MAX_LINK_TARGET_BYTES)
    try:
        target = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPackage(
            f"The package has a link with an unsafe target: {entry.path!r}"
        ) from None
    check_link_target(entry.path, target)
    return data


def read_entry(archive: zipfile.ZipFile, entry: ZipEntry, limit: int) -> bytes:
    try:
        with archive.open(entry.info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError):
        raise corrupt_entry(entry.path) from None
    if len(data) > limit:
        raise InvalidPackage(f"The package has a too large entry: {entry.path!r}")
    return data


def corrupt_entry(path: str) -> InvalidPackage:
    return InvalidPackage(f"The package has a corrupt entry (bad compressed data or CRC): {path!r}")


# --- resources --------------------------------------------------------------------------------


def _mode(value: object, path: str) -> int:
    if value is None:
        return REGULAR | DEFAULT_FILE_MODE
    if not isinstance(value, str) or not _MODE.match(value):
        raise InvalidPackage(f"resources: the mode of {path!r} must be an octal string")
    permissions = int(value, 8) & 0o777
    return REGULAR | (permissions or DEFAULT_FILE_MODE)


def _size(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidPackage(f"resources: the size of {path!r} must be a non-negative integer")
    return value


def _sha1(value: object, path: str) -> str:
    if not isinstance(value, str) or not _SHA1.match(value):
        raise InvalidPackage(f"resources: the checksum of {path!r} must be a sha1 (40 hex)")
    return value.lower()


def _resource(item: object) -> ResourceRef:
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
    path = entry_path(raw_path, "resource")
    return ResourceRef(
        path=path,
        sha1=_sha1(raw_sha1, raw_path),
        size=_size(raw_size, raw_path),
        mode=_mode(item.get("mode"), raw_path),
    )


def parse_resources(raw: bytes, max_entries: int) -> list[ResourceRef]:
    """The `resources` part of an upload: a JSON list, checked entry by entry."""
    try:
        loaded = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidPackage("resources must be a JSON list") from None
    if not isinstance(loaded, list):
        raise InvalidPackage("resources must be a JSON list")
    if len(loaded) > max_entries:
        raise InvalidPackage(f"resources must have at most {max_entries} entries")
    refs = [_resource(item) for item in loaded]
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
    """A stored manifest (written by us, still checked: it decides where files are written)."""
    document = json.loads(data.decode("utf-8"))
    if not isinstance(document, dict) or document.get("version") != MANIFEST_VERSION:
        raise InvalidPackage("The package manifest has an unknown format")
    entries = []
    for item in document["files"]:
        path = entry_path(str(item["path"]))
        entries.append(
            ManifestEntry(
                path=path, sha1=str(item["sha1"]), size=int(item["size"]), mode=int(item["mode"])
            )
        )
    check_tree(entries)
    return entries
